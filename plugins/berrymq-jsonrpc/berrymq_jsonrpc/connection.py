""":class:`RemoteConnection`: a connection in one of the SPEC's styles to another node over
a JSON-RPC channel.

The styles themselves are the core's (:class:`berrymq.transports.styles.LinkConnection`,
the same for every transport); this module adds what JSON-RPC needs around them: the
session token the peer gave, the server's queue pulled with ``get`` requests
(:class:`ServerQueue`), telling the peer at close (``close_connection``), and closing by
itself when the peer is found gone.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from berrymq.errors import ConnectionClosed, RemoteError, TransportError
from berrymq.message import Message
from berrymq.timeouts import check_block, wait_limit
from berrymq.transports.base import ConnectionRow
from berrymq.transports.styles import LinkConnection
from berrymq.wire import WireError, decode_message
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.channel import Channel, Late
from berrymq_jsonrpc.client import TAKEN_TOO_LATE, Link
from berrymq_jsonrpc.sessions import Session, in_waits
from berrymq_jsonrpc.turns import busy_pause, refused_as_busy

if TYPE_CHECKING:
    from berrymq_jsonrpc.transport import RemoteTransport

__all__ = ["EARLY_EMPTY_PAUSE", "RemoteConnection", "ServerQueue"]

logger = logging.getLogger("berrymq.remote")

#: How long closing waits for the peer to confirm ``close_connection``.
_CLOSE_TIMEOUT = 2.0

#: The most a blocking ``get`` waits before asking again when a server answered *empty*
#: at once, though asked to wait (no berryMQ node does; see :meth:`ServerQueue._pace`).
EARLY_EMPTY_PAUSE = 0.5


class ServerQueue:
    """The queue a server keeps for this client (style 03), pulled with ``get`` and
    ``get_nowait`` requests. A wait longer than the server's cap (``max_get_wait``) is
    made of several requests."""

    def __init__(self, connection: RemoteConnection) -> None:
        self.connection = connection

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        check_block("get", block)  # the rules of Queue.get's arguments
        limit = wait_limit("timeout", timeout)
        if not block:
            return self.get_nowait()
        connection = self.connection
        transport = connection.transport
        deadline = None if limit is None else time.monotonic() + limit
        pause = 0.0  # (before asking again after a refusal: see busy_pause)
        while True:
            with connection.channel.waiting_turn(deadline) as turn:  # (a node's max_waiting)
                if not turn:
                    raise queue.Empty
                asked = time.monotonic()
                left = None if deadline is None else max(0.0, deadline - asked)
                wait = transport.max_get_wait if left is None else min(left, transport.max_get_wait)
                try:
                    entry = connection.call(p.METHOD_GET, {"token": connection.token,
                                                           "block": True, "timeout": wait},
                                            timeout=wait + transport.timeout,
                                            late=self._taken_too_late)
                except queue.Empty:
                    if deadline is None or time.monotonic() < deadline:
                        self._pace(asked, wait, deadline)
                        continue
                    raise
                except RemoteError as exc:
                    again = busy_pause(exc, pause, deadline)
                    if again is None:
                        if refused_as_busy(exc) and deadline is not None:
                            # its time ran out without a turn at the node: a last look,
                            # which a node answers however many requests wait there
                            return self.get_nowait()
                        raise
                else:
                    return self._message(entry)
            pause = again  # refused as one too many: asked again after a pause, turn given back
            time.sleep(pause)

    @staticmethod
    def _pace(asked: float, wait: float, deadline: float | None) -> None:
        """After an *empty* answer that came well before the ``wait`` asked for: a node
        holds a blocking ``get`` until a message comes or the wait ends, so this is a
        server that does not, and the next request waits for the time asked (at most
        :data:`EARLY_EMPTY_PAUSE`) rather than spin at full speed against it."""
        early = asked + min(wait, EARLY_EMPTY_PAUSE) - time.monotonic()
        if deadline is not None:
            early = min(early, deadline - time.monotonic())
        if early > 0:
            time.sleep(early)

    def get_nowait(self) -> Message:
        connection = self.connection
        return self._message(connection.call(p.METHOD_GET_NOWAIT, {"token": connection.token},
                                             late=self._taken_too_late))

    def _taken_too_late(self, reply: Any) -> None:
        """The answer to a ``get`` that had given up waiting (on the loop): a message in it
        was taken from the node's queue for nobody, so it is reported, not dropped."""
        if type(reply) is dict and reply.get("result") is not None:
            self.connection.link.late_message(reply["result"])

    def _message(self, entry: Any) -> Message:
        """The message of a ``get`` result, in the one wire form (:mod:`berrymq.wire`)."""
        try:
            message, _, _ = decode_message(entry, "the message")
        except WireError as exc:
            raise TransportError(f"{self.connection.address} answered get with a malformed "
                                 f"message: {exc}") from None
        return message

    def close(self) -> None:
        """Nothing here: the server frees the queue at ``close_connection`` or its ttl."""


class RemoteConnection(LinkConnection):
    """A connection to another node over a JSON-RPC channel, in one of the three styles.

    Messages given to :meth:`send` are queued and go out in ``send_messages`` batches from
    the I/O loop; :meth:`flush` waits until the peer has them. A failure closes the
    connection and the next call raises :class:`berrymq.ConnectionClosed` saying why.
    Messages the peer refuses (a full queue there) do not close it: they are counted
    (:attr:`losses`) and the next :meth:`flush` raises :class:`berrymq.QueueFull` saying
    how many.

    :param token: the token the peer gave for this connection's session there.
    """

    def __init__(self, transport: RemoteTransport, channel: Channel, address: str,
                 style: str, token: str) -> None:
        self.transport = transport
        self.channel = channel
        self.token = token
        #: the session on this node that the peer sends to (an interconnection's way back)
        self.local_session: Session | None = None
        link = transport.make_link(channel, token, f"{transport.scheme}:{style}", self._dead)
        self.link: Link = link
        super().__init__(transport.bus, link, style, address=address,
                         inbox=ServerQueue(self) if style == "queue" else None,
                         on_close=self._closing)

    def send(self, message: Message) -> None:
        """Queue one message for the peer (``send_messages``); raises at once if the
        connection is closed, if JSON cannot hold the message or if it is too large, and
        :class:`berrymq.QueueFull` when the outbox stayed full for ``outbox_wait``."""
        if self.channel.closed and not self.closed:
            self._dead(ConnectionClosed("the peer closed the connection"))
            raise self._closed_error()
        super().send(message)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message sent so far was acknowledged by the peer; False on
        timeout. Raises :class:`berrymq.ConnectionClosed` if they could not be sent, and
        :class:`berrymq.QueueFull` if the peer refused some since the last flush (the
        connection stays open)."""
        return self.link.flush(wait_limit("timeout", timeout))

    def status_row(self) -> ConnectionRow:
        """:meth:`Connection.status_row <berrymq.transports.base.Connection.status_row>`
        with its outbox's counts: ``pending`` waiting to be sent or acknowledged, ``sent``
        acknowledged by the peer, ``lost`` waiting when it failed or closed, ``refused`` by
        the peer's full queue (its losses are in the node's counters as they happen)."""
        outbox = self.link.outbox
        return dataclasses.replace(super().status_row(), scheme=self.transport.scheme,
                                   pending=outbox.pending, sent=outbox.sent,
                                   lost=outbox.lost, refused=outbox.refused)

    @property
    def losses(self) -> dict[str, int]:
        """The messages sent on this connection that were not delivered, by reason:
        ``refused: queue full`` (the peer refused them), ``not sent: connection failed or
        closed`` (they were waiting when it failed or closed); and those a ``get`` took
        from the peer's queue whose answer came after the get gave up
        (:data:`~berrymq_jsonrpc.client.TAKEN_TOO_LATE`)."""
        losses = self.link.outbox.losses  # (a dict of its own)
        if self.link.taken_too_late:
            losses[TAKEN_TOO_LATE] = self.link.taken_too_late
        return losses

    def call(self, method: str, params: Mapping[str, Any], timeout: float | None = None,
             late: Late | None = None) -> Any:
        """Call a protocol method on the peer directly (raises berryMQ errors; ``late`` as
        for :meth:`~berrymq_jsonrpc.channel.Channel.exchange`); when the peer is found gone
        (:class:`berrymq.ConnectionClosed`) the connection is closed by the time the error
        is raised."""
        if self.closed:
            raise self._closed_error()
        try:
            return self.channel.call(method, params, timeout, late)
        except ConnectionClosed as exc:
            if self.closed:  # by this side meanwhile (so the peer forgot the session): said so
                raise self._closed_error() from None
            # closed here, on the caller's thread (one that may block), before the error
            # reaches it: handed to a WAITS thread, the close could be overtaken by what
            # the caller does next (berrymq listen --no-reconnect ended the process, and
            # the channel's kept connection was still open when the I/O loop stopped)
            self.lost(str(exc))
            raise

    def _dead(self, exc: BaseException) -> None:
        """The link or the channel failed (possibly on the I/O loop): close without
        waiting for the peer, on a helper thread."""
        if not self.closed:
            self.reason = f" ({exc})"
            in_waits(self.lost, str(exc))

    def local_session_closed(self, reason: str) -> None:
        """The peer's way back expired or was closed: so is this connection."""
        if self.closed:
            return
        if reason == "expired":
            self.reason = f" ({reason})"
            in_waits(self.close)
        else:
            in_waits(self.lost, reason)

    def _closing(self, polite: bool) -> None:
        transport = self.transport
        self.link.close(transport.timeout if polite else 0.0)
        if polite and not self.channel.closed and self.link.outbox.failure is None:
            try:
                self.channel.call(p.METHOD_CLOSE_CONNECTION, {"token": self.token},
                                  timeout=_CLOSE_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - the peer may already be gone
                logger.debug("close_connection to %s: %s", self.address, exc)
        if self.local_session is not None:
            transport.service.close_session(self.local_session.token, "closed")
        self.channel.close()
        transport.forget(self)

"""The client side of the protocol, for any transport: links, over a
:class:`~berrymq_jsonrpc.channel.Channel` to the peer.

Everything here runs its I/O on the process's one I/O loop
(:data:`berrymq.transports.ioloop.io_loop`); no thread is started per connection.

- A :class:`Link` sends through an :class:`~berrymq_jsonrpc.outbox.Outbox`, which coalesces
  messages into ``send_messages`` batches.
- A :class:`Link` is the forwarder of style 01: the bus hands it every non-local message
  (and :func:`berrymq.ask` requests), it sends them to the peer with the peer's token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from berrymq.bursts import BurstLog
from berrymq.errors import (
    ConnectionClosed,
    MessageTooLarge,
    QueueFull,
    RemoteError,
)
from berrymq.identifier import Identifier
from berrymq.transports import base
from berrymq.wire import decode_replies, encode_message, refuse_other_keys
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.channel import Channel, NoAnswer
from berrymq_jsonrpc.outbox import (
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_SIZE,
    NOT_SENT,
    REFUSED,
    Outbox,
)
from berrymq_jsonrpc.sizes import measure, message_limit, too_large_detail, unmeasured
from berrymq_jsonrpc.turns import busy_pause

if TYPE_CHECKING:
    from berrymq.message import Message
    from berrymq.stats import NodeStats
    from berrymq_jsonrpc.sessions import Session

__all__ = ["TAKEN_TOO_LATE", "Link"]

logger = logging.getLogger("berrymq.remote")

#: The loss of a message a ``get`` took from the peer's queue, whose answer came after the
#: get gave up waiting (a peer stalled past the get's grace): counted and logged.
TAKEN_TOO_LATE = "lost: taken by a get that had given up"

#: how long past an ``ask``'s timeout this side waits for the peer's answer: the peer
#: answers at the timeout (counted from the question's arrival) with the replies so far
#: and a TimeoutError entry naming the receiver still running, which came a moment after
#: the asker had stopped waiting, the replies lost with it (as berrymq.ask waits a part
#: that keeps its deadline itself a little longer)
_PEER_MARGIN = 0.1

class Link(base.Link):
    """A JSON-RPC link to one peer (the forwarder of an interconnection, and what every
    style sends and asks through): messages go in ``send_messages`` batches.

    :param channel: the channel to the peer.
    :param token: the token the peer gave (or, over TCP back-channels, the one the peer
        asked to be called with).
    :param on_dead: called once (on the loop) when sending failed; the owner closes the
        connection. It must not block.
    :param outbox_size: the bound of the outbox in messages (:class:`Outbox`).
    :param outbox_bytes: the bound of the outbox in bytes of message text.
    :param outbox_wait: how long a sender waits for room in a full outbox.

    Messages the peer refuses (a full queue there) are counted in :attr:`Outbox.refused`
    and in the node's ``/status`` (``lost``, reason ``refused: queue full``), logged once
    per burst, and raised by the next :meth:`flush`; the link stays open. Messages the
    outbox could not send (the connection failed or closed) are counted in the node's
    stats as the outbox counts them, a batch cancelled on its way included.
    """

    def __init__(self, channel: Channel, token: str, name: str,
                 on_dead: Callable[[BaseException], None] | None = None, *,
                 owns_channel: bool = False, outbox_size: int = DEFAULT_OUTBOX_SIZE,
                 outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
                 outbox_wait: float = 10.0) -> None:
        self.channel = channel
        self.address = channel.url
        self.token = token
        self.name = name
        self.owns_channel = owns_channel
        self.session: Session | None = None  # the local session this link belongs to
        self._on_dead = on_dead
        self.outbox = Outbox(self._send_batch, max_bytes=message_limit(channel.max_size),
                             on_failure=self._failed, name=name, limit=outbox_size,
                             byte_limit=outbox_bytes, block_timeout=outbox_wait,
                             on_refused=self._refused, on_lost=self._lost)
        self.closed = False
        self.taken_too_late = 0  # messages answered to gets that had given up (late_message)
        self.stats: NodeStats | None = None  # stats: set by the transport that owns the link
        #: told of every loss (refused or not sent), so that the owner's next flush says
        #: so even when this link is gone by then; set by the transport that owns the link
        self.on_loss: Callable[[], None] | None = None
        #: the peer's refusals are logged once per burst, with a count
        self._refusals = BurstLog(logger)
        #: where the link's end (a failure, a peer gone) is logged: its own, or its
        #: transport's, one line per burst for all its links (one client can open
        #: thousands of sessions, each with a link, and drop them all at once; every
        #: message they did not deliver is counted in the node's status all the same)
        self.failures = BurstLog(logger)

    async def _send_batch(self, texts: list[str]) -> None:
        await self.channel.send_messages(self.token, texts)
        session = self.session
        if session is not None:
            session.touch()  # traffic either way keeps the interconnection alive

    def _lost(self, count: int) -> None:
        if self.stats is not None:  # stats
            self.stats.lost(NOT_SENT, count)
        if self.on_loss is not None:
            self.on_loss()

    def late_message(self, entry: Any) -> None:
        """A message (``entry``, as on the wire) that a ``get`` took from the peer's queue
        came after the get gave up: lost, so counted (:attr:`taken_too_late`, the stats)
        and logged once per burst, every one of them."""
        self.taken_too_late += 1
        if self.stats is not None:  # stats
            self.stats.lost(TAKEN_TOO_LATE)
        what = entry[0] if type(entry) is list and entry else entry
        self.failures.warning("%s: a message (%.100r) that %s took from its queue came after "
                              "the get it answered gave up waiting; it is lost", self.name,
                              what, self.channel.url)

    def _refused(self, exc: QueueFull, count: int) -> None:
        if self.stats is not None:  # stats
            self.stats.lost(REFUSED, count)
        if self.on_loss is not None:
            self.on_loss()
        self._refusals.warning("%s: %s refused %d message(s) (%s); %d refused on this "
                          "connection so far, which stays open", self.name, self.channel.url,
                          count, exc, self.outbox.refused)

    def _failed(self, exc: BaseException, lost: int) -> None:
        self.failures.error("%s: could not forward %d message(s) to %s: %s; the link is "
                            "closed", self.name, lost, self.channel.url, exc)
        callback = self._on_dead
        if callback is not None:
            callback(exc)

    async def probe(self) -> None:
        """Liveness (on the loop, from the service's sweeper): when the peer is known gone,
        close the link as a failed send would, without waiting for the next message."""
        if self.closed or await self.channel.alive() or self.closed:
            return
        self.failures.warning("%s: %s is gone (liveness check); the link is closed",
                              self.name, self.channel.url)
        callback = self._on_dead
        if callback is not None:
            callback(ConnectionClosed(f"{self.channel.url} is gone (liveness check)"))

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Queue ``message`` for the peer (with ``reply_to`` for :func:`berrymq.talk`);
        one over the size limit (:mod:`berrymq_jsonrpc.sizes`) raises
        :class:`berrymq.MessageTooLarge`."""
        text = encode_message(message, reply_to)
        if message[3] or message[4] is None:  # (the usual message: nothing to take off)
            self.outbox.put(text, unmeasured(text, message, reply_to))
        else:
            self.outbox.put(text)
        if self.stats is not None:  # stats
            self.stats.message_out(message[0], self.channel.url)

    def send_batch(self, messages: Sequence[Message], reply_to: Identifier | None = None) -> None:
        """Queue ``messages`` for the peer, in order."""
        put = self.outbox.put
        stats = self.stats
        for message in messages:
            text = encode_message(message, reply_to)
            put(text, unmeasured(text, message, reply_to))
            if stats is not None:  # stats
                stats.message_out(message[0], self.address)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the peer acknowledged everything queued so far (see
        :meth:`Outbox.flush`)."""
        return self.outbox.flush(timeout)

    #: :meth:`request` returns or raises within its timeout, and _PEER_MARGIN for the
    #: peer's answer at that timeout (see :class:`berrymq.node.Requester`)
    keeps_deadline = True

    def request(self, message: Message, timeout: float) -> list[Any]:
        """Ask the peer's receivers (the ``ask`` method) and return their replies; raises
        :class:`berrymq.TransportError` when no answer came within ``timeout``."""
        deadline = time.monotonic() + timeout
        size = measure(message)  # the rule every message meets, a question's too
        if size > message_limit(self.channel.max_size):
            raise MessageTooLarge(too_large_detail(size, self.channel.max_size))
        try:  # (as encode_message does for a message)
            refuse_other_keys((message[1], message[2]))
        except TypeError as exc:
            raise TypeError(f"message {message[0]} cannot be sent to another process: "
                            f"{exc}") from None
        # messages sent before the question arrive before it (refusals among them are for
        # the sender's next flush to report, not for this question)
        self.outbox.flush(timeout, report=False)
        channel = self.channel
        pause = 0.0
        while True:
            try:
                result = self._ask(channel, message, deadline, timeout)
                break
            except RemoteError as exc:
                again = busy_pause(exc, pause, deadline)
                if again is None:
                    raise
            pause = again
            time.sleep(pause)
        return decode_replies(result, channel.url)

    def _ask(self, channel: Channel, message: Message, deadline: float, timeout: float) -> Any:
        """One ``ask`` request, in a turn of ``channel``'s (see :meth:`request`)."""
        with channel.waiting_turn(deadline) as turn:
            if not turn:  # every turn was taken until the deadline
                raise NoAnswer(channel.url, timeout)
            left = max(0.0, deadline - time.monotonic())
            params: dict[str, Any] = {
                "identifier": str(message[0]), "args": list(message[1]), "kwargs": message[2],
                # the peer answers by then, and this side waits _PEER_MARGIN more for it
                # (in milliseconds: the entry of a receiver still running names the
                # asker's 0.5 s, not the 0.49998 s left after the flush)
                "timeout": round(left, 3) or left, "token": self.token,
            }
            if message[4] is not None:
                params["uid"] = message[4]
            if message[3]:
                params["hops"] = message[3]
            return channel.call(p.METHOD_ASK, params, timeout=left + _PEER_MARGIN)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop (idempotent); the channel is the owner's unless
        ``owns_channel``."""
        if self.closed:
            return
        self.closed = True
        self.outbox.close(timeout)  # what it could not send is counted by _lost
        self._refusals.flush()  # the peer's refusals so far, said now
        if self.owns_channel:
            self.channel.close()

    def __repr__(self) -> str:
        return f"<Link {self.name} -> {self.channel.url}>"

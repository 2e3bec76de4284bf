"""The node calling a JSON-RPC 1.0 peer back: the link of an ``interconnect`` that a peer of
the original berryMQ's dialect opened (see :mod:`berrymq_jsonrpc.dialect`).

:class:`V1Link` is the forwarder, one message per ``send_message`` request with the peer's
own token; :class:`V1HttpClient` posts those requests in 1.0 form.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq.bursts import BurstLog
from berrymq.errors import ConnectionClosed, TransportError
from berrymq.wire import ParseError, dumps, encode_message, loads
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import netloc
from berrymq_jsonrpc.outbox import NOT_SENT, Outbox

if TYPE_CHECKING:
    from berrymq.identifier import Identifier
    from berrymq.message import Message
    from berrymq.stats import NodeStats
    from berrymq_jsonrpc.sessions import Session

__all__ = ["CARRIED", "MAX_ANSWER", "V1HttpClient", "V1Link"]

logger = logging.getLogger("berrymq.remote")

#: The member of a 1.0 ``send_message`` request in which a berryMQ node carries the
#: message's ``uid`` and ``hops`` (the original berryMQ reads ``method``, ``params`` and
#: ``id`` only). Without them four 1.0 interconnects made one message go round two
#: nodes for ever, 1,200 deliveries a second on each.
CARRIED = "berrymq"

#: The most of a 1.0 peer's answer read: it answers ``"ok"`` (0.3 also ``"invalid
#: token"``, ``"timeout"``); one 4 GB answer was read whole into the node's memory.
MAX_ANSWER = 64 * 1024


class V1HttpClient:
    """Calls one JSON-RPC 1.0 peer over HTTP: 1.0 requests (no ``jsonrpc`` member,
    positional params) POSTed to one path, 1.0 answers read back.

    Used from one thread at a time (a :class:`V1Link`'s outbox). Kept apart from the
    node's own HTTP client so it can move onto the rebuilt one unchanged.
    """

    def __init__(self, host: str, port: int, path: str, timeout: float) -> None:
        self.host, self.port, self.path, self.timeout = host, port, path, timeout
        self.url = f"http://{netloc(host, port)}{path}"
        self._conn: http.client.HTTPConnection | None = None
        self._calling: http.client.HTTPConnection | None = None  # the call under way's
        #: set by cut() and close(): a call still under way then opens no connection again
        #: and keeps none (it would be left open: nothing closes the client after that)
        self._ended = False
        self._id = 0

    def call(self, method: str, members: str) -> Any:
        """Call ``method`` with ``members`` (the request's members but ``method`` and
        ``id``, as JSON text: ``"params":[...]`` and maybe more); return the result, or
        raise :class:`berrymq.ConnectionClosed` (peer unreachable) or
        :class:`berrymq.TransportError` (an error answer, or not a 1.0 answer)."""
        self._id += 1
        body = (f'{{"method":{dumps(method)},{members},"id":{self._id}}}').encode()
        data = self._post(body)
        try:
            reply = loads(data)
        except ParseError as exc:
            raise TransportError(f"{self.url} answered {method} with malformed JSON: "
                                 f"{exc}") from None
        if type(reply) is not dict or "result" not in reply or reply.get("id") != self._id:
            raise TransportError(f"{self.url} answered {method} with no JSON-RPC 1.0 answer "
                                 f"to it: {data[:200]!r}")
        if reply.get("error") is not None:
            raise TransportError(f"{self.url} answered {method} with the error "
                                 f"{reply['error']!r}")
        return reply["result"]

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or http.client.HTTPConnection(self.host, self.port,
                                                            timeout=self.timeout)
            self._conn = None
            self._calling = conn
            try:
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                data = response.read(MAX_ANSWER + 1)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError
                    ) as exc:
                conn.close()
                if reused and attempt == 0 and not self._ended:
                    continue  # the peer had closed the kept-alive connection
                raise ConnectionClosed(f"cannot reach {self.url}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise ConnectionClosed(f"cannot reach {self.url}: {exc}") from None
            finally:
                self._calling = None
            if len(data) > MAX_ANSWER:  # no answer of 1.0's send_message: not read further
                conn.close()
                raise TransportError(f"{self.url} answered with more than {MAX_ANSWER} "
                                     "bytes, which is no JSON-RPC 1.0 answer to send_message")
            if response.will_close or self._ended:
                conn.close()
            else:
                self._conn = conn
            if response.status != 200:
                raise TransportError(f"{self.url} answered HTTP {response.status}")
            return data
        raise AssertionError("unreachable")

    def cut(self) -> None:
        """End the call under way (from another thread): its read fails at once."""
        self._ended = True
        conn = self._calling
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._ended = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class V1Link:
    """The forwarder of an interconnection a JSON-RPC 1.0 peer opened: sends this bus's
    messages to the peer with ``send_message(token, identifier, args, kwargs)``, one
    message per request (the original knows no ``send_messages``), with the peer's token.

    It is not a :class:`~berrymq.transports.base.Requester` (a 1.0 peer knows no ``ask``),
    and a ``talk`` callback identifier is not carried (the original's ``send_message`` has
    no room for it). An answer other than ``"ok"`` (0.3 answers ``"invalid token"`` or
    ``"timeout"``) is a failure: the messages are reported lost and the session closed.
    """

    def __init__(self, client: V1HttpClient, token: str, name: str,
                 on_dead: Callable[[BaseException], None], *, stats: NodeStats | None = None,
                 on_loss: Callable[[], None] | None = None,
                 failures: BurstLog | None = None) -> None:
        self.client = client
        #: the peer's address, where this link calls it back, as every link has one
        self.address = client.url
        self.token = token
        self.name = name
        self.session: Session | None = None
        self._prefix = "[" + dumps(token) + ","
        self._on_dead = on_dead
        #: the node's counters, and what makes its next flush say False: every message
        #: this link accepted and could not send is counted there, as on any other link
        self.stats = stats
        self.on_loss = on_loss
        #: where the link's end is logged (the node's, one line per burst)
        self.failures = BurstLog(logger) if failures is None else failures
        self.outbox = Outbox(self._send_batch, max_bytes=p.DEFAULT_MAX_SIZE - 512,
                             on_failure=self._failed, name=name, on_lost=self._lost)
        self.closed = False

    def _lost(self, count: int) -> None:
        if self.stats is not None:  # stats
            self.stats.lost(NOT_SENT, count)
        if self.on_loss is not None:
            self.on_loss()

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Queue ``message`` for the peer (``reply_to`` cannot be carried in 1.0), with its
        uid and hop count in a member of the request that the original ignores
        (:data:`CARRIED`), so that a berryMQ node at the other end stops it when it comes
        round a circle of nodes, as a 2.0 link does."""
        text = encode_message(message, extras=False)  # [identifier, args, kwargs]
        self.outbox.put(f'"params":{self._prefix}{text[1:]},"{CARRIED}":'
                        f'{dumps({"uid": message[4], "hops": message[3]})}')
        if self.stats is not None:  # stats, as for a 2.0 peer's link
            self.stats.message_out(message[0], self.address)

    async def _send_batch(self, texts: list[str]) -> None:
        # The 1.0 client is a plain blocking one (a 1.0 peer is rare and one at a time):
        # each call runs off the I/O loop, and ends at the transport's timeout as a whole
        # (http.client's is per read: a peer answering a byte a second kept the link, and
        # every sender waiting for room in its outbox, for as long as it dripped).
        client = self.client
        for text in texts:
            try:
                async with asyncio.timeout(client.timeout):
                    result = await asyncio.to_thread(client.call, p.METHOD_SEND_MESSAGE, text)
            except TimeoutError:
                client.cut()
                raise TransportError(f"{client.url} did not answer send_message within "
                                     f"{client.timeout:g}s") from None
            if result != p.RESULT_OK:
                raise TransportError(f"{client.url} answered send_message with {result!r}")
        session = self.session
        if session is not None:
            session.touch()

    def _failed(self, exc: BaseException, lost: int) -> None:
        self.failures.error("%s: could not forward %d message(s) to %s: %s; the link is "
                            "closed", self.name, lost, self.client.url, exc)
        self._on_dead(exc)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.outbox.close(timeout)
        self.client.close()

    def __repr__(self) -> str:
        return f"<V1Link {self.name}>"

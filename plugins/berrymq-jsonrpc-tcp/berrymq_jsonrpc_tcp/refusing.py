"""How the accepting end of a TCP connection refuses what it will not serve, and closes
without losing the refusal: a connection over the node's caps, a line over ``max_size``,
and an HTTP request sent to this port.

Each refusal is answered with one line, then the connection is read a little longer (what
it still sends is dropped, bounded in bytes and time) before it is closed: closing on
unread input resets the connection, and a client still writing would lose the answer.
:class:`Refusing` is a base class of :class:`~berrymq_jsonrpc_tcp.channel.LineChannel`,
as :class:`~berrymq_jsonrpc_tcp.deadline.ReadDeadline` is, so that reading tests two
counters on the channel itself (``_refused``, ``_discarding``) and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import error_object

from berrymq.bursts import BurstLog
from berrymq.wire import dumps

if TYPE_CHECKING:
    from berrymq_jsonrpc.service import Service

__all__ = ["TURN_AWAY_BYTES", "Refusing", "http_request_line", "over"]

logger = logging.getLogger("berrymq.remote.tcp")

_too_large_lines = BurstLog(logger)
_http_requests = BurstLog(logger)
_stalled_lines = BurstLog(logger)
#: A refused connection: how long, and how much, it is read before it is closed, so that
#: the close does not reset the connection before the client has read the refusal.
TURN_AWAY_SECONDS = 1.0
TURN_AWAY_BYTES = 1 << 16
#: What is read, and dropped, of the rest of an oversized line after its answer, before
#: the connection is closed (within :data:`TURN_AWAY_SECONDS`).
TOO_LARGE_DISCARD = 32 << 20
#: The answer to a connection whose first line is an HTTP request line.
_NOT_HTTP = dumps(error_object(
    p.INVALID_REQUEST, "Invalid Request", None,
    "this port speaks berryMQ's JSON-RPC over TCP (one JSON text per line), not HTTP: use "
    "the node's http:// address")).encode() + b"\n"


def over(line: bytes, limit: int) -> bool:
    """Whether ``line`` (read without its newline, or the start of one) is over ``limit``
    bytes: a carriage return before the newline is part of the line ending (CRLF), not of
    the request, so that a request of ``max_size`` bytes is taken whichever ending its
    client writes."""
    return len(line) > limit + 1 or (len(line) > limit and not line.endswith(b"\r"))


def http_request_line(line: bytes) -> bool:
    """Whether ``line`` is an HTTP/1.x request line (``POST / HTTP/1.1``): a browser's
    request (any web page may send one to any port) or an ``http://`` client pointed at
    this port, whose body must not be run line by line as JSON-RPC."""
    parts = line.rstrip(b"\r").split(b" ")
    return (len(parts) == 3 and parts[0].isalpha() and parts[0].isupper()
            and parts[2].startswith(b"HTTP/"))


class Refusing:
    """The refusals of the accepting end, each answered before the connection closes."""

    #: > 0: a connection turned away before it was admitted, counting what it still sends
    _refused = 0
    #: > 0: a connection refused after it was admitted, the most still read and dropped
    _discarding = 0

    if TYPE_CHECKING:  # kept by LineChannel
        url: str
        read_limit: int
        service: Service

        @property
        def serving(self) -> bool: ...
        transport: asyncio.Transport | None
        _rest: bytes

        def write(self, data: bytes) -> None: ...

        def close_transport(self) -> None: ...

    def _turn_away(self, answer: bytes) -> None:
        """Write ``answer`` to a connection over the caps, end the write side, read a
        little of what the client sent (bounded in bytes and time), then close."""
        transport = self.transport
        assert transport is not None
        self._refused = 1
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(TURN_AWAY_SECONDS, self.close_transport)

    def _too_large(self) -> None:
        """Answer a line over ``max_size`` (*Message too large*, ``id`` null) and close
        once the client stops sending it, or after a bounded read of the rest."""
        _too_large_lines.warning("%s sent a line over %d bytes; closed", self.url,
                                 self.read_limit)
        if self.serving:  # a client of this node's (not a node answering this process)
            self.service.count_refusal("max_size")
        error = error_object(p.TOO_LARGE, p.APPLICATION_ERRORS[p.TOO_LARGE], None,
                             {"limit": self.read_limit, "setting": "max_size"})
        self._discard_then_close(dumps(error).encode() + b"\n", TOO_LARGE_DISCARD)

    def _stalled(self, read_timeout: float) -> None:
        """Answer a line not whole ``read_timeout`` seconds after its first byte (*Limit
        reached*, ``id`` null, ``data.setting`` ``read_timeout``), count it and close: a
        stalled or dripping client is told why its connection ends, as an HTTP one is
        (``408``)."""
        _stalled_lines.warning("%s did not finish a line within read_timeout (%gs) of its "
                               "first byte; answered and closed", self.url, read_timeout)
        self.service.count_refusal("read_timeout")
        error = error_object(p.LIMIT_REACHED, p.APPLICATION_ERRORS[p.LIMIT_REACHED], None,
                             {"setting": "read_timeout", "limit": read_timeout,
                              "detail": f"the line did not all come within {read_timeout:g}s "
                                        "of its first byte"})
        self._discard_then_close(dumps(error).encode() + b"\n", TURN_AWAY_BYTES)

    def _refuse_http(self) -> None:
        """Answer an HTTP request on this port with a JSON-RPC error line, run nothing of
        it (its body may hold JSON-RPC lines a web page put there), and close."""
        _http_requests.warning("%s sent an HTTP request to the JSON-RPC over TCP port; "
                               "refused and closed", self.url)
        self._discard_then_close(_NOT_HTTP, TURN_AWAY_BYTES)

    def _discard_then_close(self, answer: bytes, budget: int) -> None:
        if self.serving:  # the node's byte counters: its answers, refusals too
            self.service.stats.exchanged(0, len(answer))
        self.write(answer)
        self._rest = b""
        self._discarding = budget  # see LineChannel.data_received and eof_received
        asyncio.get_running_loop().call_later(TURN_AWAY_SECONDS, self.close_transport)

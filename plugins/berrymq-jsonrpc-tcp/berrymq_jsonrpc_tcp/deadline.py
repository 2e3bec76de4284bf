"""The accepting end's read deadlines on one TCP connection: the deadline of a line and the
idle limit.

A line not complete ``read_timeout`` seconds after its first byte (a stall, or a slow drip:
the deadline is for the whole line, not per read) is answered *Limit reached* and closes
the connection (:meth:`~berrymq_jsonrpc_tcp.refusing.Refusing._stalled`), and a connection
idle that long without an open session is closed. A client that leaves more than the
high-water mark of its answers unread, and reads none of them for that long, is closed too:
the node holds them, and reads no more of it meanwhile. While the node does not read the connection
for its own reasons (its requests wait for the delivery lane, or a long line for room in
``max_reading_bytes``) there is no deadline.

One timer per connection checks both limits and is armed again for the next moment either
could pass. :class:`ReadDeadline` is a base class of
:class:`~berrymq_jsonrpc_tcp.channel.LineChannel` rather than an object of its own, so that
reading notes when a line began and when anything came (``_began``, ``_last``) on the
channel itself: the deadline costs the way of a line nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from berrymq.bursts import BurstLog

if TYPE_CHECKING:
    from berrymq_jsonrpc.service import Service
    from berrymq_jsonrpc.taken import TakenInFlight

    from berrymq_jsonrpc_tcp.answering import Answerer
    from berrymq_jsonrpc_tcp.calls import Calls

__all__ = ["ReadDeadline"]

logger = logging.getLogger("berrymq.remote.tcp")
_unread = BurstLog(logger)  # clients that left their answers unread: one line per burst

try:  # the bytes in a socket's send queue (Linux)
    import fcntl
    import termios
    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - other systems
    _OUTQ = None


class ReadDeadline:
    """The timer that closes a stalled or idle connection on the accepting end."""

    if TYPE_CHECKING:  # kept by LineChannel
        url: str
        closed: bool
        service: Service
        answers: Answerer
        read_timeout: float | None
        calls: Calls
        _rest: bytes
        _began: float
        _last: float
        transport: asyncio.Transport | None
        in_flight: TakenInFlight

        def unread_answers(self) -> bool: ...

        def close_transport(self) -> None: ...

        def _stalled(self, read_timeout: float) -> None: ...

        def _waiting_for_share(self) -> bool: ...

    _watch: asyncio.TimerHandle | None = None
    _unread_since = 0.0  # when the client began to leave its answers unread, or last
    _unread_left = 0  # read some of them; and how many bytes of them were left then

    def _arm(self, when: float) -> None:
        self._watch = asyncio.get_running_loop().call_at(when, self._check)

    def _disarm(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _note_unread(self, now: float) -> None:
        """The client leaves its answers unread from ``now`` on (or read some just now)."""
        self._unread_since, self._unread_left = now, _unsent(self.transport)

    def _unread_too_long(self, limit: float) -> None:
        """The client left more than the high-water mark of its answers unread for
        ``read_timeout`` seconds: closed, as an HTTP client is, with what it did not read
        (and the requests held behind them, and their shares of ``max_reading_bytes``)."""
        _unread.warning("%s did not read its answers within read_timeout (%gs); closed",
                        self.url, limit)
        self.service.count_refusal("read_timeout")
        transport = self.transport
        if transport is not None:
            self.in_flight.ended(True, transport)  # what it holds is thrown away
            transport.abort()

    def _in_use(self) -> bool:
        return bool(self.calls.owed) or bool(self.answers.unanswered) or self.service.ties(self)

    def _check(self) -> None:
        self._watch = None
        if self.closed or self.read_timeout is None:
            return
        limit = self.read_timeout
        action, then = self._due(asyncio.get_running_loop().time(), limit)
        if action is not None:
            action(limit)
        else:
            self._arm(then)

    def _due(self, now: float, limit: float) -> tuple[Callable[[float], None] | None, float]:
        """What passed its deadline now (a method taking ``read_timeout``), or None and
        when to look again."""
        if self.unread_answers():  # the client does not read its answers
            if _unsent(self.transport) < self._unread_left:  # it read some since
                self._note_unread(now)  # its deadline starts again
            late = now - self._unread_since >= limit
            return (self._unread_too_long if late else None), self._unread_since + limit
        if self.answers.stalled() or self._waiting_for_share():
            return None, now + limit  # the node is not reading, for its own reasons
        if self._rest:
            return (self._stalled if now - self._began >= limit else None), self._began + limit
        if now - self._last >= limit:
            return (None if self._in_use() else self._close_idle), now + limit
        return None, self._last + limit

    def _close_idle(self, _: float) -> None:
        logger.debug("%s idle without a session; closed", self.url)
        self.close_transport()


def _unsent(transport: asyncio.Transport | None) -> int:
    """The bytes written to ``transport`` that its peer has not taken yet: those asyncio
    holds and, where the system says (Linux), those in the socket's send queue. The
    kernel frees room in the queue only once much of it was read, so asyncio's part alone
    stands still for seconds under a client reading 500 KB/s."""
    if transport is None:
        return 0
    left = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if _OUTQ is not None and sock is not None:
        with contextlib.suppress(OSError, ValueError):
            left += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    return left

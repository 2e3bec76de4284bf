"""Messages taken from a queue for an answer (``get``, ``get_nowait``) that never left the
node: counted lost, as every message accepted and not delivered is.

A message taken for a client is gone from its queue once its answer is made. When the
connection ends before that answer is written, or fails (a reset; an abort, as of an HTTP
client that does not read within ``read_timeout``) while the answer still waits in the
node's own write buffer, the client never got it: the transport counts it in
``/status`` ``lost`` (``not sent: connection failed or closed``) and logs it once per
burst. What the kernel's buffers hold once written is past the node's knowing: such an
answer counts as sent (docs/protocol.md says so at ``get``).

The answer's maker counts what it takes (:func:`counting_taken` around the making,
:func:`took` where a message is taken); the connection that writes the answer hands the
count to its :class:`TakenInFlight`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, Protocol

from berrymq.bursts import BurstLog
from berrymq.stats import NodeStats
from berrymq_jsonrpc.outbox import NOT_SENT

__all__ = ["TakenInFlight", "counting_taken", "took"]

_taken: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "berrymq_taken", default=None)


@contextlib.contextmanager
def counting_taken() -> Iterator[list[int]]:
    """Count the messages taken from queues within the block (in this context, and in
    the lane's work it awaits, which runs in a copy of it): ``[count]``."""
    box = [0]
    reset = _taken.set(box)
    try:
        yield box
    finally:
        _taken.reset(reset)


def took() -> None:
    """A message was taken from a queue for the answer being made."""
    box = _taken.get()
    if box is not None:
        box[0] += 1


#: How often a connection holding answers with taken messages unsent looks whether its
#: transport has sent them: a reset then counts at most what was sent in the last 20 ms
#: (asyncio says nothing when a buffer empties, and throws it away unseen on a reset).
RECHECK_SECONDS = 0.02


class _Buffered(Protocol):
    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...


class TakenInFlight:
    """One connection's written answers that carry taken messages, until its transport
    has handed them to the kernel (looked at as it writes, and every
    :data:`RECHECK_SECONDS` while any is held; not a hot path: only answers with messages
    are kept). Used on the I/O loop."""

    def __init__(self, stats: NodeStats, log: BurstLog, peer: Any) -> None:
        self.stats = stats
        self.log = log  # the node's, for such losses: one line per burst
        self.peer = peer
        self._written = 0  # bytes given to the transport
        self._marks: collections.deque[tuple[int, int]] = collections.deque()  # (end, taken)
        self._recheck: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """How many taken messages are in answers not known to be sent yet."""
        return sum(taken for _, taken in self._marks)

    def sent(self, size: int) -> None:
        """``size`` bytes that carry no taken message (a request) went to the transport."""
        self._written += size

    def wrote(self, transport: _Buffered, size: int, taken: int) -> None:
        """``size`` bytes of answers carrying ``taken`` messages went to ``transport``."""
        self._written += size
        if taken:
            self._marks.append((self._written, taken))
        if self._marks:
            self.check(transport)
            if self._marks and self._recheck is None:
                self._recheck = asyncio.get_running_loop().call_later(
                    RECHECK_SECONDS, self._look_again, transport)

    def _look_again(self, transport: _Buffered) -> None:
        self._recheck = None
        if transport.is_closing():  # its end settles them (ended)
            return
        self.check(transport)
        if self._marks:
            self._recheck = asyncio.get_running_loop().call_later(
                RECHECK_SECONDS, self._look_again, transport)

    def check(self, transport: _Buffered) -> None:
        """Forget the answers ``transport`` has handed to the kernel by now."""
        marks = self._marks
        flushed = self._written - transport.get_write_buffer_size()
        while marks and marks[0][0] <= flushed:
            marks.popleft()

    def not_written(self, taken: int) -> None:
        """An answer carrying ``taken`` messages could not be written: the connection
        had ended. Counted lost."""
        self._lose(taken)

    def ended(self, failed: bool, transport: _Buffered | None = None) -> None:
        """The connection ended; ``failed``: with what its transport held unsent thrown
        away (a reset, an abort), which is counted lost. A close flushes it first.
        ``transport``: one about to be aborted, whose buffer still tells what it sent."""
        if transport is not None:
            self.check(transport)
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        marks, self._marks = self._marks, collections.deque()
        if failed:
            self._lose(sum(taken for _, taken in marks))

    def _lose(self, count: int) -> None:
        if count:
            self.stats.lost(NOT_SENT, count)
            self.log.warning("%s: %d message(s) taken from a queue by get were not sent: the "
                            "connection ended before their answers were written", self.peer,
                            count)

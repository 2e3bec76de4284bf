"""Messages the core could not deliver, counted by reason, and reported once per burst.

The core drops a message only where it must: past the hop limit (a receiver loop), when a
forwarder failed to take it (its link had just failed), when a receiver refused it in a
worker thread or an adapter's (nobody is left to raise to), when an ``async def``
receiver's event loop closed before its coroutine ran or finished, or was not running
when someone looked, or its task was cancelled, or when the
process exited with tasks its worker pool could not run in time. Each such loss
is counted here, per bus, by a short fixed reason (``bus.losses.counts``, read by the
JSON-RPC ``/status``), and reported on the ``berrymq`` logger: the first loss of a burst
at once, with what it was; the ones after it are summed and logged in one line per
``interval`` seconds (5), with the count, so that 10,000 messages dropped in a second give
two lines, not 10,000.

This is the loss path, not the hot path: it takes a lock (uncontended in practice) and may
start one short-lived timer thread per burst. Closing the bus writes what is pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from berrymq.bursts import flush_at_exit, flushed
from berrymq.errors import QueueFull
from berrymq.fork_safe import ForkSafeLock
from berrymq.state import StateKey

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["ASYNC_CANCELLED", "CANCELLED_FIRST", "CLOSED_FIRST", "DECORATOR_REFUSED", "EXITED_FIRST",
           "FORWARD_FAILED", "HOP_LIMIT", "LOOP_CLOSED", "LOOP_NOT_RUNNING", "LOSSES",
           "REPLY_REFUSED", "SOURCE_REFUSED", "WORKER_REFUSED", "Losses", "count_refusals"]

logger = logging.getLogger("berrymq")

#: A message an adapter (a source: a timer's tick, a file event) sent that a receiver
#: refused (a full queue): the adapter's thread has no caller to raise to.
SOURCE_REFUSED = "refused, sent by an adapter: {}"
#: A message sent by ``auto_twitter`` or ``twitter_exception`` refused by a receiver (a
#: full queue): raised, it would have replaced the wrapped call's own result or exception.
DECORATOR_REFUSED = "refused, sent by a decorator: {}"
#: A message handed on ``hop_limit`` times (a receiver loop, in-process or across nodes).
HOP_LIMIT = "hop limit"
#: A forwarder refused or failed to take a message (``not forwarded: ConnectionClosed``).
FORWARD_FAILED = "not forwarded: {}"
#: A receiver refused a message in a worker thread (a full queue), with no sender to tell.
WORKER_REFUSED = "refused in a worker thread: {}"
#: A message from a peer that came to the bus after it closed (its transport handed it to
#: the delivery lane, which ran it only after the bus stopped waiting for it).
CLOSED_FIRST = "dropped: the bus closed before it was delivered"
#: A message handed to the worker pool for a receiver that was cancelled before a worker
#: ran it: the sender's call had returned, so it is counted rather than dropped unseen.
CANCELLED_FIRST = "dropped: its receiver was cancelled before a worker ran it"
#: A message handed to the worker pool that no worker ran before the process exited: the
#: pool's receivers were still busy when the wait at exit was over (see
#: :mod:`berrymq._pool_exit`).
EXITED_FIRST = "dropped: the process exited before a worker ran it"
#: A message for an ``async def`` receiver whose event loop was closed before the
#: coroutine ran or finished (a hand-off the loop never ran, a task left pending).
LOOP_CLOSED = "dropped: its async receiver's event loop was closed"
#: A message for an ``async def`` receiver whose event loop was not running (stopped, not
#: closed) when a flush, a close or a read of the losses looked, its hand-off not run
#: (withdrawn: it never runs), or that such a loop still held at exit.
LOOP_NOT_RUNNING = "dropped: its async receiver's event loop is not running"
#: A message whose ``async def`` receiver's task was cancelled before it finished
#: (``asyncio.run`` ending cancels the tasks left).
ASYNC_CANCELLED = "dropped: its async receiver's task was cancelled"
#: The reply of an ``async def`` receiver to ``talk``, refused by a receiver of the reply
#: (``QueueFull``): it is sent when the coroutine ends, on its loop, with no sender to tell.
REPLY_REFUSED = "dropped: a talk reply was refused"


class Losses:
    """The lost-message counts of one bus, and the rate-limited lines that report them.

    :attr:`counts` (reason -> messages) and :attr:`total` are readable at any time;
    :meth:`snapshot` copies the counts under the lock.
    """

    def __init__(self, name: str, interval: float = 5.0) -> None:
        self.name = name
        self.interval = interval
        self.counts: dict[str, int] = {}
        self.total = 0
        #: :attr:`total` at the bus's last flush, which says False when it has grown since
        self.flushed = 0
        self._lock = ForkSafeLock()
        self._unreported: dict[str, int] = {}
        self._level = logging.WARNING
        self._last_line = -interval
        self._timer: threading.Timer | None = None

    def add(self, reason: str, level: int, text: str, *args: Any) -> None:
        """Count one message lost for ``reason``; log ``text % args`` if it opens a burst,
        else leave it to the burst's summary line."""
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            self.total += 1
            wait = self._last_line + self.interval - time.monotonic()
            if wait <= 0 and not self._unreported:
                self._last_line = time.monotonic()
            else:
                self._unreported[reason] = self._unreported.get(reason, 0) + 1
                self._level = max(self._level, level)
                if self._timer is None:
                    self._timer = threading.Timer(max(wait, 0.0), self._report)
                    self._timer.daemon = True
                    self._timer.name = f"berrymq-losses-{self.name}"
                    flush_at_exit(self)  # a bus nobody closes (the default bus) too
                    try:
                        self._timer.start()
                    except RuntimeError:  # no thread to be had (Python 3.12+ at exit):
                        self._timer = None  # reported at exit, or by the next add after
                return
        logger.log(level, text + " (further losses are counted in bus.losses and summed up "
                   "in one line per %gs)", *args, self.interval)

    def add_many(self, reason: str, n: int) -> None:
        """Count ``n`` messages lost for ``reason`` at once, without a log line: for a
        caller that writes its own one line naming the count (the pool at exit, where a
        burst's summary timer would never fire)."""
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + n
            self.total += n

    def _report(self) -> None:
        flushed(self)
        with self._lock:
            unreported, self._unreported = self._unreported, {}
            level, self._level = self._level, logging.WARNING
            self._timer = None
            if unreported:
                self._last_line = time.monotonic()
            total = self.total
        if unreported:
            logger.log(level, "bus %s lost %d more message(s): %s (%d lost in all, see "
                       "bus.losses)", self.name, sum(unreported.values()),
                       ", ".join(f"{n} {reason}" for reason, n in unreported.items()), total)

    def snapshot(self) -> dict[str, int]:
        """The counts by reason, copied."""
        with self._lock:
            return dict(self.counts)

    def flush(self) -> None:
        """Write what is not reported yet, now (the bus is closing, or the process
        exiting: :func:`berrymq.bursts.flush_at_exit`)."""
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self._report()


def _losses_of(bus: Bus) -> Losses:
    return Losses(bus.name)


#: ``bus.state(LOSSES)``: the bus's :class:`Losses` (also ``bus.losses``).
LOSSES: StateKey[Losses] = StateKey("losses", _losses_of, Losses.flush, after_close=True)


def count_refusals(bus: Bus, failure: Exception, reason: str, sender: object
                   ) -> BaseException | None:
    """For a sender with nobody to raise ``failure`` to (an adapter's thread, a decorator):
    count each refusal in it (:class:`~berrymq.QueueFull`, at any depth of its groups) as
    a message lost for ``reason`` (formatted with ``QueueFull``), logged once per burst
    naming ``sender``, and return the rest of ``failure`` (no refusal), or None. A
    refusal by a peer's link (``not_forwarded``) was counted where it happened."""
    refused: BaseException | None
    rest: BaseException | None
    if isinstance(failure, ExceptionGroup):
        refused, rest = failure.split(QueueFull)
    elif isinstance(failure, QueueFull):
        refused, rest = failure, None
    else:
        refused, rest = None, failure
    for refusal in _leaves(refused):
        if not getattr(refusal, "not_forwarded", False):
            bus.state(LOSSES).add(reason.format("QueueFull"), logging.ERROR,
                                  "%s: a message it sent was refused: %s", sender, refusal)
    return rest


def _leaves(exc: BaseException | None) -> Iterator[BaseException]:
    """The exceptions in ``exc`` that are no group, however deeply nested."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    elif exc is not None:
        yield exc

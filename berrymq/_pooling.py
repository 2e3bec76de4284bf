"""What a :class:`~berrymq.Bus` does with its worker pool: start one, change or stop it,
and wait for it.

The pool itself is :class:`~berrymq._pool.WorkerPool`; :class:`Pooling` is a base class
of the bus, as :class:`~berrymq._subscribing.Subscribing` is, so that
``bus.set_multiplicity(n)`` stays one call. A sender reads ``bus.pool`` without a lock;
a change swaps it under the bus's lock and shuts the old pool down outside it. Whether
the bus is closed is checked under that lock too, so that a pool is never swapped in
after :meth:`~berrymq.Bus.close` stopped the last one; and close waits for the shutdowns
still under way in other threads (:meth:`Pooling.stop_pool`), so that no worker thread
outlives it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from berrymq._pool import WorkerPool
from berrymq.settings import core_problem
from berrymq.timeouts import seconds_left, wait_limit

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.fork_safe import ForkSafeLock

__all__ = ["Pooling"]


class Pooling:
    """The methods a :class:`~berrymq.Bus` has for its worker pool."""

    #: the pool last shut down, which a sender that took it before the shutdown may still
    #: run tasks of (see :meth:`join`)
    _retired: WorkerPool | None = None

    if TYPE_CHECKING:  # kept by Bus
        bus: Bus  # the bus itself
        pool: WorkerPool | None
        _lock: ForkSafeLock
        #: pools swapped out and not yet shut down (under ``_lock``), for close to wait for
        _stopping: list[WorkerPool]

        def refuse_if_closed(self, action: str) -> None: ...

        def _update_direct(self) -> None: ...

    def set_multiplicity(self, n: int) -> None:
        """Run receivers on ``n`` worker threads; 0 runs them in the sender's thread.

        Messages already handed to the old pool are all delivered before this returns.
        ``n`` is checked as the ``multiplicity`` setting is
        (:func:`~berrymq.settings.core_problem`): an integer from 0 to
        :data:`~berrymq.settings.MAX_MULTIPLICITY` (10,000), else :class:`TypeError` or
        :class:`ValueError` at once. When the system cannot start ``n`` threads,
        :class:`ValueError` names the cause, the threads started are stopped and the old
        pool stays. Once the bus is closed, ``n > 0`` raises :class:`~berrymq.BusClosed`;
        a call racing :meth:`~berrymq.Bus.close` either raises so or starts its pool
        before the close, which then stops it.
        """
        problem = core_problem("multiplicity", n)
        if problem is not None:
            raise problem
        with self._lock:  # checked with the swap: close() sets closed under this lock
            if n:
                self.refuse_if_closed(f"start {n} worker thread(s)")
            old = self.pool
            self.pool = WorkerPool(self.bus, n) if n else None
            if old is not None:
                self._stopping.append(old)
        self._update_direct()
        if old is not None:
            try:
                old.shutdown()
            finally:
                self._retired = old
                with self._lock:
                    self._stopping.remove(old)

    def stop_pool(self) -> None:
        """For :meth:`~berrymq.Bus.close` (the bus is closed: no pool can start any
        more): stop the pool, and wait until the pools other threads are shutting down
        have stopped too, their workers ended (but for a worker that calls this itself)."""
        self.set_multiplicity(0)
        with self._lock:
            stopping = list(self._stopping)
        for pool in stopping:
            pool.wait_stopped()

    @property
    def multiplicity(self) -> int:
        pool = self.pool
        return pool.size if pool is not None else 0

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker pool has run every message handed to it so far, and the
        pool last shut down what a sender that raced with the shutdown handed it.

        Returns False if ``timeout`` passed first (None or ``float("inf")``: no limit);
        True at once without a pool, when no such sender runs. A receiver running on a
        worker of the pool gets :class:`RuntimeError` instead: it would wait for its own
        worker to be idle, for ever (a programming error, as a blocking call on the I/O
        thread is; see *Exceptions* in docs/api.md).
        """
        limit = wait_limit("timeout", timeout)  # checked with or without a pool
        deadline = None if limit is None else time.monotonic() + limit
        retired, pool = self._retired, self.pool
        if retired is not None and not retired.join(seconds_left(deadline)):
            return False
        return True if pool is None else pool.join(seconds_left(deadline))

"""The worker pool: threads that run receivers so that sending returns at once.

Each task is one route entry with its message, run through :func:`deliver
<berrymq._delivery.deliver>` like any other delivery. Nothing handed to the pool is lost
when it shuts down: the workers run what was queued before their stop markers, and what
lies behind them is run by the thread that shuts it down, or by a sender that raced with
the shutdown (a *late* sender: it found the pool closed once it had queued its tasks), or
by a join of the closed pool that finds them queued (:mod:`berrymq._pool_queue`). Such a
join returns once the late senders ran what they took, not as soon as the shutdown is over.

A process that ends with tasks in a pool its bus did not shut down has them run first:
:mod:`berrymq._pool_exit` finishes the pool (:meth:`WorkerPool.finish_at_exit`) once the
main thread has ended, and counts what busy receivers left no worker to run.

The task queue is bounded (setting ``pool_queue_size``): a sender that finds it full waits
for room up to ``pool_queue_wait`` seconds, then gets :class:`~berrymq.QueueFull` naming
the settings; nothing is dropped. A receiver that sends from a worker thread of the same
pool does not wait (every worker might be waiting so, with nobody left to make room): it
runs the receivers of its message itself, as ``multiplicity = 0`` would. The hot path takes
no lock: one ``qsize()`` per task, and a worker looks at a plain counter of waiting
senders after each task it takes.

A receiver's refusal in a worker (a full :class:`~berrymq.Queue`) has no sender to reach:
it is counted in ``bus.losses`` and logged once per burst (see :mod:`berrymq._losses`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from berrymq._backlog import loop_waits_for_workers
from berrymq._blocked import join_unblocking
from berrymq._delivery import Answer, deliver, drop_tracebacks
from berrymq._index import RouteEntry
from berrymq._losses import CANCELLED_FIRST, CLOSED_FIRST, EXITED_FIRST, LOSSES, WORKER_REFUSED
from berrymq._pool_exit import track, untrack
from berrymq._pool_queue import take_behind_markers, take_tasks
from berrymq.errors import QueueFull
from berrymq.message import Message
from berrymq.timeouts import seconds_left, wait_seconds

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["DEFAULT_POOL_QUEUE_SIZE", "DEFAULT_POOL_QUEUE_WAIT", "WorkerPool", "pool_bounds"]

logger = logging.getLogger("berrymq")

#: tasks (one per receiver of a message) that may wait for a worker
DEFAULT_POOL_QUEUE_SIZE = 100_000
#: seconds a sender waits for room in a full task queue before it gets QueueFull
DEFAULT_POOL_QUEUE_WAIT = 10.0


class _Task(NamedTuple):
    entry: RouteEntry
    message: Message
    answer: Answer | None


def pool_bounds(bus: Bus) -> tuple[int, float]:
    """``pool_queue_size`` and ``pool_queue_wait`` for ``bus``: given to ``Bus(...)``,
    else from the settings file, else the defaults."""
    return (int(bus.core_setting("pool_queue_size", DEFAULT_POOL_QUEUE_SIZE)),
            wait_seconds("pool_queue_wait",
                         bus.core_setting("pool_queue_wait", DEFAULT_POOL_QUEUE_WAIT), none=False))


class WorkerPool:
    """``size`` daemon threads taking tasks from one bounded queue."""

    def __init__(self, bus: Bus, size: int) -> None:
        self._bus = bus
        self._tasks: queue.SimpleQueue[_Task | threading.Barrier | None] = queue.SimpleQueue()
        #: advanced each time a worker (a receiver) hands on tasks: a join's round in which
        #: it did not has seen every task handed on in turn (``next`` of it is atomic)
        self._handed_on = itertools.count()
        self.size = size
        self.limit, self.wait = pool_bounds(bus)
        if self.limit < 1:
            raise ValueError(f"pool_queue_size must be at least 1, got {self.limit}")
        self.closed = False
        self._room = threading.Condition()
        self._waiting = 0  # senders waiting for room: read by workers without the lock
        self._joining = threading.Lock()
        self._barrier: threading.Barrier | None = None  # the running join's, if any
        #: shut down: the workers stopped, and the shutdown ran what they left (late
        #: senders may still run tasks they queued: see _late)
        self._stopped = threading.Event()
        #: senders running the tasks they queued into the closed pool (under _settled)
        self._late = 0
        self._settled = threading.Condition()
        self._taking = threading.Lock()  # one taker at a time (see _pool_queue)
        self._threads: list[threading.Thread] = []
        self._start_threads()
        if not track(self):  # run what it holds when the process exits (see there) ...
            self.shutdown()  # ... or, made after that, none: its senders run their tasks

    @property
    def bus_name(self) -> str:
        """The name of the bus the pool runs receivers of (for log lines)."""
        return self._bus.name

    def _on_worker(self) -> bool:
        """Whether the calling thread is a worker of this pool (which must not wait for it)."""
        return threading.current_thread() in self._threads

    def _start_threads(self) -> None:
        """Make and start the workers one at a time, or none: at the first failure (no
        thread object made ahead: for a huge ``size`` that took gigabytes) those started
        stop again, and the error names ``multiplicity`` and the cause."""
        threads = self._threads
        try:
            for i in range(self.size):
                thread = threading.Thread(target=self._work, name=f"berrymq-worker-{i}",
                                          daemon=True)
                thread.start()
                threads.append(thread)
        except (RuntimeError, MemoryError) as exc:  # "can't start new thread"
            for _ in threads:
                self._tasks.put(None)
            for thread in threads:
                thread.join()
            raise ValueError(
                f"multiplicity {self.size}: only {len(threads)} worker threads could be "
                f"started ({exc}); they were stopped again and the pool is unchanged") from exc

    def submit(self, route: Iterable[RouteEntry], message: Message, answer: Answer | None) -> None:
        """Queue one task per route entry; raises :class:`QueueFull` when no room came."""
        tasks = self._tasks
        limit = self.limit
        deadline = None
        for handed, entry in enumerate(route):
            task = _Task(entry, message, answer)
            if tasks.qsize() >= limit:
                if deadline is None:
                    deadline = time.monotonic() + self.wait
                if not self._wait_for_room(deadline, message, handed):
                    self._run(task)  # a worker of this pool: it runs the task itself
                    continue
            tasks.put(task)
        if self._on_worker():
            next(self._handed_on)  # by a receiver, after its tasks are queued: see _join
        if self.closed:
            self._drain_late(message)

    def _wait_for_room(self, deadline: float, message: Message, handed: int) -> bool:
        """Wait until the queue has room (True), or say that this thread is one of the
        pool's workers, which must not wait (False); :class:`QueueFull` at ``deadline``."""
        if self._on_worker():
            return False
        with self._room:
            self._waiting += 1
            try:
                if not self._room.wait_for(
                        lambda: self._tasks.qsize() < self.limit or self.closed,
                        seconds_left(deadline)):
                    raise QueueFull(
                        f"message {message[0]}: the worker pool's queue holds "
                        f"{self.limit} tasks (setting pool_queue_size) and no room came "
                        f"within {self.wait:g}s (setting pool_queue_wait); it was handed "
                        f"to {handed} receiver(s) before, not to the others")
            finally:
                self._waiting -= 1
        return True

    def _run(self, task: _Task) -> None:
        entry = task.entry
        if not entry[2].active:  # cancelled while the task waited, or its bus closed
            losses, receiver = self._bus.state(LOSSES), entry[0]()
            if self._bus.closed:  # (a late sender's task: see _drain_late)
                losses.add(CLOSED_FIRST, logging.WARNING, "message %s dropped: bus %s closed "
                           "before a worker thread ran it", task.message[0], self._bus.name)
            elif receiver is None:  # a weakly held receiver that nothing else held
                losses.add(CANCELLED_FIRST, logging.WARNING, "message %s dropped: its receiver "
                           "of %s was garbage-collected before a worker thread ran it",
                           task.message[0], entry[2].pattern)
            else:  # (its repr made by the log line: one that fails is logging's to say)
                losses.add(CANCELLED_FIRST, logging.WARNING, "message %s dropped: its receiver "
                           "%r of %s was cancelled before a worker thread ran it",
                           task.message[0], receiver, entry[2].pattern)
            return
        errors = deliver(self._bus, (entry,), task.message, task.answer)
        if not errors:
            return
        for exc in errors:  # a refusal in a worker has no sender to reach: counted
            if isinstance(exc, QueueFull):
                self._bus.state(LOSSES).add(WORKER_REFUSED.format("QueueFull"), logging.ERROR,
                                            "message %s refused by %r in a worker thread: %s",
                                            task.message[0], entry[2], exc)
            else:
                logger.error("receiver %r of %s failed on message %s in a worker thread",
                             entry[2].ref(), entry[2].pattern, task.message[0], exc_info=exc)
        drop_tracebacks(*errors)  # counted and logged: the message is not kept (see there)

    def _work(self) -> None:
        get = self._tasks.get
        while True:
            task = get()
            if self._waiting:  # a sender waits for room: there is one more now
                with self._room:
                    self._room.notify_all()
            if task is None:
                return
            if isinstance(task, _Task):
                try:
                    self._run(task)
                except BaseException as exc:  # sys.exit() in a receiver ended the worker
                    # unsaid (threading prints no SystemExit): logged, the worker goes on
                    logger.error("receiver %r of %s raised %s on message %s in a worker "
                                 "thread, where it cannot end the process; the worker goes "
                                 "on", task.entry[2].ref(), task.entry[2].pattern,
                                 type(exc).__name__, task.message[0], exc_info=exc)
                continue
            with contextlib.suppress(threading.BrokenBarrierError):
                task.wait()  # a barrier put by join()

    def _drain(self) -> None:
        """Run here the tasks still queued once the workers stopped (a sender that raced
        with the shutdown put some behind their stop markers): see :mod:`berrymq._pool_queue`."""
        with self._taking:
            left = take_tasks(self._tasks)
        for task in left:
            self._run(task)

    def _drain_late(self, message: Message) -> None:
        """Run the tasks behind the stop markers, which no worker will take, by a sender
        that found the pool closed after it queued tasks: counted, so that a join of the
        closed pool waits until it has run them. Its bus's close may go on meanwhile: what
        it had not run then is counted as ``CLOSED_FIRST`` (the shutdown waiting for it hung
        where its receivers wait for the close). It took the whole queue once, and ran
        every sender's backlog in its own thread while the workers stopped: the shutdown
        was over at once, and the close counted that backlog as lost. (It did so again
        when it looked between the pool's closing and its stop markers: see :meth:`_stop`.)"""
        with self._settled:
            self._late += 1
        try:
            with self._taking:  # (what the workers are still to take goes back)
                late = take_behind_markers(self._tasks, lambda task: task.message is message)
            for task in late:
                self._run(task)
        finally:
            with self._settled:
                self._late -= 1
                self._settled.notify_all()

    def _all_run(self, deadline: float | None) -> bool:
        """For a join of a closed pool: wait for the shutdown, run what is still queued,
        then until no late sender still runs what it took; False at ``deadline``."""
        if not self._stopped.wait(seconds_left(deadline)):
            return False
        self._drain()
        with self._settled:
            return self._settled.wait_for(lambda: not self._late, seconds_left(deadline))

    def join(self, timeout: float | None) -> bool:
        """Wait until every task handed over before the call has run, and every task those
        handed over in turn; False on timeout. Of a closed pool: until the shutdown and
        the late senders have run what they took (:meth:`_all_run`).

        Each round holds every worker at a barrier queued behind the tasks already there:
        when the last one arrives those tasks have run and no task is running. The join
        is over when no receiver handed on tasks during the round (what they handed on
        before it was queued before its barrier), or the queue is found empty then (by the
        barrier's action, before any worker is let go); else it takes another round. What
        other threads hand over meanwhile is not waited for: a steady sender no longer
        held a join until its timeout although everything before it had long run.
        """
        with loop_waits_for_workers():  # an event loop's thread: see there
            return self._join(timeout)

    def _join(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.closed:  # a worker of its own that shut it down may ask too
            return self._all_run(deadline)
        if self._on_worker():
            raise RuntimeError(  # a programming error, as a blocking call on the I/O thread
                f"join() or flush() of bus {self._bus.name!r} from a receiver running in its "
                "worker pool would wait for that receiver itself; it would deadlock")
        # one join at a time: the barriers of two would each hold some of the workers
        if not self._joining.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        try:
            while True:
                idle: list[bool] = []
                mark = next(self._handed_on)
                barrier = threading.Barrier(self.size + 1,
                                            action=functools.partial(self._note_idle, idle, mark))
                self._barrier = barrier  # for a shutdown to break off (see shutdown)
                left = seconds_left(deadline)
                if self.closed:
                    return self._all_run(deadline)
                for _ in range(self.size):
                    self._tasks.put(barrier)
                try:
                    barrier.wait(left)
                except threading.BrokenBarrierError:
                    if self.closed:  # shut down meanwhile: it runs what is left itself
                        return self._all_run(deadline)
                    return False
                if idle[0]:
                    return True
        finally:
            self._barrier = None
            self._joining.release()

    def restart_after_fork(self) -> None:
        """In a process just forked (see :mod:`berrymq._pool_exit`): the workers are the
        parent's and are not here, and the tasks queued are the parent's to run (it
        does). The pool starts afresh with workers of its own; before, what the child
        handed it was never run, with no count."""
        self._tasks = queue.SimpleQueue()
        self._handed_on = itertools.count()
        self._room = threading.Condition()
        self._waiting = 0
        self._joining = threading.Lock()
        self._barrier = None
        self._late = 0
        self._settled = threading.Condition()
        self._taking = threading.Lock()
        self._threads = []
        self._start_threads()

    def _note_idle(self, into: list[bool], mark: int) -> None:
        """The action of a join's barrier, run while every worker waits at it: whether
        the join is over (see :meth:`join`); ``mark``, the hand-on count when it began."""
        into.append(next(self._handed_on) == mark + 1 or self._tasks.empty())

    def _closing_idle(self) -> bool:
        """Whether the bus is closing (it closes its queues next: :mod:`berrymq._blocked`)
        and the queue holds only the running workers' stop markers: no task left could end
        a worker's wait on them. (Asked again and again: a stop begun before the close
        is ended by it too.)"""
        return (self._bus.closed
                and self._tasks.qsize() <= sum(thread.is_alive() for thread in self._threads))

    def _stop(self, deadline: float | None) -> list[threading.Thread]:
        """Close the pool and give each worker a stop marker behind the tasks queued, then
        wait for the workers until ``deadline``; the ones still running (a receiver that
        does not return) are returned. Senders that come after run their tasks themselves
        (:meth:`submit`), so nothing is handed to a pool nobody empties."""
        with self._taking:  # a late sender that sees ``closed`` finds the markers in too
            self.closed = True
            for _ in self._threads:
                self._tasks.put(None)
        untrack(self)
        with self._room:
            self._room.notify_all()
        # A join under way is broken off, and waits for the end of the shutdown instead:
        # its barriers may lie between the stop markers, where no worker would reach them
        # all (a join that begins later sees ``closed``).
        barrier = self._barrier
        if barrier is not None:
            barrier.abort()
        current = threading.current_thread()
        others = [thread for thread in self._threads if thread is not current]
        with loop_waits_for_workers():  # an event loop's thread: see there
            join_unblocking(self._bus, others, deadline, self._closing_idle)
        return [thread for thread in others if thread.is_alive()]

    def shutdown(self) -> None:
        """Stop the workers once they ran every task queued, and run here what a sender
        that raced with the shutdown queued behind them."""
        self._stop(None)
        self._drain()
        self._stopped.set()

    def wait_stopped(self) -> None:
        """Wait until a shutdown under way in another thread has stopped the workers and
        run what they left (at once in a worker, which that shutdown waits for)."""
        if not self._on_worker():
            self._stopped.wait()

    def finish_at_exit(self, deadline: float) -> tuple[int, int]:
        """:meth:`shutdown` for a process that exits: the workers run what is queued until
        ``deadline``; if some are still busy then, the tasks none of them took are not
        run but counted in the bus's losses (``EXITED_FIRST``). Returns the tasks so
        dropped and the workers still running a receiver; (0, 0) for a pool already shut
        down (by its bus, which then ran everything)."""
        if self.closed:
            return 0, 0
        busy = self._stop(deadline)
        if not busy:
            self._drain()
            self._stopped.set()
            return 0, 0
        with self._taking:
            dropped = len(take_tasks(self._tasks))  # the markers stay for the busy workers
        if dropped:
            self._bus.state(LOSSES).add_many(EXITED_FIRST, dropped)
        self._stopped.set()
        return dropped, len(busy)

"""A pool of threads for work that may block, which gives its threads back once idle.

``concurrent.futures.ThreadPoolExecutor`` keeps every thread it started until the process
ends: after a burst of slow ``ask`` requests a node would run dozens of idle threads for
good, and work cancelled while it waited stays queued, with its arguments, until a thread
is free to skip it. :class:`WaitThreads` starts a thread only when none is idle (up to its
maximum), ends a thread that found no work for ``idle_exit`` seconds, and drops cancelled
work at once. The parts of an ``ask`` (:mod:`berrymq.ask`) and the JSON-RPC requests that
may wait run on it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from berrymq.fork_safe import ForkSafeLock, renew_in_child

__all__ = ["WaitThreads"]

T = TypeVar("T")

#: What a worker takes from the queue: the future and the call that settles it.
_Work = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class WaitThreads(concurrent.futures.Executor):
    """Up to ``max_workers`` daemon threads named ``name-N``; one idle for ``idle_exit``
    seconds ends. Work waits in order while every thread is busy."""

    def __init__(self, max_workers: int, name: str, idle_exit: float = 10.0) -> None:
        self.max_workers = max_workers
        self.idle_exit = idle_exit
        self._name = name
        self._queue: collections.deque[_Work] = collections.deque()
        self._lock = ForkSafeLock()
        # An idle thread waits here for a token, put by whoever gave it work. (A
        # condition's wait makes a lock and takes more system calls per wake: the work
        # comes from the I/O loop, and an ask waits for the wake.)
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._tokens = 0  # put in _wake and not taken yet
        self._threads = 0  # running now
        self._idle = 0  # waiting for a token
        self._started = 0  # ever, for the names
        self._shutdown = False
        renew_in_child(self)

    @property
    def threads(self) -> int:
        """How many threads run now (busy or idle)."""
        return self._threads

    @property
    def idle(self) -> int:
        """How many of them wait for work now."""
        return self._idle

    @property
    def saturated(self) -> bool:
        """Whether every thread it may run is running work now, so that work submitted now
        waits for one to finish (what a node says of an ``ask`` not started in time)."""
        return self._threads >= self.max_workers and self._idle == 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            work = (future, fn, args, kwargs)
            self._queue.append(work)
            future.add_done_callback(self._forget_cancelled)
            # An idle thread not told yet takes it (one told but not awake yet may take
            # other work first: the work waits for the first thread free).
            if self._idle > self._tokens:
                self._tokens += 1
                self._wake.put(None)
                return future
            if self._threads >= self.max_workers:  # taken by the first thread done
                return future
            self._threads += 1
            self._started += 1
            thread = threading.Thread(target=self._run, daemon=True,
                                      name=f"{self._name}-{self._started}")
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the work is not left behind for none
            with self._lock:
                self._threads -= 1
                if work in self._queue:
                    self._queue.remove(work)
            raise
        return future

    def _forget_cancelled(self, future: concurrent.futures.Future[Any]) -> None:
        """Drop the work of ``future``, cancelled while it waited, from the queue at once:
        the work and its arguments are not kept until a thread is free to skip it (an
        ``ask`` answered by its timeout while every thread was busy, many times over)."""
        if not future.cancelled():
            return
        with self._lock:
            for work in self._queue:
                if work[0] is future:
                    self._queue.remove(work)
                    break

    def _next(self) -> _Work | None:
        """The next work, waiting for it up to ``idle_exit``; None when this thread is to
        end (idle that long, or shut down with nothing left)."""
        lock = self._lock
        while True:
            with lock:
                if self._queue:
                    return self._queue.popleft()
                if self._shutdown:
                    self._threads -= 1
                    return None
                self._idle += 1
            try:
                self._wake.get(timeout=self.idle_exit)
                told = True
            except queue.Empty:
                told = False
            with lock:
                self._idle -= 1
                if told:
                    self._tokens -= 1
                    continue
                if self._tokens > self._idle:  # one was put for this thread as it timed out:
                    self._wake.get_nowait()  # taken back, or the next idle thread would wake
                    self._tokens -= 1  # for nothing while work started a thread beside it
                if not self._queue:  # (told or not: work queued is taken)
                    self._threads -= 1
                    return None

    def _run(self) -> None:
        _worker.of = self
        while (work := self._next()) is not None:
            _settle(*work)
            del work  # nothing kept while idle

    def renew_in_child(self) -> None:
        """In a process forked from this one: none of the threads are there, so the child
        starts its own (the counts said threads were idle, and work given to them waited
        for ever), and the work queued was the parent's, which the parent runs."""
        self._queue.clear()
        self._wake = queue.SimpleQueue()
        self._tokens = self._idle = 0
        # the forking thread, when it is one of them (a receiver run here forked), goes on
        self._threads = 1 if getattr(_worker, "of", None) is self else 0

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; the threads end once the work queued before is done (they
        are daemons: they never hold up the end of the process)."""
        with self._lock:
            self._shutdown = True
            for _ in range(self._idle - self._tokens):
                self._tokens += 1
                self._wake.put(None)


#: ``of``: the :class:`WaitThreads` whose worker the current thread is.
_worker = threading.local()


def _settle(future: concurrent.futures.Future[Any], fn: Callable[..., Any],
            args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run one piece of work and hand its result or exception to its future."""
    if not future.set_running_or_notify_cancel():
        return  # cancelled while it waited
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - handed to the future's owner
        future.set_exception(exc)
    else:
        future.set_result(result)

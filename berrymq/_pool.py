"""The worker pool: threads that run receivers so that sending returns at once.

Each task is one route entry with its message, run through :func:`deliver
<berrymq._delivery.deliver>` like any other delivery. Nothing handed to the pool is lost
when it shuts down: whatever a worker did not take is run by the thread that shuts it
down, or by a sender that raced with the shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from berrymq._delivery import Answer, deliver
from berrymq._index import RouteEntry
from berrymq.message import Message

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["WorkerPool"]

logger = logging.getLogger("berrymq")


class _Task(NamedTuple):
    entry: RouteEntry
    message: Message
    answer: Answer | None


class WorkerPool:
    """``size`` daemon threads taking tasks from one queue."""

    def __init__(self, bus: Bus, size: int) -> None:
        self._bus = bus
        self._tasks: queue.SimpleQueue[_Task | threading.Barrier | None] = queue.SimpleQueue()
        self.size = size
        self.closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"berrymq-worker-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, route: Iterable[RouteEntry], message: Message, answer: Answer | None) -> None:
        put = self._tasks.put
        for entry in route:
            put(_Task(entry, message, answer))
        if self.closed:
            self._drain()

    def _run(self, task: _Task) -> None:
        entry = task.entry
        if not entry[2].active:  # cancelled while the task waited
            return
        errors = deliver(self._bus, (entry,), task.message, task.answer)
        if errors:  # a refusal in a worker has no sender to reach: log it loudly
            logger.error("message %s refused by %r in a worker thread: %s",
                         task.message[0], entry[2], errors[0])

    def _work(self) -> None:
        get = self._tasks.get
        while True:
            task = get()
            if task is None:
                return
            if isinstance(task, _Task):
                self._run(task)
                continue
            with contextlib.suppress(threading.BrokenBarrierError):
                task.wait()  # a barrier put by join()

    def _drain(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if isinstance(task, _Task):
                self._run(task)

    def join(self, timeout: float | None) -> bool:
        """Wait until every task handed over before the call has run; False on timeout."""
        if threading.current_thread() in self._threads:
            raise RuntimeError("a receiver running in the pool cannot wait for the pool")
        while True:
            barrier = threading.Barrier(self.size + 1)
            for _ in range(self.size):
                self._tasks.put(barrier)
            try:
                barrier.wait(timeout)
            except threading.BrokenBarrierError:
                return False
            if self._tasks.empty():
                return True

    def shutdown(self) -> None:
        self.closed = True
        for _ in self._threads:
            self._tasks.put(None)
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join()
        self._drain()

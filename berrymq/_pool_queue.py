"""Taking tasks out of a closed worker pool's queue (:mod:`berrymq._pool`) without taking
what its workers are still to take.

The queue holds tasks, the workers' stop markers (``None``) and a join's barriers. Once the
pool is closed, what lies behind the last stop marker still queued is no worker's: the
thread that shut the pool down, or a sender that raced with the shutdown, runs it. What lies
before goes back, in order: a worker still running takes it before its own marker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["take_behind_markers", "take_tasks"]

T = TypeVar("T")


def _take_all(tasks: queue.SimpleQueue[T | threading.Barrier | None]
              ) -> list[T | threading.Barrier | None]:
    taken: list[T | threading.Barrier | None] = []
    while True:
        try:
            taken.append(tasks.get_nowait())
        except queue.Empty:
            return taken


def take_tasks(tasks: queue.SimpleQueue[T | threading.Barrier | None]) -> list[T]:
    """Every task queued (each is the taker's own: see :func:`take_behind_markers`); the
    stop markers and barriers go back, in order, for the workers still to take them
    (taken here, a worker would wait for ever, and so would the shutdown or the join
    waiting for it)."""
    return take_behind_markers(tasks, _every)


def _every(task: object) -> bool:
    return True


def take_behind_markers(tasks: queue.SimpleQueue[T | threading.Barrier | None],
                        own: Callable[[T], bool]) -> list[T]:
    """The tasks behind the last stop marker still queued (all of them when none is
    left), and the taker's ``own`` wherever they are; everything else, and the markers
    and barriers, go back in order.

    The caller holds the pool's lock for this and for every other taking, so that takers
    do not interleave; senders do not take it, so one that queues meanwhile may land in
    front of a marker put back: it finds its own tasks there (a worker stuck in a receiver
    would never reach them, and at exit they were dropped)."""
    items = _take_all(tasks)
    last = max((i for i, item in enumerate(items) if item is None), default=-1)
    taken: list[T] = []
    for i, item in enumerate(items):
        if item is None or isinstance(item, threading.Barrier):
            tasks.put(item)
        elif i > last or own(item):
            taken.append(item)
        else:
            tasks.put(item)
    return taken

"""Threads waiting on one of a bus's queues, so that closing the bus can end the waits of
its own worker pool.

:meth:`Bus.close <berrymq.Bus.close>` stops the worker pool before it closes the bus's
queues. A receiver running on the pool that consumes one of those queues (``for job in
jobs:``) or waits for room in a full one waited for the close, and the close for it: the
bus never closed. While a pool stops, :func:`join_unblocking` waits for its workers; when
every worker still running waits on a queue of the same bus (so none of them can put or
take what would end the others' waits), it closes those queues, as the close would next:
a consumer takes what is stored, then gets :class:`~berrymq.QueueClosed`; a sender
waiting for room gets :class:`~berrymq.QueueFull`.

The queues say when a thread waits (:func:`waiting_on`); that is only where a thread
blocks, never on the send path.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from berrymq.timeouts import seconds_left

__all__ = ["CHECK_SECONDS", "join_unblocking", "waiting_on"]

#: How often a pool that stops looks whether all its running workers wait on queues.
CHECK_SECONDS = 0.05

#: thread ident -> (the bus whose queue it waits on, what ends the wait: closing it)
_waiting: dict[int, tuple[object, Callable[[], object]]] = {}


@contextlib.contextmanager
def waiting_on(bus: object, end: Callable[[], object]) -> Iterator[None]:
    """Around a wait of this thread on a queue of ``bus`` that ``end()`` ends."""
    ident = threading.get_ident()
    _waiting[ident] = (bus, end)
    try:
        yield
    finally:
        _waiting.pop(ident, None)


def join_unblocking(bus: object, threads: list[threading.Thread],
                    deadline: float | None) -> None:
    """Wait until ``deadline`` for ``threads`` (a stopping pool's workers) to end; when
    all those still running wait on queues of ``bus``, end their waits."""
    for thread in threads:
        while thread.is_alive():
            left = seconds_left(deadline)
            if left is not None and left <= 0:
                return
            thread.join(CHECK_SECONDS if left is None else min(left, CHECK_SECONDS))
            if thread.is_alive():
                _end_waits(bus, [t for t in threads if t.is_alive()])


def _end_waits(bus: object, running: list[threading.Thread]) -> None:
    """End the waits of ``running`` if every one of them waits on a queue of ``bus``."""
    waits = [_waiting.get(thread.ident or 0) for thread in running]
    if running and all(wait is not None and wait[0] is bus for wait in waits):
        for wait in waits:
            if wait is not None:
                wait[1]()

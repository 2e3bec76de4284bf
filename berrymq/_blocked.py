"""Threads waiting without a time limit on one of a bus's queues, so that closing the bus
can end the waits of its own worker pool.

:meth:`Bus.close <berrymq.Bus.close>` stops the worker pool before it closes the bus's
queues. A receiver running on the pool that consumes one of those queues (``for job in
jobs:``) or waits for room in a full one for ever waited for the close, and the close for
it: the bus never closed. While a closing bus's pool stops, :func:`join_unblocking` waits
for its workers; when no task is left in the pool and every worker still running waits
on a queue of that bus with no time limit (so nothing left in the pool can end the
waits), it closes those queues, as the close would next: a consumer takes what is stored,
then gets :class:`~berrymq.QueueClosed`; a sender waiting for room gets
:class:`~berrymq.QueueFull`. A wait with a time limit ends by itself, and is waited for.

The queues say when a thread begins such a wait (:func:`waiting_on`), only once it is
about to block: a ``get`` that finds a message never enters it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from berrymq.timeouts import seconds_left

__all__ = ["CHECK_SECONDS", "join_unblocking", "waiting_on"]

#: How often a closing bus's stopping pool looks whether its running workers all wait.
CHECK_SECONDS = 0.05

#: thread ident -> (the bus whose queue it waits on, what ends the wait: closing it)
_waiting: dict[int, tuple[object, Callable[[], object]]] = {}


@contextlib.contextmanager
def waiting_on(bus: object, end: Callable[[], object]) -> Iterator[None]:
    """Around a wait without a time limit of this thread on a queue of ``bus`` that
    ``end()`` ends."""
    ident = threading.get_ident()
    _waiting[ident] = (bus, end)
    try:
        yield
    finally:
        _waiting.pop(ident, None)


def join_unblocking(bus: object, threads: list[threading.Thread], deadline: float | None,
                    idle: Callable[[], bool]) -> None:
    """Wait until ``deadline`` for ``threads`` (a closing bus's pool's workers) to end;
    when ``idle()`` (the bus closes, no task is left in the pool) and all those still running wait on
    queues of ``bus``, end their waits."""
    for thread in threads:
        while thread.is_alive():
            left = seconds_left(deadline)
            if left is not None and left <= 0:
                return
            thread.join(CHECK_SECONDS if left is None else min(left, CHECK_SECONDS))
            if thread.is_alive() and idle():
                _end_waits(bus, [t for t in threads if t.is_alive()])


def _end_waits(bus: object, running: list[threading.Thread]) -> None:
    """End the waits of ``running`` if every one of them waits on a queue of ``bus``."""
    waits = [_waiting.get(thread.ident or 0) for thread in running]
    if running and all(wait is not None and wait[0] is bus for wait in waits):
        for wait in waits:
            if wait is not None:
                wait[1]()

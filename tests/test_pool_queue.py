"""berrymq._pool_queue: what a closed pool's queue gives a late sender, and what it keeps
for the workers still running."""

from __future__ import annotations

import queue
import threading

from berrymq._pool_queue import take_behind_markers, take_tasks


def _queue(*items: object) -> queue.SimpleQueue[object]:
    q: queue.SimpleQueue[object] = queue.SimpleQueue()
    for item in items:
        q.put(item)
    return q


def _left(q: queue.SimpleQueue[object]) -> list[object]:
    return [q.get_nowait() for _ in range(q.qsize())]


def test_a_late_sender_takes_only_what_lies_behind_the_last_stop_marker() -> None:
    barrier = threading.Barrier(2)
    q = _queue("a1", None, "a2", barrier, None, "b1", "b2")
    assert take_behind_markers(q, lambda task: False) == ["b1", "b2"]
    assert _left(q) == ["a1", None, "a2", barrier, None]  # in order, for the workers


def test_with_no_stop_marker_left_everything_is_behind() -> None:
    q = _queue("a1", "a2")
    assert take_behind_markers(q, lambda task: False) == ["a1", "a2"]
    assert _left(q) == []


def test_the_shutdown_takes_every_task_and_leaves_the_markers_and_barriers() -> None:
    barrier = threading.Barrier(2)
    q = _queue("a1", None, barrier, "b1")
    assert take_tasks(q) == ["a1", "b1"]
    assert _left(q) == [None, barrier]


def test_a_late_sender_takes_its_own_tasks_in_front_of_a_marker_too() -> None:
    """Another taker put a marker back behind this sender's task (senders queue without
    the takers' lock): the task would wait for a worker that may never come back."""
    q = _queue("a1", "mine", None, "b1")
    assert take_behind_markers(q, lambda task: task == "mine") == ["mine", "b1"]
    assert _left(q) == ["a1", None]

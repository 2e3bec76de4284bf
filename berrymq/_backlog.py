"""The bound on what one ``async def`` receiver has outstanding: back-pressure.

Every message handed to an async receiver's loop is *outstanding* from the send until its
reply settles (its coroutine returned or raised, its task was cancelled, or a closed loop
was swept): a hand-off the loop has not run yet, or a task not finished. Without a bound,
a sender faster than its receiver piles up tasks without end. A :class:`Backlog` holds the
outstanding replies of one receiver; at most ``async_pending_limit`` (core setting,
default :data:`DEFAULT_ASYNC_PENDING_LIMIT`) of them. A send that finds it full:

- from another thread (another loop's, a worker of the pool) waits for room up to
  ``async_pending_wait`` seconds (default :data:`DEFAULT_ASYNC_PENDING_WAIT`), then raises
  :class:`~berrymq.QueueFull`;
- from a transport's delivery lane, which carries every message that comes in, raises
  :class:`~berrymq.QueueFull` at once (:func:`never_wait_for_room`): its wait would hold
  up all the others;
- from the receiver's own loop, raises :class:`~berrymq.QueueFull` at once: waiting there
  would stall the very tasks that make room.

Nothing is dropped: the refused message was not handed over, and the sender hears of it
(in a worker thread, where no sender is left, the pool counts it in ``bus.losses``).

The count is two plain integers, so that the hot path, a send on the loop's own thread,
takes no lock and touches no table: :attr:`Backlog.tasks`, the tasks made and not settled,
written only on the loop's thread (or, once the loop is closed, by the sweep of what it
left), and :attr:`Backlog.handed`, the hand-offs from other threads not run yet, written
under the backlog's lock (those senders pay a thread-safe hand-off anyway). A reply leaves
the count when it settles, however that is (:class:`~berrymq._pending.PendingReply` holds
its backlog and says which of the two it is in), so no callback is added per message. A
send on the loop reads the count without the lock, so the bound can be passed by at most
one message, a loop-thread send racing with a sender in another thread. A settling reply
wakes waiting senders only while some wait (:attr:`Backlog.waiting`, read after the
count went down: a waiter counts itself before it looks).
"""

from __future__ import annotations

import contextlib
import threading
import time
from asyncio import (
    AbstractEventLoop,
    _get_running_loop,  # in asyncio's __all__: None, not an exception
)
from collections.abc import Callable, Iterator
from typing import Any

from berrymq.errors import QueueFull
from berrymq.fork_safe import ForkSafeLock
from berrymq.message import Message
from berrymq.timeouts import wait_seconds

__all__ = ["CLOSED_CHECK", "DEFAULT_ASYNC_PENDING_LIMIT", "DEFAULT_ASYNC_PENDING_WAIT", "Backlog",
           "async_bounds", "loop_waits_for_workers", "never_wait_for_room", "waits_for_room"]

#: messages one async receiver may have outstanding (handed over or running)
DEFAULT_ASYNC_PENDING_LIMIT = 10_000
#: seconds a sender in another thread waits for room before it gets QueueFull
DEFAULT_ASYNC_PENDING_WAIT = 1.0

#: how often a sender waiting for room at an async receiver looks whether its loop closed
CLOSED_CHECK = 0.1


_never_waits = threading.local()

#: the event loops whose own thread waits for a worker pool (a count per loop): they make
#: no room for their async receivers until that wait ends (see loop_waits_for_workers)
_loops_waiting: dict[AbstractEventLoop, int] = {}
_loops_waiting_lock = ForkSafeLock()


@contextlib.contextmanager
def loop_waits_for_workers() -> Iterator[None]:
    """Around a wait for the worker pool's threads (``close``, ``flush``, ``join``,
    ``set_multiplicity``): when it is the thread of a running event loop, the workers
    that wait for room at that loop's async receivers are refused at once meanwhile, for
    only the blocked loop could make it (they waited out ``async_pending_wait`` each, and
    the call stalled the loop that long; with ``inf``, for good)."""
    loop = _get_running_loop()
    if loop is None:
        yield
        return
    with _loops_waiting_lock:
        _loops_waiting[loop] = _loops_waiting.get(loop, 0) + 1
    try:
        yield
    finally:
        with _loops_waiting_lock:
            left = _loops_waiting.pop(loop) - 1
            if left:
                _loops_waiting[loop] = left


def never_wait_for_room() -> None:
    """Mark the calling thread as one that delivers for many (a transport's delivery
    lane): a send from it that finds an async receiver or a bounded queue full is refused
    at once, since its wait would hold up every other message it carries, for every
    receiver and client."""
    _never_waits.on = True


def waits_for_room() -> bool:
    """Whether the calling thread may wait for room in a full receiver: not a delivery
    lane (:func:`never_wait_for_room`)."""
    return not getattr(_never_waits, "on", False)


def async_bounds(setting: Callable[[str, Any], Any]) -> tuple[int, float]:
    """``async_pending_limit`` and ``async_pending_wait`` from ``setting(name, default)``
    (a bus's :meth:`~berrymq.Bus.core_setting`: given to ``Bus(...)``, else the settings
    file's, else the defaults; both were checked where they were given)."""
    return (int(setting("async_pending_limit", DEFAULT_ASYNC_PENDING_LIMIT)),
            wait_seconds("async_pending_wait",
                         setting("async_pending_wait", DEFAULT_ASYNC_PENDING_WAIT), none=False))


class Backlog:
    """The outstanding messages of one async receiver: at most :attr:`limit`.

    :attr tasks: tasks made and not settled (written on the loop's thread only).
    :attr handed: hand-offs from other threads the loop has not run (under the lock).
    :attr behind: messages sent on the loop, queued behind hand-offs (or behind other
        such messages) to keep the order of sending, not started yet (the loop's thread
        only; counted in :attr:`tasks` too).
    :attr waiting: senders waiting for room (under the lock).
    """

    __slots__ = ("behind", "handed", "limit", "name", "room", "tasks", "wait", "waiting")

    def __init__(self, name: str, limit: int, wait: float) -> None:
        self.name = name
        self.limit = limit
        self.wait = wait
        self.tasks = 0
        self.handed = 0
        self.behind = 0
        self.room = threading.Condition(threading.Lock())
        self.waiting = 0

    @property
    def outstanding(self) -> int:
        """The messages handed over and not settled."""
        return self.tasks + self.handed

    def refused_at_once(self, message: Message) -> QueueFull:
        """The refusal of a send from the receiver's own loop, which must not wait."""
        return QueueFull(
            f"async receiver {self.name} has {self.limit} messages outstanding (setting "
            f"async_pending_limit); message {message[0]} was refused at once: it was sent from "
            "the receiver's own event loop, which cannot run them while its sender waits")

    def enter(self, message: Message, loop: AbstractEventLoop) -> bool:
        """For a sender in another thread: count one hand-off (True), waiting up to
        :attr:`wait` seconds for room; :class:`~berrymq.QueueFull` naming both settings if
        none came, or at once while the receiver's ``loop`` waits for the worker pool
        (:func:`loop_waits_for_workers`). False, counting nothing, once ``loop`` is
        closed: it makes no room any more, and the sender is told that instead (looked at
        every :data:`CLOSED_CHECK` seconds while it waits: no hook tells of a close)."""
        with self.room:
            if self.tasks + self.handed < self.limit:
                self.handed += 1
                return True
            if not waits_for_room():
                raise QueueFull(
                    f"async receiver {self.name} has {self.limit} messages outstanding "
                    f"(setting async_pending_limit); message {message[0]} was refused at "
                    "once: it came through a delivery lane, which carries every message of "
                    "a transport and must not wait for one receiver")
            self.waiting += 1
            try:
                end = time.monotonic() + self.wait
                while self.tasks + self.handed >= self.limit:
                    if loop.is_closed():
                        return False
                    if loop in _loops_waiting:
                        raise QueueFull(
                            f"async receiver {self.name} has {self.limit} messages "
                            f"outstanding (setting async_pending_limit); message {message[0]} "
                            "was refused at once: its event loop's thread waits for the "
                            "worker pool (close, flush, join or set_multiplicity called on "
                            "the loop) and makes no room until that call returns")
                    left = end - time.monotonic()
                    if left <= 0:
                        stopped = ("" if loop.is_running() else "; its event loop is not "
                                   "running (stopped, not closed): nothing makes room there "
                                   "until it runs again")
                        raise QueueFull(
                            f"async receiver {self.name} has {self.limit} messages outstanding "
                            f"(setting async_pending_limit) and no room came within "
                            f"{self.wait:g}s (setting async_pending_wait); message "
                            f"{message[0]} was refused{stopped}")
                    self.room.wait(min(left, CLOSED_CHECK))
                self.handed += 1
                return True
            finally:
                self.waiting -= 1

    def run_handed(self) -> None:
        """On the loop's thread: a hand-off is run, its task counted instead."""
        with self.room:
            self.handed -= 1
            self.tasks += 1

    def drop_handed(self) -> None:
        """A hand-off settled without being run (its loop closed first)."""
        with self.room:
            self.handed -= 1

    def wake(self) -> None:
        """Wake every sender waiting for room (each looks again; few ever wait)."""
        with self.room:
            self.room.notify_all()

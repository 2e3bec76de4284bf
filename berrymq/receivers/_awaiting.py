"""Where a :class:`~berrymq.Queue`'s messages wait (:class:`QueueStore`), and awaiting
them: :meth:`Queue.get_async <berrymq.Queue.get_async>` and ``async for``.

A coroutine that finds its queue's store empty waits on a future of its own loop, filed
in the store's :class:`~berrymq.receivers._waiters.AsyncWaiters` (see that module for
why no wakeup is lost). A sender that finds a blocking queue full waits for a place, and
looks every so often whether the queue's Queue objects are all gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
import weakref
from asyncio import _get_running_loop  # in asyncio's __all__: None, not an exception
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from berrymq._backlog import waits_for_room
from berrymq._blocked import waiting_on
from berrymq.errors import Empty, QueueClosed, QueueFull
from berrymq.fork_safe import ForkSafeLock
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.receivers._waiters import AsyncWaiters
from berrymq.subscription import Subscription
from berrymq.timeouts import wait_limit

if TYPE_CHECKING:
    from berrymq.receivers.queues import Queue

__all__ = ["FullPolicy", "QueueIterator", "QueueStore", "queue_get_async"]

FullPolicy = Literal["block", "refuse"]

#: Taken while the Queue objects using a store are counted, joined or closed: a Queue
#: made meanwhile never joins a store that is closing (see ``QueueStore.users``).
USERS_LOCK = ForkSafeLock()

#: How often a sender waiting for room looks whether the queue's Queue objects were all
#: garbage-collected (nothing can take from it any more): the collector may not close the
#: store itself, since it may run in a thread that holds the locks closing takes.
_DROP_CHECK = 0.05

#: Why a store closed, as its blocked senders' QueueFull says.
_CLOSED_WHY = "closed"
_DROPPED_WHY = "closed (garbage-collected without close())"


def _messages(count: int) -> str:
    """``count`` messages in words, singular for one (a queue's size in an error)."""
    return f"{count} message" if count == 1 else f"{count} messages"


_CLOSED = object()  # put behind the last message when a store closes; wakes every getter


class QueueStore:
    """Where messages wait: one per standalone queue, one per pattern for shared queues.

    An unbounded store is a bare ``SimpleQueue``; a bounded one adds a semaphore that
    counts free places, so the sender waits (or is refused) while ``get`` never does
    more than take from the ``SimpleQueue``. A ``get`` with a timeout does not wait in
    the ``SimpleQueue`` but on :attr:`arrived`, which a sender notifies only while such
    a getter waits: before 3.13, CPython's timed ``SimpleQueue.get``, woken for a message
    that another getter took first, could wait on for ever instead of until its timeout.

    Closing the store releases one place for each sender waiting for one (counted in
    :attr:`blocked`), which wakes it at once to find the store closed: it gets
    :class:`QueueFull` saying so (see :meth:`put`). A store whose Queue objects were all
    garbage-collected without ``close()`` counts as closed: a sender waiting for room
    closes it when it sees so (see :meth:`close_if_unused`), and so does the bus's close.
    """

    def __init__(self, pattern: Identifier, maxsize: int, on_full: FullPolicy,
                 put_timeout: float | None, bus: object) -> None:
        self.pattern = pattern
        #: the bus whose queue this is (a closing bus's pool may end a sender's wait here)
        self.bus = bus
        self.maxsize = maxsize
        self.on_full = on_full
        self.put_timeout = put_timeout
        self.items: queue.SimpleQueue[object] = queue.SimpleQueue()
        #: where getters with a timeout wait; ``timed``: how many do (read unlocked by put)
        self.arrived = threading.Condition(threading.Lock())
        self.timed = 0
        # not bounded: close() releases places for the blocked senders beyond maxsize
        self.places = threading.Semaphore(maxsize) if maxsize > 0 else None
        self.blocked = 0  # senders waiting for a place (under lock)
        self.closed = False
        self.why_closed = _CLOSED_WHY
        self.subscription: Subscription | None = None
        # The open Queue objects using this store, held weakly: a queue dropped without
        # close() leaves by itself, so it counts as closed (it can no longer take anything).
        self.users: weakref.WeakSet[Queue] = weakref.WeakSet()
        self.lock = threading.Lock()
        # Coroutines waiting in Queue.get_async, oldest first: a put wakes one.
        self.waiters = AsyncWaiters()

    def put(self, message: Message) -> None:
        """The receiver: store ``message`` or raise :class:`QueueFull` naming the queue.

        A sender that waits for room in a full queue and sees the queue closed meanwhile
        gets :class:`QueueFull` at once, saying that the queue was closed: its message was
        not stored (a message sent after the close is not for the queue, and is not
        refused: closing a queue is unsubscribing).
        """
        if self.closed:
            return  # closing a queue is unsubscribing: later messages are not for it
        places = self.places
        if places is not None:
            if not places.acquire(blocking=False):
                self._wait_for_place(places, message)
            elif self.closed:  # the place may be one close() freed for a blocked sender
                places.release()
        self.items.put(message)
        if self.timed:  # read after the put: a getter counted itself before it looked
            self._wake_timed()
        if self.waiters:  # read after the put: a waiter files itself before it looks
            self.waiters.wake_one()

    def _wait_for_place(self, places: threading.Semaphore, message: Message) -> None:
        """Take a place in the full store (``on_full="block"``) or raise :class:`QueueFull`:
        at once with ``"refuse"``, after ``put_timeout``, or as soon as the store closes."""
        closed = False
        lane = not waits_for_room()  # a transport's delivery lane: refused at once
        on_loop = _get_running_loop() is not None  # the loop it would block: refused at once
        if self.on_full == "block" and not lane and not on_loop:
            with self.lock:
                closed = self.closed
                self.blocked += not closed
            if not closed:
                try:
                    # without a limit, a closing bus's pool may end the wait
                    with (waiting_on(self.bus, self.close) if self.put_timeout is None
                          else contextlib.nullcontext()):
                        ok = self._take_place(places)
                finally:
                    with self.lock:
                        self.blocked -= 1
                if ok and not self.closed:
                    return
                closed = self.closed  # a place taken after the close was freed for this
        if closed:
            raise QueueFull(f"queue {self.pattern} was {self.why_closed} while message "
                            f"{message[0]} waited for room ({_messages(self.maxsize)}): "
                            "it was not stored")
        waited = ""
        if self.on_full == "block" and lane:
            waited = (" at once: it came through a delivery lane, which carries every message "
                      "of a transport and must not wait for one queue")
        elif self.on_full == "block" and on_loop:
            waited = (" at once: it was sent on a running event loop, which waiting would "
                      "block (the loop may be what takes from the queue); await between "
                      "sends, or send from another thread (asyncio.to_thread) to wait")
        elif self.on_full == "block":
            waited = f" after waiting {self.put_timeout:g}s"
        raise QueueFull(f"queue {self.pattern} is full ({_messages(self.maxsize)}); "
                        f"message {message[0]} was refused{waited}")

    def _take_place(self, places: threading.Semaphore) -> bool:
        """Wait up to ``put_timeout`` for a place: True when one was taken (or freed by
        the close), False when the time ran out or the store's Queue objects were all
        garbage-collected (looked at every ``_DROP_CHECK``; the store is closed then)."""
        timeout = self.put_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _DROP_CHECK if deadline is None else min(_DROP_CHECK, deadline - time.monotonic())
            if places.acquire(timeout=max(0.0, wait)):
                return True
            if self.close_if_unused():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def close_if_unused(self) -> bool:
        """Whether the store is closed, closing it first when no Queue object uses it any
        more: they were garbage-collected without ``close()``, which counts as closed.
        Called in a sender's or getter's thread, never by the garbage collector."""
        if self.closed:
            return True
        if self.users:
            return False
        with USERS_LOCK:
            return self.close_if_unused_locked()

    def close_if_unused_locked(self) -> bool:
        """:meth:`close_if_unused` for a caller that holds :data:`USERS_LOCK`."""
        if not self.closed and not self.users:
            self.close(_DROPPED_WHY)
        return self.closed

    def _wake_timed(self) -> None:
        """Wake a getter waiting with a timeout: something was stored."""
        with self.arrived:
            self.arrived.notify()

    def get(self, block: bool, timeout: float | None) -> Message:
        if block and timeout is not None:
            return self._get_within(timeout)
        try:
            item = self.items.get(block)
        except queue.Empty:
            if self.closed:
                raise QueueClosed(f"queue {self.pattern} is closed and empty") from None
            raise
        if item is _CLOSED:
            try:  # a message stored after the marker (its put had passed the closed check)
                item = self.items.get_nowait()
            except queue.Empty:
                item = _CLOSED
            self.items.put(_CLOSED)  # for the next getter
            if self.timed:
                self._wake_timed()
            if item is _CLOSED:
                raise QueueClosed(f"queue {self.pattern} is closed and empty")
        if self.places is not None:
            self.places.release()
        return item  # type: ignore[return-value]

    def _get_within(self, timeout: float) -> Message:
        """A blocking ``get`` with a timeout, waiting on :attr:`arrived`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(False, None)
            except QueueClosed:
                raise
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
            with self.arrived:
                self.timed += 1
                try:
                    if self.items.empty():
                        self.arrived.wait(left)
                finally:
                    self.timed -= 1

    def qsize(self) -> int:
        return max(0, self.items.qsize() - (1 if self.closed else 0))

    def close(self, why: str = _CLOSED_WHY) -> None:
        """Stop receiving (what is stored can still be taken) and wake every waiter:
        blocked senders get :class:`QueueFull` saying the queue was ``why``. Idempotent."""
        with self.lock:
            if self.closed:
                return
            self.why_closed = why  # before closed: a sender that sees closed reads it
            self.closed = True
            if self.subscription is not None:
                self.subscription.cancel()
            self.items.put(_CLOSED)
            if self.places is not None and self.blocked:  # senders waiting for room
                self.places.release(self.blocked)
        with self.arrived:  # every getter waiting with a timeout: closed now
            self.arrived.notify_all()
        self.waiters.wake_all()


async def queue_get_async(
    store: QueueStore, timeout: float | None, closed: Callable[[], bool] | None = None
) -> Message:
    """:meth:`berrymq.Queue.get_async`: wait on the loop, never in a thread."""
    limit = wait_limit("timeout", timeout)
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    waiters = store.waiters
    woken = False  # whether the last wait ended by a wakeup (which this call must use)
    try:
        while True:
            if closed is not None and closed():  # this queue object was closed (shared store)
                raise QueueClosed(f"this queue of {store.pattern} was closed")
            try:
                return store.get(False, None)
            except QueueClosed:
                raise
            except Empty:
                pass
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise Empty(f"no message for {store.pattern} within {timeout:g}s")
            waiter = waiters.add(loop)
            try:
                if store.items.empty():  # the last look, after filing (module docstring)
                    try:
                        async with asyncio.timeout(remaining):
                            await waiter.future
                    except TimeoutError:
                        pass  # one more look at the store, then Empty
            finally:
                woken = not waiters.discard(waiter)
    except BaseException:
        # Leaving without a message (cancelled, or this queue closed): a wakeup meant for
        # this call goes to the next waiter, if a message is there for it.
        if woken and not store.items.empty():
            waiters.wake_one()
        raise


class QueueIterator:
    """``async for message in queue``: messages as they come, until the queue is closed
    and drained."""

    __slots__ = ("_closed", "_store")

    def __init__(self, store: QueueStore, closed: Callable[[], bool] | None = None) -> None:
        self._store = store
        self._closed = closed

    def __aiter__(self) -> QueueIterator:
        return self

    async def __anext__(self) -> Message:
        try:
            return await queue_get_async(self._store, None, self._closed)
        except QueueClosed:
            raise StopAsyncIteration from None

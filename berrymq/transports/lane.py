"""The delivery lane: the one hand-off from the I/O loop to receivers.

What arrives from the network never runs receivers on the I/O thread (a slow receiver would
stall every connection): the loop hands it to a :class:`DeliveryLane`, one thread that runs
the work in arrival order. The lane is bounded in count and bytes; a coroutine that puts
into a full lane waits, so a connection that sends faster than receivers take is simply not
read until the lane drains (backpressure instead of unbounded buffering).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import queue
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from berrymq._backlog import never_wait_for_room

if TYPE_CHECKING:
    from berrymq.transports.ioloop import IOLoop

__all__ = ["DEFAULT_LANE_BYTES", "DEFAULT_LANE_ITEMS", "STOP_SIGNALS", "DeliveryLane",
           "block_stop_signals"]

logger = logging.getLogger("berrymq.io")

T = TypeVar("T")

#: The lane's default bounds: messages waiting for receivers, and their encoded bytes.
DEFAULT_LANE_ITEMS = 10_000
DEFAULT_LANE_BYTES = 64 * 1024 * 1024

#: The signals the I/O and lane threads leave to the main thread.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def block_stop_signals() -> None:
    """Leave SIGINT/SIGTERM to the main thread: Python runs handlers only there, and a
    signal taken by this thread would leave a main thread that waits on a lock asleep."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


class DeliveryLane:
    """One thread that runs work handed over from the I/O loop, in the order it came.

    :param loop: the :class:`IOLoop` whose coroutines call :meth:`put`.
    :param max_items: how many pieces of work may wait (at least one always may).
    :param max_bytes: how many bytes (as the caller counts them) may wait.
    :param name: the name of the lane's thread, as thread dumps and logs show it.
    """

    def __init__(self, loop: IOLoop, max_items: int = DEFAULT_LANE_ITEMS,
                 max_bytes: int = DEFAULT_LANE_BYTES, name: str = "berrymq-delivery") -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._io = loop
        self._items: collections.deque[tuple[Callable[[], object], int]] = collections.deque()
        self._bytes = 0
        # The lock of the lane's state, taken directly (a Condition's own ``with`` is two
        # calls in Python); its condition is for wait_idle only.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # The idle thread waits here for one token, put by whoever gave it work. (A
        # condition's wait makes a lock and takes several more system calls per wake,
        # which on the I/O thread were a tenth of a small request's round trip.)
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._asleep = False  # the thread waits for a token (set and read under the lock)
        self._waiters: list[asyncio.Future[None]] = []  # on the I/O loop, waiting for room
        self._stopping = False
        self._busy = False
        #: how many pieces of work were ever queued: the last one's number, which
        #: :meth:`ran` takes (read on the I/O loop, the one caller of :meth:`offer`)
        self.offered = 0
        self._finished = 0  # how many have run (written by the lane's thread alone)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def in_lane(self) -> bool:
        """True in the lane's own thread, that is, in work the lane runs. Such work must
        not wait for later work of the same lane: that work would wait for it in turn."""
        return threading.current_thread() is self._thread

    @property
    def pending(self) -> tuple[int, int]:
        """``(count, bytes)`` of the work waiting now."""
        return len(self._items), self._bytes

    def has_room(self, size: int = 0) -> bool:
        """Whether work of ``size`` fits now (an empty lane takes any size)."""
        if not self._items:
            return True
        return len(self._items) < self.max_items and self._bytes + size <= self.max_bytes

    def offer(self, work: Callable[[], object], size: int = 0) -> bool:
        """Queue ``work`` if there is room now; False if the lane is full (nothing queued).

        Call on the I/O loop; a caller told False waits for :meth:`room` and offers again.
        ``size`` is what the work holds in memory, usually the length of the message as it
        came over the wire.
        """
        with self._lock:
            if self._stopping:
                raise RuntimeError("the delivery lane is stopped")
            if not self.has_room(size):
                return False
            self._items.append((work, size))
            self._bytes += size
            self.offered += 1
            asleep, self._asleep = self._asleep, False
        if asleep:
            self._wake.put(None)
        return True

    def room(self, size: int = 0) -> asyncio.Future[None]:
        """A future on the running loop, done once work of ``size`` may fit (at once if
        it fits now, else when some work has left the lane)."""
        waiter = asyncio.get_running_loop().create_future()
        with self._lock:
            if self.has_room(size):
                waiter.set_result(None)
            else:
                self._waiters.append(waiter)
        return waiter

    async def put(self, work: Callable[[], object], size: int = 0) -> int:
        """Queue ``work`` (a call without arguments); wait while the lane is full.
        Returns its number (see :meth:`ran`).

        Call from a coroutine on the I/O loop (see :meth:`offer`).
        """
        while not self.offer(work, size):
            await self.room(size)
        return self.offered

    async def call(self, function: Callable[[], T], size: int = 0) -> T:
        """Run ``function`` on the lane, in its turn, and return what it returned (or raise
        what it raised). Call from a coroutine on the I/O loop (see :meth:`put`). It runs in
        a copy of the caller's context, as :func:`asyncio.to_thread` runs its function."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        context = contextvars.copy_context()

        def work() -> None:
            try:
                result = context.run(function)
            except BaseException as exc:  # noqa: BLE001 - raised to the caller on the loop
                self._io.call_soon(_settle, done, None, exc)
            else:
                self._io.call_soon(_settle, done, result, None)

        await self.put(work, size)
        return await done

    async def turn(self) -> None:
        """Return once the work put before this call has run (a mark of a turn: for what
        must come after it). Call from a coroutine on the I/O loop (see :meth:`put`)."""
        await self.call(_nothing)

    def ran(self, number: int) -> bool:
        """Whether the work numbered ``number`` (:attr:`offered` just after it was queued;
        0 for none) and all before it have run: a connection that remembers the number of
        its last work knows whether something it handed over is still to run, and may
        answer a request that must come after it (a ``get_nowait``, say) without the lane."""
        return self._finished >= number

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until everything put so far has run; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def _wake_waiters(self) -> None:
        """On the I/O loop: let every coroutine waiting for room try again."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _run(self) -> None:
        block_stop_signals()
        never_wait_for_room()  # one full async receiver must not hold up the lane
        while True:
            with self._lock:
                if not self._items:
                    self._busy = False
                    self._cond.notify_all()  # wait_idle
                    if self._stopping:
                        return
                    self._asleep = True
                    work = None
                else:
                    work, size = self._items.popleft()
                    self._bytes -= size
                    self._busy = True
                    wake = bool(self._waiters)
            if work is None:
                self._wake.get()  # until offer() or stop() puts the token
                continue
            if wake:
                self._io.call_soon(self._wake_waiters)
            try:
                work()
            except BaseException:
                logger.exception("delivering a message from the network failed")
            self._finished += 1

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the thread (bounded by ``timeout``). Work still
        waiting then (at exit: receivers slower than the messages that came) is not run,
        and one error line says how much: it held messages from other processes that
        their senders were told were taken."""
        with self._lock:
            self._stopping = True
            asleep, self._asleep = self._asleep, False
        if asleep:
            self._wake.put(None)
        if self.in_lane():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._lock:
                left, size = len(self._items), self._bytes
                self._items.clear()  # not run now, whenever the busy receiver returns
                self._bytes = 0
            if left:
                logger.error(
                    "%s stopped with %d piece(s) of work (%d bytes) not run after %gs, a "
                    "receiver still busy: the messages from other processes in them were "
                    "not delivered", self._thread.name, left, size, timeout)


def _nothing() -> None:
    """The work of :meth:`DeliveryLane.turn`: nothing, in its turn."""


def _settle(done: asyncio.Future[T], result: T, exc: BaseException | None) -> None:
    """On the I/O loop: what a call on the lane (:meth:`DeliveryLane.call`) gave."""
    if done.done():  # the caller gave up (its connection went away)
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)

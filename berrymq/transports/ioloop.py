"""The process's one I/O loop, and the one hand-off from it to receivers.

Every network transport (TCP, HTTP, the NATS bridge) runs its sockets on one asyncio event
loop in one background thread, :data:`io_loop`, so a node's thread count does not grow with
its connections. Synchronous callers (``twitter``, ``send_message``, ``get``, ``ask``) stay
synchronous: they hand a coroutine to the loop with :meth:`IOLoop.run` and wait for it with
a deadline.

What arrives from the network never runs receivers on the I/O thread (a slow receiver would
stall every connection): the loop hands it to a :class:`DeliveryLane`, one thread that runs
the work in arrival order. The lane is bounded in count and bytes; a coroutine that puts
into a full lane waits, so a connection that sends faster than receivers take is simply not
read until the lane drains (backpressure instead of unbounded buffering).

Both start on first use and stop at interpreter exit; :meth:`IOLoop.stop` stops them earlier
(tests use it to show that nothing is left running).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import logging
import queue
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from berrymq._backlog import never_wait_for_room
from berrymq.bursts import BurstLog

__all__ = ["READ_SIZE", "DeliveryLane", "IOLoop", "ThreadBufferedProtocol", "io_loop",
           "read_buffer"]

logger = logging.getLogger("berrymq.io")

T = TypeVar("T")

#: The lane's default bounds: messages waiting for receivers, and their encoded bytes.
DEFAULT_LANE_ITEMS = 10_000
DEFAULT_LANE_BYTES = 64 * 1024 * 1024

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

#: How much one read of a socket may take (asyncio's own size for a plain protocol).
READ_SIZE = 256 * 1024
_read_buffers = threading.local()


def read_buffer() -> memoryview:
    """This thread's buffer for socket reads, for the ``get_buffer`` of an
    :class:`asyncio.BufferedProtocol`: its ``buffer_updated`` copies out what came before
    the next read into it.

    With a plain protocol asyncio makes a new ``bytes`` of :data:`READ_SIZE` for every
    read, which the C library maps and unmaps: three system calls per read, a quarter of
    a small request's round trip (bench/ipc.py). Per thread, not per connection: one
    buffer serves every connection of the I/O loop, and a loop of another thread (a test's)
    gets its own.
    """
    buffer: memoryview | None = getattr(_read_buffers, "buffer", None)
    if buffer is None:
        buffer = _read_buffers.buffer = memoryview(bytearray(READ_SIZE))
    return buffer


class ThreadBufferedProtocol(asyncio.BufferedProtocol):
    """A protocol whose socket is read into its thread's :func:`read_buffer`; each read
    reaches ``data_received`` as a copy, as with a plain protocol."""

    _buffer: memoryview | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._buffer
        if buffer is None:  # (a connection stays on the loop, and so the thread, it began on)
            buffer = self._buffer = read_buffer()
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self._buffer is not None
        self.data_received(self._buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        """What the peer sent (a copy: the read buffer is reused)."""


def _block_stop_signals() -> None:
    """Leave SIGINT/SIGTERM to the main thread: Python runs handlers only there, and a
    signal taken by this thread would leave a main thread that waits on a lock asleep."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


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
        what it raised). Call from a coroutine on the I/O loop (see :meth:`put`)."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def work() -> None:
            try:
                result = function()
            except BaseException as exc:  # noqa: BLE001 - raised to the caller on the loop
                self._io.call_soon(_settle, done, None, exc)
            else:
                self._io.call_soon(_settle, done, result, None)

        await self.put(work, size)
        return await done

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
        _block_stop_signals()
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
        """Run what is queued, then end the thread (bounded by ``timeout``)."""
        with self._lock:
            self._stopping = True
            asleep, self._asleep = self._asleep, False
        if asleep:
            self._wake.put(None)
        if not self.in_lane():
            self._thread.join(timeout)


def _settle(done: asyncio.Future[T], result: T, exc: BaseException | None) -> None:
    """On the I/O loop: what a call on the lane (:meth:`DeliveryLane.call`) gave."""
    if done.done():  # the caller gave up (its connection went away)
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


_ACCEPT_FAILED = "socket.accept() out of system resource"


def _retry_after_close(context: dict[str, Any]) -> bool:
    """Whether ``context`` is asyncio 3.11's retry of a failed ``accept()`` (one is timed
    for each connection it could not accept) that came after its server was closed: the
    socket is gone, nothing is lost, and asyncio would print a traceback per retry."""
    return (isinstance(context.get("exception"), ValueError)
            and "._start_serving(" in str(context.get("message", "")))


def _handle_exception(bursts: BurstLog) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """The loop's exception handler: asyncio's own, except for a server's ``accept()``
    that fails for want of open files. On that, asyncio 3.11 calls the handler (a
    traceback) once per pending connection, up to the server's backlog, every time the
    socket turns ready again; here it is one warning per burst, with the count."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _retry_after_close(context):
            return
        if context.get("message") != _ACCEPT_FAILED:
            loop.default_exception_handler(context)
            return
        bursts.warning("a server could not accept connections: %s (asyncio tries again "
                       "each second); raise the limit of open files (ulimit -n) or lower "
                       "max_connections", context.get("exception"))

    return handle


class IOLoop:
    """An asyncio event loop in a daemon thread, started on first use."""

    def __init__(self, name: str = "berrymq-io") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lane: DeliveryLane | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop (started now if it was not)."""
        loop = self._loop
        return loop if loop is not None else self._start()

    @property
    def lane(self) -> DeliveryLane:
        """The delivery thread that runs receivers of network messages."""
        lane = self._lane
        if lane is None:
            with self._lock:
                if self._lane is None:
                    self._lane = DeliveryLane(self)
                lane = self._lane
        return lane

    @property
    def running(self) -> bool:
        return self._loop is not None

    def in_loop(self) -> bool:
        """True in the I/O thread itself."""
        return self._thread is not None and threading.current_thread() is self._thread

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(_handle_exception(BurstLog(logger)))
            ready = threading.Event()
            thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        _block_stop_signals()
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result from a plain thread.

        :raises TimeoutError: when ``timeout`` seconds pass first (the coroutine is cancelled).
        :raises RuntimeError: when called from the I/O thread, where waiting would deadlock.
        """
        if self.in_loop():
            coroutine.close()
            raise RuntimeError("a blocking berryMQ call was made on the I/O thread; it would deadlock")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        if not concurrent.futures.wait((future,), timeout).done:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s")
        # (a TimeoutError the coroutine raised itself comes as it is: on 3.11 the waiting's
        # own is the same class, so it is not told from the result's by catching it)
        return future.result()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coroutine`` on the loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop soon (from any thread; ignored once stopped)."""
        loop = self._loop
        if loop is None:
            loop = self._start()
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is exiting
            loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task, stop the loop and the delivery thread, and join both."""
        with self._lock:
            loop, thread, lane = self._loop, self._thread, self._lane
            self._loop = self._thread = self._lane = None
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            if threading.current_thread() is not thread:
                thread.join(timeout)
        if lane is not None:
            lane.stop(timeout)


#: The process's one I/O loop, shared by every network transport.
io_loop = IOLoop()
atexit.register(io_loop.stop)

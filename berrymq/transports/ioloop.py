"""The process's one I/O loop, and the one hand-off from it to receivers.

Every network transport (TCP, HTTP, the NATS bridge) runs its sockets on one asyncio event
loop in one background thread, :data:`io_loop`, so a node's thread count does not grow with
its connections. Synchronous callers (``twitter``, ``send_message``, ``get``, ``ask``) stay
synchronous: they hand a coroutine to the loop with :meth:`IOLoop.run` and wait for it with
a deadline.

What arrives from the network never runs receivers on the I/O thread (a slow receiver would
stall every connection): the loop hands it to its :attr:`IOLoop.lane`
(:mod:`berrymq.transports.lane`), one thread that runs the work in arrival order.

Both start on first use and stop at interpreter exit; :meth:`IOLoop.stop` stops them earlier
(tests use it to show that nothing is left running). What holds sockets of its own on the
loop (the HTTP client's keep-alive connections) asks to be told when the loop stops
(:meth:`IOLoop.at_stop`) and closes them then, on the loop, before it closes: the close a
program or another thread meant to make may come too late (a daemon thread closing a
connection at exit), and a transport left open warns at interpreter exit.

A process forked once they run (``multiprocessing``'s ``fork`` start method, a pre-forking
server) has neither thread, and its sockets are copies of its parent's connections: writing
to them would corrupt the parent's streams. There every use of the loop raises
:class:`InheritedLoopError` (a :class:`~berrymq.TransportError`) at once, saying so, and
what is bound to the loop (:meth:`IOLoop.bind`: a link's outbox) lets go of the parent's
work and refuses new work with it; before, each call waited out its timeout and messages
stayed unsent. A process forked before the network started uses it as any other.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from berrymq.bursts import BurstLog
from berrymq.errors import TransportError
from berrymq.transports.lane import DeliveryLane, block_stop_signals

__all__ = ["READ_SIZE", "IOLoop", "InheritedLoopError", "LoopBound", "LoopStopping",
           "ThreadBufferedProtocol", "io_loop", "read_buffer"]

logger = logging.getLogger("berrymq.io")

T = TypeVar("T")

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


class InheritedLoopError(TransportError, RuntimeError):
    """The network was used in a process forked from one whose I/O loop was running.

    Also a ``RuntimeError``, as a call on the I/O thread that would deadlock is: closing
    a connection goes on past either."""


class LoopBound(Protocol):
    """What holds work for the I/O loop of the process it was made in."""

    def forked(self, error: InheritedLoopError) -> None:
        """Called in a process just forked from the one whose loop was running: drop the
        parent's work (the parent does it) and refuse new work with ``error``."""


class LoopStopping(Protocol):
    """What holds connections of its own on the I/O loop (see :meth:`IOLoop.at_stop`)."""

    def loop_stopping(self) -> None:
        """Called on the loop's thread when it stops, once its tasks ended and before it
        closes: close every transport still open on it (the loop then gives them the
        turn in which they close their sockets)."""


_every_loop: weakref.WeakSet[IOLoop] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for loop in list(_every_loop):
        loop.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class IOLoop:
    """An asyncio event loop in a daemon thread, started on first use."""

    def __init__(self, name: str = "berrymq-io") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lane: DeliveryLane | None = None
        self._forked_from: int | None = None  # the parent's pid, in a process forked while running
        self._inherited: tuple[object, ...] = ()  # the parent's loop and lane, never used here
        self._bound: weakref.WeakSet[LoopBound] = weakref.WeakSet()
        self._stopping: weakref.WeakSet[LoopStopping] = weakref.WeakSet()
        _every_loop.add(self)

    def bind(self, owner: LoopBound) -> None:
        """Tell ``owner`` (held weakly) when the process is forked while the loop runs."""
        self._bound.add(owner)

    def at_stop(self, owner: LoopStopping) -> None:
        """Call ``owner.loop_stopping()`` (``owner`` held weakly) on the loop's thread each
        time the loop stops, before it closes (see :class:`LoopStopping`)."""
        self._stopping.add(owner)

    def after_fork_in_child(self) -> None:
        """In a process just forked: the loop's and the lane's threads are not here (only
        the forking thread is), and the lock may have been held by one of them."""
        self._lock = threading.Lock()
        if self._loop is None and self._lane is None:
            return
        self._forked_from = os.getppid()
        # Kept from the collector: a running loop's finaliser warns and closes nothing.
        self._inherited = (self._loop, self._lane)
        self._loop = self._thread = self._lane = None
        error = self._forked_error()
        for owner in list(self._bound):
            owner.forked(error)

    def _forked_error(self) -> InheritedLoopError:
        return InheritedLoopError(
            f"this process was forked from process {self._forked_from} after berryMQ's "
            "network had started there: its connections are the parent's and cannot be "
            "used here; start the network in each process after it is forked, or use "
            "multiprocessing's 'spawn' or 'forkserver' start method")

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
        if self._forked_from is not None:
            raise self._forked_error()
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(_handle_exception(BurstLog(logger)))
            ready = threading.Event()
            thread = threading.Thread(target=self._run, args=(loop, ready, self._stopping),
                                      name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event,
             stopping: weakref.WeakSet[LoopStopping]) -> None:
        block_stop_signals()
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            # after the tasks (a request cancelled may have put its connection back in
            # a pool): what is still open is closed now, while the loop can close it
            for owner in list(stopping):
                try:
                    owner.loop_stopping()
                except Exception:
                    logger.exception("closing %r as the I/O loop stops failed", owner)
            # (also the turn in which transports just closed close their sockets)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result from a plain thread.

        :raises TimeoutError: when ``timeout`` seconds pass first (the coroutine is
            cancelled, as it is when the wait is interrupted by Ctrl-C).
        :raises InheritedLoopError: in a process forked while the loop ran (see above).
        :raises RuntimeError: when called from the I/O thread, where waiting would deadlock.
        """
        if self.in_loop():
            coroutine.close()
            raise RuntimeError("a blocking berryMQ call was made on the I/O thread; it would deadlock")
        future: concurrent.futures.Future[T] | None = None
        try:
            future = self.submit(coroutine)
            done = concurrent.futures.wait((future,), timeout).done
        except BaseException:  # Ctrl-C: the caller stops waiting, as at a timeout
            if future is not None:
                future.cancel()
            raise
        if not done:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s")
        # (a TimeoutError the coroutine raised itself comes as it is: on 3.11 the waiting's
        # own is the same class, so it is not told from the result's by catching it)
        return future.result()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coroutine`` on the loop without waiting for it."""
        try:
            loop = self.loop
        except InheritedLoopError:
            coroutine.close()  # never to run: not left to warn that it was never awaited
            raise
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

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

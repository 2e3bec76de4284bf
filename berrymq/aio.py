"""asyncio support: ``async def`` receivers, awaitable queues and :func:`ask_async`.

How an ``async def`` receiver is run
------------------------------------

:meth:`Bus.subscribe <berrymq.Bus.subscribe>` recognises a coroutine function (plain,
bound method, class method, ``functools.partial`` of one) and captures the event loop
*running in the registering thread*. Registering one outside a running loop raises
:class:`RuntimeError`: berryMQ would not know where to run it. (So register async
receivers from inside the loop, e.g. at the start of ``main()``, or create ``Follower``
instances there.)

Delivery stays a plain call on the sender's path: the subscription's reference, instead
of returning the function, returns an :class:`_AsyncReceiver` that hands
``function(message)`` to the loop with ``loop.call_soon_threadsafe`` (``loop.call_soon``
when the sender already is that loop's thread), so sending never blocks and never waits
for the coroutine. Messages reach one receiver in the order they were sent. The
subscription keeps holding the *function* weakly (the bus's own weak reference is wrapped,
not replaced), so garbage collection ends an async receiver exactly like a plain one.

The call returns a :class:`PendingReply` (a :class:`concurrent.futures.Future`): ``talk``
sends its result to the callback identifier once the coroutine has finished, ``ask``
waits for it (up to the ask's timeout) and :func:`ask_async` awaits it. An exception in
an async receiver whose reply nobody asked for is logged on the ``berrymq`` logger (it
cannot be raised from ``twitter``, which has long returned); in ``ask`` it becomes a
:class:`berrymq.ReplyError` entry.

Hop counting (which cuts endless receiver loops) carries over into the coroutine: every
step of it runs with the hop count of the message that started it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from berrymq.errors import Empty, QueueClosed, ReplyError
from berrymq.identifier import Identifier, parse
from berrymq.message import Message

if TYPE_CHECKING:
    from berrymq.bus import Bus, Subscription
    from berrymq.receivers.queues import _Store

__all__ = [
    "AsyncRunner",
    "PendingReply",
    "QueueIterator",
    "ask_async",
    "ask_async_on",
    "async_runner",
    "is_async_receiver",
    "queue_get_async",
    "settle_replies",
    "wake",
]

logger = logging.getLogger("berrymq")

_get_running_loop = asyncio.events._get_running_loop

# Tasks of async receivers that are running: the event loop only keeps weak references
# to its tasks, so without this a running receiver could be garbage-collected.
_running: set[asyncio.Task[Any]] = set()


def _hop_box() -> list[int]:
    """This thread's hop counter of the bus (``box[0]``)."""
    from berrymq.bus import hop_box

    return hop_box()


def is_async_receiver(receiver: object) -> bool:
    """Whether calling ``receiver(message)`` makes a coroutine to be awaited."""
    if inspect.iscoroutinefunction(receiver):
        return True
    # an object with ``async def __call__``
    return inspect.iscoroutinefunction(vars(type(receiver)).get("__call__"))


def _name_of(receiver: object) -> str:
    name = getattr(receiver, "__qualname__", None) or type(receiver).__qualname__
    module = getattr(receiver, "__module__", None)
    return f"{module}.{name}" if module else str(name)


class PendingReply(concurrent.futures.Future[Any]):
    """The return value of an async receiver while its coroutine runs on its loop.

    The bus's ``ask`` and ``talk`` recognise it and take the coroutine's result once it
    is there; it resolves to the coroutine's return value or exception.
    """

    def __init__(self, receiver: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.receiver = receiver
        self.loop = loop
        # Set by whoever takes the result (ask): the error is then reported there and not
        # also logged. A talk or twitter never claims, so its errors are logged.
        self.claimed = False

    def send_reply(self, bus: Bus, reply_to: Identifier, hops: int) -> None:
        """For ``talk``: send the result (if not None) to ``reply_to`` when it is there."""

        def done(future: concurrent.futures.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # already logged by the task's completion
            result = future.result()
            if result is None:
                return
            box = _hop_box()
            outer = box[0]
            box[0] = hops
            try:
                bus.twitter(reply_to, result)
            except Exception as exc:  # runs on the loop: nobody to raise to
                logger.error("sending the reply of %s to %s failed", self.receiver, reply_to,
                             exc_info=exc)
            finally:
                box[0] = outer

        self.add_done_callback(done)


class _HopCoroutine(Coroutine[Any, Any, Any]):
    """Drives a receiver's coroutine, setting the thread's hop count around each step, so
    a message sent from inside an async receiver counts one hop more than the message it
    is handling, however many other tasks run in between."""

    __slots__ = ("_coro", "_hops")

    def __init__(self, coro: Coroutine[Any, Any, Any], hops: int) -> None:
        self._coro = coro
        self._hops = hops

    def send(self, value: Any) -> Any:
        box = _hop_box()
        outer = box[0]
        box[0] = self._hops
        try:
            return self._coro.send(value)
        finally:
            box[0] = outer

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        box = _hop_box()
        outer = box[0]
        box[0] = self._hops
        try:
            if val is None and tb is None:
                return self._coro.throw(typ)
            return self._coro.throw(typ, val, tb)  # pragma: no cover - legacy signature
        finally:
            box[0] = outer

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:  # pragma: no cover - Task uses send
        return (yield from self._coro.__await__())


class _AsyncReceiver:
    """What the bus calls for an async receiver: schedules ``function(message)`` on the
    receiver's loop and returns a :class:`PendingReply` at once.

    It holds the function only through the subscription's own reference (weak unless
    registered with ``weak=False``), so it never keeps the function alive.
    """

    __slots__ = ("__weakref__", "_ref", "_subscription", "loop", "name")

    def __init__(self, ref: Callable[[], Any], loop: asyncio.AbstractEventLoop, name: str,
                 subscription: Subscription) -> None:
        self._ref = ref
        self.loop = loop
        self.name = name
        self._subscription = weakref.ref(subscription)

    # ``Bus.unfollow`` and the network picture look through these to the real receiver.
    @property
    def __wrapped__(self) -> Any:
        return self._ref()

    @property
    def __self__(self) -> Any:
        return getattr(self._ref(), "__self__", None)

    @property
    def __func__(self) -> Any:
        function = self._ref()
        return getattr(function, "__func__", function)

    def __call__(self, message: Message) -> PendingReply | None:
        function = self._ref()
        if function is None:
            return None
        loop = self.loop
        pending = PendingReply(self.name, loop)
        hops = _hop_box()[0]
        # A fresh context: the task must not share the sender's hop box (a list in a
        # context variable), which another thread may be using at the same time.
        context = contextvars.Context()
        try:
            if _get_running_loop() is loop:
                loop.call_soon(_start, function, message, hops, pending, context=context)
            else:
                loop.call_soon_threadsafe(_start, function, message, hops, pending,
                                          context=context)
        except RuntimeError:  # the loop is closed: nothing will ever run this receiver
            subscription = self._subscription()
            if subscription is not None:
                subscription.cancel()
            raise RuntimeError(
                f"the event loop of async receiver {self.name} is closed: message "
                f"{message[0]} was not delivered, and the receiver was unsubscribed"
            ) from None
        return pending

    def __repr__(self) -> str:
        return f"<async receiver {self.name} on {self.loop!r}>"


def _start(function: Callable[[Message], Any], message: Message, hops: int,
           pending: PendingReply) -> None:
    """On the receiver's loop: create the coroutine and its task."""
    if not pending.set_running_or_notify_cancel():
        return
    try:
        coro = function(message)
        if not inspect.iscoroutine(coro):
            raise TypeError(f"async receiver {pending.receiver} returned {coro!r}, not a coroutine")
        task = asyncio.get_running_loop().create_task(_HopCoroutine(coro, hops))
    except Exception as exc:  # noqa: BLE001 - reported like a failure of the coroutine
        _finish(pending, message, None, exc)
        return
    _running.add(task)
    task.add_done_callback(functools.partial(_task_done, pending, message))


def _task_done(pending: PendingReply, message: Message, task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if task.cancelled():
        pending.set_exception(
            concurrent.futures.CancelledError(f"async receiver {pending.receiver} was cancelled")
        )
        if not pending.claimed:
            logger.warning("async receiver %s was cancelled while handling message %s",
                           pending.receiver, message[0])
        return
    exc = task.exception()
    _finish(pending, message, task.result() if exc is None else None, exc)


def _finish(pending: PendingReply, message: Message, result: Any,
            exc: BaseException | None) -> None:
    if exc is None:
        pending.set_result(result)
        return
    if not pending.claimed:
        logger.error("async receiver %s failed on message %s", pending.receiver, message[0],
                     exc_info=exc)
    pending.set_exception(exc)


class _AsyncRef:
    """Stands in for a subscription's reference: returns the :class:`_AsyncReceiver`
    while the function lives, None once it is gone (then the bus skips it)."""

    __slots__ = ("_receiver", "_ref")

    def __init__(self, ref: Callable[[], Any], receiver: _AsyncReceiver) -> None:
        self._ref = ref
        self._receiver = receiver

    def __call__(self) -> _AsyncReceiver | None:
        return self._receiver if self._ref() is not None else None


class AsyncRunner:
    """Made at registration: the loop to run one async receiver on."""

    __slots__ = ("loop", "name")

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.loop = loop
        self.name = name

    def bind(self, subscription: Subscription) -> Callable[[], Any]:
        """The reference to store in ``subscription`` in place of its own."""
        ref = subscription.ref
        return _AsyncRef(ref, _AsyncReceiver(ref, self.loop, self.name, subscription))


def async_runner(receiver: object, pattern: Identifier, guard: object = None
                 ) -> AsyncRunner | None:
    """None for a plain receiver; for an async one, the running loop it will run on.

    :raises RuntimeError: for an async receiver registered where no loop is running.
    :raises TypeError: for an ``async def`` guard condition, which cannot be awaited on
        the sender's path.
    """
    if guard is not None and is_async_receiver(guard):
        raise TypeError(
            f"guard_condition {_name_of(guard)} for {pattern} is an async function; guard "
            "conditions run in the sender's thread and must be plain functions"
        )
    if not is_async_receiver(receiver):
        return None
    name = _name_of(receiver)
    loop = _get_running_loop()
    if loop is None:
        raise RuntimeError(
            f"async receiver {name} for {pattern} must be registered from a running asyncio "
            "event loop (its coroutines run on the loop it was registered from); register it "
            "inside an async function, e.g. at the start of main()"
        )
    return AsyncRunner(loop, name)


# -- ask ---------------------------------------------------------------------------------------


def settle_replies(replies: list[Any], timeout: float | None, node: str = "") -> list[Any]:
    """Replace each :class:`PendingReply` in ``replies`` by its result (blocking).

    Waits at most ``timeout`` seconds in all; a reply that is not there by then, or whose
    coroutine raised, becomes a :class:`berrymq.ReplyError`. A coroutine that would have
    to run on the very loop this thread is running cannot be waited for without a
    deadlock: it becomes an error entry that says to use :func:`ask_async`.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    running = _get_running_loop()
    settled = list(replies)
    for index, reply in enumerate(replies):
        if type(reply) is not PendingReply:
            continue
        reply.claimed = True
        if running is reply.loop:
            settled[index] = ReplyError(
                "RuntimeError",
                "an async receiver cannot answer a blocking ask() sent from its own event "
                "loop; use 'await berrymq.ask_async(...)'", reply.receiver, node,
            )
            continue
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            settled[index] = reply.result(remaining)
        except TimeoutError:
            settled[index] = ReplyError(
                "TimeoutError", f"no reply within {timeout:g}s", reply.receiver, node
            )
        except concurrent.futures.CancelledError as exc:
            settled[index] = ReplyError("CancelledError", str(exc) or "the reply was cancelled",
                                        reply.receiver, node)
        except Exception as exc:  # noqa: BLE001 - becomes an error entry
            settled[index] = ReplyError(type(exc).__name__, str(exc), reply.receiver, node)
    return settled


_ask_executor: concurrent.futures.ThreadPoolExecutor | None = None
_ask_executor_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    # Threads reused across calls; generous in size because a waiting ask holds one
    # thread while the loop runs the async receivers it waits for.
    global _ask_executor
    if _ask_executor is None:
        with _ask_executor_lock:
            if _ask_executor is None:
                _ask_executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=64, thread_name_prefix="berrymq-ask"
                )
    return _ask_executor


async def ask_async_on(bus: Bus, identifier: str | Identifier, /, *args: Any,
                       timeout: float = 5.0, **kwargs: Any) -> list[Any]:
    """:meth:`Bus.ask <berrymq.Bus.ask>` on ``bus`` without blocking the event loop."""
    parse(identifier)  # bad input fails here, in the caller's task
    if timeout is None or timeout <= 0:
        raise ValueError(f"ask needs a positive timeout, got {timeout!r}")
    hops = _hop_box()[0]

    def run() -> list[Any]:
        box = _hop_box()
        outer = box[0]
        box[0] = hops
        try:
            return bus.ask(identifier, *args, timeout=timeout, **kwargs)
        finally:
            box[0] = outer

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), run)


async def ask_async(identifier: str | Identifier, /, *args: Any, timeout: float = 5.0,
                    **kwargs: Any) -> list[Any]:
    """Like :func:`berrymq.ask`, awaited: the replies of every matching receiver.

    The request runs in a worker thread, so neither the receivers nor the wait for
    connected nodes block the event loop. Plain receivers therefore run in that worker
    thread; ``async def`` receivers run on their own loops (this one included) and their
    return values are awaited, up to ``timeout`` seconds. The order and the error entries
    are those of :func:`berrymq.ask`.
    """
    from berrymq.default import holder

    return await ask_async_on(holder.bus, identifier, *args, timeout=timeout, **kwargs)


# -- awaitable queues --------------------------------------------------------------------------


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def wake(store: _Store) -> None:
    """Wake the coroutines waiting in :meth:`Queue.get_async` on ``store``.

    Called by the store after a put (only when someone waits) and when it closes.
    """
    for loop, waiter in store.waiters:
        # A closed loop raises RuntimeError: its waiting coroutine is gone with it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_release, waiter)


async def queue_get_async(
    store: _Store, timeout: float | None, closed: Callable[[], bool] | None = None
) -> Message:
    """:meth:`berrymq.Queue.get_async`: wait on the loop, never in a thread.

    The coroutine registers a future with the store and re-checks the store afterwards,
    so a message put in between is never missed; a put wakes every waiter and they race
    for the message with ``get_nowait`` (the losers wait again).
    """
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
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
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (loop, waiter)
        with store.lock:
            store.waiters = (*store.waiters, entry)
        try:
            if store.items.empty():
                try:
                    async with asyncio.timeout(remaining):
                        await waiter
                except TimeoutError:
                    pass  # one more look at the store, then Empty
        finally:
            with store.lock:
                store.waiters = tuple(w for w in store.waiters if w is not entry)


class QueueIterator:
    """``async for message in queue``: messages as they come, until the queue is closed
    and drained."""

    __slots__ = ("_closed", "_store")

    def __init__(self, store: _Store, closed: Callable[[], bool] | None = None) -> None:
        self._store = store
        self._closed = closed

    def __aiter__(self) -> QueueIterator:
        return self

    async def __anext__(self) -> Message:
        try:
            return await queue_get_async(self._store, None, self._closed)
        except QueueClosed:
            raise StopAsyncIteration from None

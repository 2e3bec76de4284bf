"""asyncio support: ``async def`` receivers (awaitable queues are in
:mod:`berrymq.receivers._awaiting`, :func:`ask_async` in :mod:`berrymq.ask`).

How an ``async def`` receiver is run
------------------------------------

:meth:`Bus.subscribe <berrymq.Bus.subscribe>` recognises a coroutine function (plain,
bound method, class method, ``functools.partial`` of one) and captures the event loop
*running in the registering thread*. Registering one outside a running loop raises
:class:`RuntimeError`: berryMQ would not know where to run it. (So register async
receivers from inside the loop, e.g. at the start of ``main()``, or create ``Follower``
instances there.)

Delivery stays a plain call on the sender's path: the subscription's reference, instead
of returning the function, returns an :class:`AsyncReceiver` that makes the task of
``function(message)`` on the loop: at once when the sender already is that loop's thread
(as ``asyncio.ensure_future`` would) and nothing sent before waits to start (else behind
it, through ``loop.call_soon``), else through ``loop.call_soon_threadsafe``; so
sending never waits for the coroutine. It is bounded: a receiver with
``async_pending_limit`` messages outstanding refuses the next with
:class:`~berrymq.QueueFull`, at once on its own loop, after waiting up to
``async_pending_wait`` for room in another thread (see :mod:`berrymq._backlog`), so its
subscription says it ``refuses``. Messages reach one receiver in the order they were
sent. A message whose coroutine a closed loop will never run or finish, or whose task was
cancelled, is counted in the bus's ``losses``; so is one handed to a loop that is not
running (stopped, not closed) when a flush, a close or a read of ``losses`` looks, which
is withdrawn then, and what such a loop holds at exit (see :mod:`berrymq._pending`). The
subscription keeps holding the *function* weakly (the bus's own weak reference is
wrapped, not replaced), so garbage collection ends an async receiver exactly like a
plain one.

The call returns a :class:`PendingReply` (a small thread-safe future): ``talk``
sends its result to the callback identifier once the coroutine has finished, ``ask``
waits for it (up to the ask's timeout) and :func:`ask_async` awaits it. An exception in
an async receiver whose reply nobody asked for is logged on the ``berrymq`` logger (it
cannot be raised from ``twitter``, which has long returned); in ``ask`` it becomes a
:class:`berrymq.ReplyError` entry, and only that: the ask says so (:func:`claim_reply`)
before it calls the receiver, which marks the reply claimed before the loop has it (a
coroutine handed over from another thread may fail before the call returns).

Hop counting (which cuts endless receiver loops) carries over into the coroutine: the
task runs in a fresh context whose hop box holds the count of the message that started
it, so every step of it runs with that count.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import types
import weakref
from asyncio import _get_running_loop  # in asyncio's __all__: None, not an exception
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq._backlog import Backlog, async_bounds
from berrymq._hops import get_box, set_hops
from berrymq._pending import PendingReply, handed, running_tasks, sweep_closed_loops
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.subscription import strong_ref

if TYPE_CHECKING:
    from berrymq.subscription import Subscription

__all__ = [
    "AsyncReceiver",
    "AsyncRunner",
    "OWN_LOOP",
    "async_runner",
    "asking_from",
    "claim_reply",
    "describe_receiver",
    "is_async_receiver",
]

logger = logging.getLogger("berrymq")

#: Why an async receiver gives no reply to a blocking ``ask`` sent from its own loop's
#: thread (which the ask blocks): the text of its ``ReplyError`` entry.
OWN_LOOP = ("an async receiver cannot answer a blocking ask() sent from its own event loop; "
            "use 'await berrymq.ask_async(...)'")


def is_async_receiver(receiver: object) -> bool:
    """Whether calling ``receiver(message)`` makes a coroutine to be awaited."""
    if inspect.iscoroutinefunction(receiver):
        return True
    # an object with ``async def __call__``
    return inspect.iscoroutinefunction(vars(type(receiver)).get("__call__"))


def describe_receiver(receiver: object) -> str:
    """``module.qualname`` of a receiver, as error entries and logs name it (of an async
    receiver's function, not of the wrapper the bus calls)."""
    if isinstance(receiver, AsyncReceiver):
        return receiver.name
    name = getattr(receiver, "__qualname__", None) or type(receiver).__qualname__
    module = getattr(receiver, "__module__", None)
    return f"{module}.{name}" if module else str(name)


class _Claim(threading.local):
    """Per thread: the message whose next async receiver call is an ``ask``'s, and the
    event loop that ask blocks (the asker's thread runs it: see :func:`asking_from`)."""

    message: object = None
    blocked: object = None


_claim = _Claim()


def claim_reply(message: Message | None) -> None:
    """Say that the next call in this thread of an async receiver with ``message`` is an
    ``ask``'s (None: none is): that call's reply is marked claimed before its coroutine is
    handed to the loop, so that a failure is reported by the ask alone, never logged as
    nobody's. The call takes the claim; an identical message object is required, so a
    message a receiver sends meanwhile is never claimed by mistake."""
    _claim.message = message


def asking_from(loop: asyncio.AbstractEventLoop | None) -> None:
    """Say that the asks answered in this thread (a helper thread of ``ask``) come from a
    thread running ``loop`` (None: from none), which waits for them: an async receiver of
    that loop cannot answer them, and its call is refused at once (a ``ReplyError``
    entry) rather than left to run on the loop after the ask is over."""
    _claim.blocked = loop


class AsyncReceiver:
    """What the bus calls for an async receiver: schedules ``function(message)`` on the
    receiver's loop and returns a :class:`PendingReply` at once.

    It holds the function only through the subscription's own reference (weak unless
    registered with ``weak=False``), so it never keeps the function alive.
    """

    __slots__ = ("__weakref__", "_bus", "_contexts", "_ref", "_subscription", "backlog", "loop",
                 "name")

    def __init__(self, ref: Callable[[], Any], loop: asyncio.AbstractEventLoop, name: str,
                 subscription: Subscription, backlog: Backlog) -> None:
        self._ref = ref
        self._contexts: dict[int, contextvars.Context] = {}
        self.loop = loop
        self.name = name
        #: the messages handed over and not settled yet, bounded (:mod:`berrymq._backlog`)
        self.backlog = backlog
        self._subscription = weakref.ref(subscription)
        self._bus = subscription.bus  # counts what is lost (a bus outlives its receivers)

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
        # The task runs in a context of its own whose hop box holds this delivery's count,
        # so every step of the coroutine runs with it; a copy of one made per count, as
        # the tasks of one receiver all run on its loop's thread and may share a box (a
        # delivery restores the count before a step ends).
        box = get_box(None)
        hops = 0 if box is None else box[0]
        template = self._contexts.get(hops)
        if template is None:
            template = self._contexts[hops] = contextvars.Context()
            template.run(set_hops, hops)
        context = template.copy()
        claim = _claim
        claimed = claim.message is message  # an ask's call (claim_reply): taken now
        if claimed:
            claim.message = None
            if claim.blocked is loop:  # the asker's thread runs this loop, and waits
                raise RuntimeError(OWN_LOOP)
        backlog = self.backlog
        if _get_running_loop() is loop:
            if backlog.tasks + backlog.handed >= backlog.limit:  # waiting would stall them
                raise backlog.refused_at_once(message)
            backlog.tasks += 1
            pending = PendingReply(self.name, loop, message, self._bus, backlog)
            pending.claimed = claimed
            if backlog.handed or backlog.behind:  # sent before, not started: after them
                backlog.behind += 1
                handed.add(pending)
                loop.call_soon(_start_behind, loop, function, message, pending, context, backlog)
            else:
                _start(loop, function, message, pending, context)
            return pending
        pending = PendingReply(self.name, loop, message, self._bus)
        pending.claimed = claimed  # before the loop has it: it may fail before we return
        # a closed loop makes no room: refused below, not waited for (nor once it closes)
        if not loop.is_closed() and backlog.enter(message, loop):
            pending.backlog = backlog
            pending.handoff = True
        handed.add(pending)  # until the loop runs the hand-off (a closed or stopped one may not)
        try:
            loop.call_soon_threadsafe(_start_handed, loop, function, message, pending, context)
        except RuntimeError:  # the loop is closed: nothing will ever run this receiver
            pending.claimed = False  # the asker gets the error below, not this reply
            subscription = self._subscription()
            if subscription is not None:
                subscription.cancel()
            sweep_closed_loops()  # this message, and what the loop held when it closed
            raise RuntimeError(
                f"the event loop of async receiver {self.name} is closed: message "
                f"{message[0]} was not delivered, and the receiver was unsubscribed"
            ) from None
        return pending

    def __repr__(self) -> str:
        return f"<async receiver {self.name} on {self.loop!r}>"


def _start(loop: asyncio.AbstractEventLoop, function: Callable[[Message], Any], message: Message,
           pending: PendingReply, context: contextvars.Context) -> None:
    """On the receiver's loop: create the coroutine and its task (in ``context``)."""
    try:
        coro = function(message)
        if type(coro) is not types.CoroutineType and not inspect.iscoroutine(coro):
            raise TypeError(f"async receiver {pending.receiver} returned {coro!r}, not a coroutine")
        task = loop.create_task(coro, context=context)
    except Exception as exc:  # noqa: BLE001 - reported like a failure of the coroutine
        pending.fail(exc)
        return
    running_tasks[task] = pending
    task.add_done_callback(pending.task_done)


def _start_handed(loop: asyncio.AbstractEventLoop, function: Callable[[Message], Any],
                  message: Message, pending: PendingReply, context: contextvars.Context) -> None:
    """:func:`_start` for a message handed over from another thread, unless a sweep gave it
    up first while the loop was not running (:func:`~berrymq._pending.sweep_closed_loops`;
    it is counted as lost, and out of the backlog, already)."""
    try:
        handed.remove(pending)  # whoever takes it out owns it: this loop, or a sweep
    except KeyError:
        return
    backlog = pending.backlog
    if backlog is not None:  # counted as a task from now on
        backlog.run_handed()
        pending.handoff = False
    _start(loop, function, message, pending, context)


def _start_behind(loop: asyncio.AbstractEventLoop, function: Callable[[Message], Any],
                  message: Message, pending: PendingReply, context: contextvars.Context,
                  backlog: Backlog) -> None:
    """:func:`_start` for a message sent on the loop while hand-offs from other threads
    waited to start: after them, so that one receiver gets its messages in the order they
    were sent (started at once, it overtook them; and the sends on the loop after it go
    behind it too, counted in ``Backlog.behind``). One a sweep gave up while the loop was
    not running is counted as lost already, and leaves the loop's count of tasks here."""
    backlog.behind -= 1
    try:
        handed.remove(pending)  # whoever takes it out owns it: this loop, or a sweep
    except KeyError:
        backlog.tasks -= 1
        if backlog.waiting:
            backlog.wake()
        return
    _start(loop, function, message, pending, context)


class _AsyncRef:
    """Stands in for a subscription's reference: returns the :class:`AsyncReceiver`
    while the function lives, None once it is gone (then the bus skips it)."""

    __slots__ = ("_receiver", "_ref")

    def __init__(self, ref: Callable[[], Any], receiver: AsyncReceiver) -> None:
        self._ref = ref
        self._receiver = receiver

    def __call__(self) -> AsyncReceiver | None:
        return self._receiver if self._ref() is not None else None


class AsyncRunner:
    """Made at registration: the loop to run one async receiver on, and the bounds of
    what it may have outstanding (``async_pending_limit``, ``async_pending_wait``)."""

    __slots__ = ("limit", "loop", "name", "wait")

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str, limit: int,
                 wait: float) -> None:
        self.loop = loop
        self.name = name
        self.limit = limit
        self.wait = wait

    def bind(self, subscription: Subscription) -> Callable[[], Any]:
        """The reference to store in ``subscription`` in place of its own. The
        subscription is marked as one that may refuse (a full backlog), so that a node
        answers a remote ``send_message`` for it only once it was delivered."""
        subscription.refuses = True
        ref = subscription.ref
        receiver = AsyncReceiver(ref, self.loop, self.name, subscription,
                                 Backlog(self.name, self.limit, self.wait))
        if not subscription.weak:  # held strongly: a C-level reference, like a plain one
            return strong_ref(receiver)
        return _AsyncRef(ref, receiver)


def async_runner(receiver: object, pattern: Identifier, guard: object,
                 setting: Callable[[str, Any], Any]) -> AsyncRunner | None:
    """None for a plain receiver; for an async one, the running loop it will run on and
    the bounds its bus's ``setting(name, default)`` gives (:func:`async_bounds`).

    :raises RuntimeError: for an async receiver registered where no loop is running.
    :raises TypeError: for an ``async def`` guard condition, which cannot be awaited on
        the sender's path.
    """
    if guard is not None and is_async_receiver(guard):
        raise TypeError(
            f"guard_condition {describe_receiver(guard)} for {pattern} is an async function; guard "
            "conditions run in the sender's thread and must be plain functions"
        )
    if not is_async_receiver(receiver):
        return None
    name = describe_receiver(receiver)
    loop = _get_running_loop()
    if loop is None:
        raise RuntimeError(
            f"async receiver {name} for {pattern} must be registered from a running asyncio "
            "event loop (its coroutines run on the loop it was registered from); register it "
            "inside an async function, e.g. at the start of main()"
        )
    return AsyncRunner(loop, name, *async_bounds(setting))

"""The pending reply of an ``async def`` receiver: a small thread-safe future.

The bus calls an async receiver on the sender's path and gets a :class:`PendingReply` at
once; the receiver's loop settles it when the coroutine ends. ``talk`` sends its result on,
``ask`` waits for it; what nobody claims is logged when it fails.

Nothing handed to a loop is lost unseen. Every reply not settled yet is in one of two
places: :data:`handed` (its hand-off not run yet) or :data:`running_tasks` (its task
made, not finished). A loop that is closed runs neither ever again, and asyncio says
nothing about what it held, so :func:`sweep_closed_loops` looks for replies of closed
loops there: each is settled as cancelled and, unless an ``ask`` claimed it (the ask
reports it), counted in its bus's ``losses`` (:data:`~berrymq._losses.LOOP_CLOSED`).
A loop that is stopped but not closed (``run_until_complete`` returned, ``loop.stop()``)
may run again, or never: the sweep withdraws the hand-offs such a loop holds, as
:data:`~berrymq._losses.LOOP_NOT_RUNNING` (whoever takes a reply out of :data:`handed` owns it: its loop,
which starts it, or the sweep, which gives it up, never both), and leaves the tasks it
started; at exit it counts those too. It runs when a send finds a loop closed, at
``bus.flush()``, ``bus.close()``, when ``bus.losses`` is read, and at exit. A task
cancelled before it finished (``asyncio.run`` ending cancels what is left) is counted
when it ends (:data:`~berrymq._losses.ASYNC_CANCELLED`). Settling also takes the reply
out of its receiver's count of outstanding messages (:mod:`berrymq._backlog`), whichever
way it settles, so that count cannot leak.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import threading
from asyncio import _get_running_loop  # in asyncio's __all__: None, not an exception
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq._backlog import Backlog
from berrymq._hops import carrying_hops
from berrymq._losses import ASYNC_CANCELLED, LOOP_CLOSED, LOOP_NOT_RUNNING, LOSSES, REPLY_REFUSED
from berrymq.errors import QueueFull
from berrymq.identifier import Identifier
from berrymq.message import Message

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["PendingReply", "handed", "running_tasks", "sweep_closed_loops"]

logger = logging.getLogger("berrymq")

#: Tasks of async receivers that are running, with their replies: the event loop only
#: keeps weak references to its tasks, so without this a running receiver could be
#: garbage-collected; and a closed loop's are found here (:func:`sweep_closed_loops`).
running_tasks: dict[asyncio.Task[Any], PendingReply] = {}
#: Replies of messages handed to a loop whose task is not made yet (a loop closed before
#: it ran the hand-off drops it without a word; a stopped one may never run it). Taken out
#: with ``remove``: who does so (the loop starting it, a sweep giving it up) owns it.
handed: set[PendingReply] = set()

_PENDING, _DONE, _CANCELLED = 0, 1, 2
_settle_lock = threading.Lock()


class PendingReply:
    """The return value of an async receiver while its coroutine runs on its loop.

    A small thread-safe future (a :class:`concurrent.futures.Future` costs a condition
    variable per message): the loop sets it once; any thread may wait for it with
    :meth:`result` or add a callback. ``ask`` and ``talk`` recognise it and take the
    coroutine's result once it is there; it resolves to the coroutine's return value or
    exception.
    """

    __slots__ = ("_callbacks", "_exception", "_result", "_state", "backlog", "bus", "claimed",
                 "handoff", "loop", "message", "receiver")

    def __init__(self, receiver: str, loop: asyncio.AbstractEventLoop,
                 message: Message | None = None, bus: Bus | None = None,
                 backlog: Backlog | None = None) -> None:
        self.receiver = receiver
        self.loop = loop
        self.message = message
        #: the bus that counts the message as lost if it is (None: only logged)
        self.bus = bus
        #: the count of the receiver's outstanding messages this one is in, and leaves
        #: when it settles (however it settles: so it cannot leak, and needs no callback);
        #: ``handoff``: counted as a hand-off not run yet (else as a task)
        self.backlog = backlog
        self.handoff = False
        # Set by whoever takes the result (ask): the error is then reported there and not
        # also logged. A talk or twitter never claims, so its errors are logged.
        self.claimed = False
        self._state = _PENDING
        self._callbacks: list[Callable[[PendingReply], object]] | None = None
        # _result and _exception are set when it settles

    def _settle(self, state: int, result: Any, exc: BaseException | None) -> bool:
        """Settle once; whether this call did (False: it was settled already)."""
        with _settle_lock:
            if self._state != _PENDING:
                return False
            self._result, self._exception = result, exc
            self._state = state
            callbacks, self._callbacks = self._callbacks, None
        backlog = self.backlog
        if backlog is not None:  # it leaves the count of outstanding messages
            if self.handoff:
                backlog.drop_handed()
            else:
                backlog.tasks -= 1  # on the loop's thread (or a sweep once it is closed)
            if backlog.waiting:  # read after the count went down: a waiter counted itself first
                backlog.wake()
        for callback in callbacks or ():
            callback(self)
        return True

    def set_result(self, result: Any) -> None:
        self._settle(_DONE, result, None)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(_DONE, None, exc)

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def add_done_callback(self, callback: Callable[[PendingReply], object]) -> None:
        """Call ``callback(self)`` once settled (at once when it already is)."""
        with _settle_lock:
            if self._state == _PENDING:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The coroutine's exception (None if it returned), waiting up to ``timeout``."""
        if self._state == _PENDING:
            settled = threading.Event()
            self.add_done_callback(lambda _: settled.set())
            if not settled.wait(timeout):
                raise TimeoutError(f"async receiver {self.receiver} did not finish in time")
        if self._state == _CANCELLED:
            raise concurrent.futures.CancelledError(f"async receiver {self.receiver} was cancelled")
        return self._exception

    def result(self, timeout: float | None = None) -> Any:
        """The coroutine's return value, waiting up to ``timeout`` seconds; raises its
        exception, :class:`TimeoutError` or :class:`concurrent.futures.CancelledError`."""
        exc = self.exception(timeout)
        if exc is not None:
            raise exc
        return self._result

    def send_reply(self, bus: Bus, reply_to: Identifier, hops: int,
                   send: Callable[[Identifier, object], None] | None = None) -> None:
        """For ``talk``: send the result (if not None) to ``reply_to`` when it is there,
        with ``send`` (default: ``bus.twitter``)."""

        def done(reply: PendingReply) -> None:
            if reply.cancelled() or reply.exception() is not None:
                return  # already logged by the task's completion
            result = reply.result()
            if result is None:
                return
            try:
                with carrying_hops(hops):
                    (bus.twitter if send is None else send)(reply_to, result)
            except QueueFull as exc:  # runs on the loop: nobody to tell, so counted
                bus.state(LOSSES).add(REPLY_REFUSED, logging.ERROR, "the reply of %s to %s "
                                      "was refused: %s", self.receiver, reply_to, exc)
            except Exception as exc:  # runs on the loop: nobody to raise to
                logger.error("sending the reply of %s to %s failed", self.receiver, reply_to,
                             exc_info=exc)

        def on_its_loop(reply: PendingReply) -> None:
            # Settled before the callback was added: it runs in the talking thread, where
            # a full queue would make it wait (up to put_timeout) instead of refusing at
            # once as on the loop; so it is handed to the loop, unless that has stopped.
            loop = reply.loop
            if _get_running_loop() is loop or not loop.is_running():
                done(reply)
                return
            try:
                loop.call_soon_threadsafe(done, reply)
            except RuntimeError:  # closed meanwhile
                done(reply)

        self.add_done_callback(on_its_loop)

    def task_done(self, task: asyncio.Task[Any]) -> None:
        """The task's done callback: settle, and log what nobody claimed (a cancelled
        task's message is counted as lost)."""
        running_tasks.pop(task, None)
        try:  # one call on the way of every message (a try costs nothing until it raises)
            exc = task.exception()
        except asyncio.CancelledError:
            self.lose(ASYNC_CANCELLED, "async receiver %s was cancelled while handling message %s")
            return
        if exc is None:
            self._settle(_DONE, task.result(), None)
        else:
            self.fail(exc)

    def lose(self, reason: str, text: str) -> None:
        """Settle as cancelled: the coroutine will not finish. Unless an ``ask`` claimed it
        (and reports it), the message is counted in its bus's losses for ``reason`` and
        logged once per burst; ``text % (receiver, message id)`` is the line."""
        if not self._settle(_CANCELLED, None, None) or self.claimed:
            return
        ident = self.message[0] if self.message else "?"
        if self.bus is None:
            logger.warning(text, self.receiver, ident)
        else:
            self.bus.state(LOSSES).add(reason, logging.WARNING, text, self.receiver, ident)

    def fail(self, exc: BaseException) -> None:
        if not self.claimed:
            logger.error("async receiver %s failed on message %s", self.receiver,
                         self.message[0] if self.message else "?", exc_info=exc)
        self._settle(_DONE, None, exc)


def _forget(task: asyncio.Task[Any]) -> None:
    """A task of a closed loop, let go: a coroutine that never started is closed, so it
    is not reported as never awaited (one that started is closed by the collector). Nor
    does asyncio log "Task was destroyed but it is pending!" for it when it is collected:
    its message is counted as lost, and logged once per burst, not once per task (a
    flag of CPython's tasks, both the C and the Python one; left alone where absent)."""
    if hasattr(task, "_log_destroy_pending"):
        task._log_destroy_pending = False
    coro = task.get_coro()
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        coro.close()


def sweep_closed_loops() -> None:
    """Count as lost, and let go of, every message left on an event loop that is closed
    (hand-offs it never ran, tasks it never finished) and every hand-off held by a loop
    that is not running (see the module's docstring)."""
    _sweep(exiting=False)


def _sweep(exiting: bool) -> None:
    """:func:`sweep_closed_loops`; ``exiting``: the process exits, and the tasks of loops
    that are not running are counted too (none will finish).

    The loss path, not the hot path: a scan of what is pending. A closed loop runs no
    callback, so nothing settles these replies meanwhile; settling once decides who
    counts (a reply is counted once). A task that finished but whose done callback the
    loop dropped (it schedules them with ``call_soon``) is settled as it ended.
    """
    for reply in list(handed):
        loop = reply.loop
        if loop.is_closed():
            reason, text = LOOP_CLOSED, "its event loop was closed before it ran message %s"
        elif not loop.is_running():
            reason, text = LOOP_NOT_RUNNING, (
                "its event loop was not running at exit: message %s never ran" if exiting else
                "its event loop is not running (stopped, not closed): message %s, not run yet, "
                "was withdrawn")
        else:
            continue
        try:
            handed.remove(reply)
        except KeyError:  # its loop, run again, started it meanwhile (or another sweep took it)
            continue
        if reason == LOOP_NOT_RUNNING and not reply.handoff:
            # sent on the loop behind hand-offs: in the loop's own count of tasks, which
            # only its thread writes (it may run again now); _start_behind settles that
            reply.backlog = None
        reply.lose(reason, "async receiver %s: " + text)
    for task, reply in list(running_tasks.items()):
        loop = task.get_loop()
        if loop.is_closed():
            reason, text = LOOP_CLOSED, "its event loop was closed before it finished message %s"
        elif exiting and not loop.is_running():
            reason = LOOP_NOT_RUNNING
            text = "its event loop was not running at exit: message %s never finished"
        else:
            continue
        if task.done():  # it finished, but the loop stopped before it ran the done callback
            reply.task_done(task)
        elif running_tasks.pop(task, None) is not None:
            _forget(task)
            reply.lose(reason, "async receiver %s: " + text)


# A program that closed or stopped a loop and then ends without flush(), close() or
# reading losses: what the loop held is counted (and its burst's line written) at exit,
# not lost unsaid.
atexit.register(_sweep, True)

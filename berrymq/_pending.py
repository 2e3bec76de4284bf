"""The pending reply of an ``async def`` receiver: a small thread-safe future.

The bus calls an async receiver on the sender's path and gets a :class:`PendingReply` at
once; the receiver's loop settles it when the coroutine ends. ``talk`` sends its result on,
``ask`` waits for it; what nobody claims is logged when it fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq._hops import hop_box
from berrymq.identifier import Identifier
from berrymq.message import Message

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["PendingReply", "running_tasks"]

logger = logging.getLogger("berrymq")

#: Tasks of async receivers that are running: the event loop only keeps weak references
#: to its tasks, so without this a running receiver could be garbage-collected.
running_tasks: set[asyncio.Task[Any]] = set()

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

    __slots__ = ("_callbacks", "_exception", "_result", "_state", "claimed", "loop", "message",
                 "receiver")

    def __init__(self, receiver: str, loop: asyncio.AbstractEventLoop,
                 message: Message | None = None) -> None:
        self.receiver = receiver
        self.loop = loop
        self.message = message
        # Set by whoever takes the result (ask): the error is then reported there and not
        # also logged. A talk or twitter never claims, so its errors are logged.
        self.claimed = False
        self._state = _PENDING
        self._callbacks: list[Callable[[PendingReply], object]] | None = None
        # _result and _exception are set when it settles

    def _settle(self, state: int, result: Any, exc: BaseException | None) -> None:
        with _settle_lock:
            if self._state != _PENDING:
                return
            self._result, self._exception = result, exc
            self._state = state
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback(self)

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

    def send_reply(self, bus: Bus, reply_to: Identifier, hops: int) -> None:
        """For ``talk``: send the result (if not None) to ``reply_to`` when it is there."""

        def done(reply: PendingReply) -> None:
            if reply.cancelled() or reply.exception() is not None:
                return  # already logged by the task's completion
            result = reply.result()
            if result is None:
                return
            box = hop_box()
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

    def task_done(self, task: asyncio.Task[Any]) -> None:
        """The task's done callback: settle, and log what nobody claimed."""
        running_tasks.discard(task)
        if task.cancelled():
            self._settle(_CANCELLED, None, None)
            if not self.claimed:
                logger.warning("async receiver %s was cancelled while handling message %s",
                               self.receiver, self.message[0] if self.message else "?")
            return
        exc = task.exception()
        if exc is None:
            self._settle(_DONE, task.result(), None)
        else:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        if not self.claimed:
            logger.error("async receiver %s failed on message %s", self.receiver,
                         self.message[0] if self.message else "?", exc_info=exc)
        self._settle(_DONE, None, exc)

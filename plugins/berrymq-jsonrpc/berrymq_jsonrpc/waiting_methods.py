"""Answering the requests that may wait (``ask``, a blocking ``get``, a batch with one),
beside the others: a ``get`` awaits its queue on the I/O loop, an ``ask`` runs on a
:data:`~berrymq_jsonrpc.sessions.WAITS` thread and is answered by its timeout from the loop
(:mod:`berrymq_jsonrpc.ask_timer`), a batch member by member
(:func:`~berrymq_jsonrpc.waiting.answer_batch`). A base class of
:class:`~berrymq_jsonrpc.service.Service`, as :class:`~berrymq_jsonrpc.queue_methods.QueueMethods`
is."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from typing import TYPE_CHECKING, Any, cast

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.ask_timer import AskProgress, answer_with, ask_timeout
from berrymq_jsonrpc.dialect import in_v1_form, to_v2
from berrymq_jsonrpc.queue_methods import QueueMethods
from berrymq_jsonrpc.sessions import WAITS
from berrymq_jsonrpc.waiting import answer_batch

if TYPE_CHECKING:
    from berrymq_jsonrpc.input_end import InputEnd
    from berrymq_jsonrpc.replies import Slot
    from berrymq_jsonrpc.service import Service  # (self is always one)

__all__ = ["STILL_RUNNING", "WaitingMethods"]

#: Set by a transport that caps the requests waiting on a connection (TCP's
#: ``max_waiting``) around a batch it answers: the threads of the batch's asks answered at
#: their timeout that still run their receivers. They count until done, as a single ask
#: does (three batches of 16 slow asks on one connection held all the node's ask threads).
STILL_RUNNING: contextvars.ContextVar[list[concurrent.futures.Future[Any]] | None] = \
    contextvars.ContextVar("berrymq_still_running", default=None)


class WaitingMethods(QueueMethods):
    """The sessions and queue methods of a service, with the answering of requests that
    may wait."""

    if TYPE_CHECKING:  # the service's own
        @property
        def requires_secret(self) -> bool: ...

        def handle_parsed(self, request: Any, context: Any = None) -> bytes | None: ...

    async def answer_waiting(self, request: Any, context: Any = None,
                             ended: InputEnd | None = None,
                             slot: Slot | None = None) -> bytes | None:
        """On the I/O loop: answer a request that may wait
        (:func:`~berrymq_jsonrpc.waiting.may_wait`). A blocking ``get`` awaits its queue on
        the loop (until ``ended``, in ``slot``: see :meth:`get_waiting`), or is refused
        there; ``ask`` (receivers may take their time) and whatever :meth:`get_waiting`
        leaves run on a :data:`WAITS` thread; a batch is answered member by member
        (:func:`~berrymq_jsonrpc.waiting.answer_batch`)."""
        if type(request) is list:
            return await answer_batch(cast("Service", self), request, context, ended)
        if (type(request) is dict and request.get("method") == p.METHOD_GET
                and not (p.is_v1(request) and self.requires_secret)):  # (1.0: refused then)
            v1 = p.is_v1(request)  # 1.0 waits the same way, and is answered in its form
            reply = await self.get_waiting(to_v2(request) if v1 else request, ended, slot)
            if reply is not None:
                return in_v1_form(reply, request.get("id")) if v1 else reply
            if "id" in request:  # one that _get refuses (a closed token, ...): at once
                return self.handle_parsed(request, context)
        loop = asyncio.get_running_loop()
        timeout = ask_timeout(request)
        if timeout is None:
            return await loop.run_in_executor(WAITS, self.handle_parsed, request, context)
        progress = AskProgress()  # answered by its timeout (see berrymq_jsonrpc.ask_timer)
        if timeout > 0:  # (0: at once, with no thread: no receiver can have run by then)
            thread = WAITS.submit(self.answer_armed, request, context, progress)
            answered = asyncio.wrap_future(thread)
            try:
                done, _ = await asyncio.wait([answered], timeout=timeout)
            except asyncio.CancelledError:  # the asker is gone: not begun, it never runs
                thread.cancel()  # (begun, it runs all its receivers)
                raise
            if answered in done:
                return answered.result()
            # not begun (threads busy, or too short): it leaves the queue now; begun: its
            # receivers run on, and the connection's cap may count them until done
            if not thread.cancel() and not thread.done() \
                    and (running := STILL_RUNNING.get()) is not None:
                running.append(thread)
            answered.cancel()
        return self.answer_expired(request, context, progress)

    def answer_armed(self, request: Any, context: Any, progress: AskProgress) -> bytes | None:
        """On a :data:`WAITS` thread: answer an ``ask`` whose timer runs on the loop
        (:mod:`berrymq_jsonrpc.ask_timer`); nothing once the timer answered it."""
        progress.started = True  # before the check: the timer then names what ran
        if progress.expired:
            return None
        return answer_with(progress, lambda: self.handle_parsed(request, context))

    def answer_expired(self, request: Any, context: Any, progress: AskProgress) -> bytes | None:
        """On the loop, when an ``ask``'s timeout passed before its thread answered: the
        answer with the replies so far and a ``TimeoutError`` entry."""
        progress.expired = True
        return answer_with(progress, lambda: self.handle_parsed(request, context))

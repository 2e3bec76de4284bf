"""The requests on one TCP connection that may wait: an ``ask``, a blocking ``get``, a batch
with one (:func:`berrymq_jsonrpc.waiting.waits_in`).

Such a request runs beside the others, so that it never holds up the requests behind it
(``ask`` on a ``WAITS`` thread, which hands its answer back to the loop; a blocking
``get``, or a batch with such a request, on a task: see :mod:`berrymq_jsonrpc.waiting`),
at most ``max_waiting`` of them per connection (the service's setting, default 16), each
such member of a batch counted: one more, or a batch that would pass the cap, is answered
at once with *Limit reached* (``data.setting`` = ``max_waiting``) and reading goes on.

It begins as soon as it is read: the messages sent before it on the connection may still
be on their way to the receivers (a ``get`` waits for them as for any message).
:class:`WaitingRequests` is a base class of
:class:`~berrymq_jsonrpc_tcp.answering.Answerer`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from typing import TYPE_CHECKING, Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.ask_timer import AskProgress, ask_timeout
from berrymq_jsonrpc.jsonrpc import internal_error
from berrymq_jsonrpc.reading import Share
from berrymq_jsonrpc.sessions import WAITS
from berrymq_jsonrpc.taken import counting_taken
from berrymq_jsonrpc.waiting import refuse_waiting
from berrymq_jsonrpc.waiting_methods import STILL_RUNNING

from berrymq.bursts import BurstLog
from berrymq.transports.ioloop import io_loop

if TYPE_CHECKING:
    from berrymq_jsonrpc.input_end import InputEnd
    from berrymq_jsonrpc.service import Service

    from berrymq_jsonrpc_tcp.channel import LineChannel

__all__ = ["WaitingRequests"]

logger = logging.getLogger("berrymq.remote.tcp")

_NL = b"\n"
#: Waiting requests over ``max_waiting``: one log line per burst.
_over_waiting = BurstLog(logger)


class WaitingRequests:
    """Starting and answering the requests of a connection that may wait."""

    if TYPE_CHECKING:  # kept by Answerer
        channel: LineChannel
        service: Service
        waiting: int
        unanswered: int
        ended: InputEnd
        tasks: set[asyncio.Task[None]]
        timed: set[AskProgress]
        asking: set[concurrent.futures.Future[None]]

        def _give_back(self, share: Share | None, _: object = None) -> None: ...
        def _answered(self, data: bytes, taken: int = 0) -> None: ...
        def _write(self, data: bytes, taken: int = 0) -> None: ...

    def _refuse_waiting(self, request: Any, waits: int) -> None:
        """A waiting request (or a batch with ``waits`` of them) over ``max_waiting``:
        answered at once (:func:`~berrymq_jsonrpc.waiting.refuse_waiting`); the
        connection goes on."""
        refusal = refuse_waiting(self.service, request, waits, self.waiting, _over_waiting,
                                 self.channel.url)
        if refusal is not None:
            self._write(refusal + _NL)

    def _start_waiting(self, request: Any, waits: int, share: Share | None = None) -> None:
        """Run a request that may wait (or a batch with ``waits`` of them) beside the
        others; ``share``, its line's share of ``max_reading_bytes``, is given back once
        it begins (an ask on its thread, a blocking get at once), a batch once answered."""
        self.waiting += waits
        self.unanswered += 1
        if type(request) is dict and request.get("method") != p.METHOD_GET:
            # ask (receivers may take their time): straight to a WAITS thread, which
            # hands the answer back; no task, no turn of the loop between
            progress = None
            timeout = ask_timeout(request)
            if timeout is not None:  # answered by then (see berrymq_jsonrpc.ask_timer)
                progress = AskProgress()
                if timeout == 0:  # at once, with no thread: no receiver can have run by then
                    self._give_back(share)
                    self._expired(request, progress)
                    self._waited(None, progress)  # (dropped: expired) the thread it never had
                    return
                progress.timer = asyncio.get_running_loop().call_later(
                    timeout, self._expired, request, progress)
                self.timed.add(progress)
            try:
                asking = WAITS.submit(self._answer_on_waits, request, progress, share)
            except RuntimeError:  # the interpreter is shutting down: no answer comes
                self._give_back(share)
                self._waited(None, progress)
                return
            self.asking.add(asking)
            asking.add_done_callback(self.asking.discard)
            if share is not None:  # (given back at its start; this, if it never starts)
                asking.add_done_callback(functools.partial(self._give_back, share))
            return
        if type(request) is dict:  # a blocking get: begun (a batch's asks may wait yet)
            self._give_back(share)
            share = None
        task = asyncio.get_running_loop().create_task(self._answer_waiting(request, waits))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if share is not None:
            task.add_done_callback(functools.partial(self._give_back, share))

    def _answer_on_waits(self, request: Any, progress: AskProgress | None,
                         share: Share | None = None) -> None:
        """On a WAITS thread: answer a request that may wait, hand the answer to the loop."""
        self._give_back(share)  # begun: its line no longer waits in the node's memory
        reply: bytes | None
        try:
            if progress is None:
                reply = self.service.handle_parsed(request, self.channel)
            else:
                reply = self.service.answer_armed(request, self.channel, progress)
        except Exception:
            logger.exception("answering a waiting request from %s failed", self.channel.url)
            reply = internal_error(request)
        io_loop.call_soon(self._waited, reply, progress)

    def _expired(self, request: Any, progress: AskProgress) -> None:
        """On the loop: an ``ask``'s timeout passed before its thread answered. The answer
        goes now; the request still counts against ``max_waiting`` until its thread is
        done (a receiver still running holds it), so that one connection never holds more
        threads than that."""
        self.timed.discard(progress)
        reply: bytes | None = None
        try:
            reply = self.service.answer_expired(request, self.channel, progress)
        except Exception:
            logger.exception("answering an ask from %s at its timeout failed", self.channel.url)
        self._answered(reply + _NL if reply is not None else b"")

    async def _answer_waiting(self, request: Any, waits: int) -> None:
        reply: bytes | None = None
        running: list[concurrent.futures.Future[Any]] = []  # asks of a batch that run on
        with counting_taken() as taken:
            reset = STILL_RUNNING.set(running)
            try:
                reply = await self.service.answer_waiting(request, self.channel, self.ended)
            except Exception:
                logger.exception("answering a waiting request from %s failed", self.channel.url)
            finally:
                STILL_RUNNING.reset(reset)
                self._waited(reply, waits=waits - len(running), taken=taken[0])
        for thread in running:  # each counts against max_waiting until its thread is done
            thread.add_done_callback(self._thread_done)

    def _thread_done(self, _: concurrent.futures.Future[Any]) -> None:
        """On a WAITS thread: an ask of a batch, answered at its timeout, is done."""
        io_loop.call_soon(self._stop_waiting)

    def _stop_waiting(self) -> None:
        self.waiting -= 1

    def _waited(self, reply: bytes | None, progress: AskProgress | None = None,
                waits: int = 1, taken: int = 0) -> None:
        """On the loop: a request that may wait (or a batch with ``waits`` of them) was
        answered (``reply``, or None for notifications, carrying ``taken`` messages taken
        from queues); write it, unless its timer answered it first."""
        self.waiting -= waits
        if progress is not None:
            if progress.expired:
                return  # answered at its timeout (_expired)
            self.timed.discard(progress)
            if progress.timer is not None:
                progress.timer.cancel()
        self._answered(reply + _NL if reply is not None else b"", taken)


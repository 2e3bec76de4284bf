"""The requests the peer sends on one TCP connection, answered in the order they came.

Both ends of a connection answer the other's requests (:class:`Answerer`, one per
:class:`~berrymq_jsonrpc_tcp.channel.LineChannel`), which reads and writes for it:

- the requests of one read go to the delivery lane as one piece of work, answered in order
  there, and the answers come back to the loop to be written;
- a ``send_message`` that nothing can refuse, with nothing before it unanswered, is
  answered on the loop at once and its delivery goes to the lane once the answer is out;
- a request that delivers nothing and never waits (``connect_oneway``, ``get_nowait``,
  ``network``...: :meth:`~berrymq_jsonrpc.service.Service.answers_on_loop`), with nothing
  before it unanswered and nothing this connection handed to the lane still to run, is
  answered on the loop at once: a slow receiver of another client does not hold it up;
- a request that may wait (an ``ask``, a blocking ``get``) runs beside the others, at most
  ``max_waiting`` of them (see :mod:`berrymq_jsonrpc_tcp.waiting_requests`);
- while the lane is full the connection is not read: a sender faster than the receivers
  slows down, and what it can make the node hold stays bounded;
- nor while the client leaves more than the high-water mark of its answers unread: the
  requests read stay held, not run, until it reads them; and the lane stops answering
  one piece of work once its answers reach the reply limit (4 x ``max_size``), giving the
  rest back to be held (:meth:`Answerer._answer_all`). A client that never reads makes
  the node hold a bounded amount of answers however large each is.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq_jsonrpc.ask_timer import AskProgress
from berrymq_jsonrpc.input_end import InputEnd
from berrymq_jsonrpc.jsonrpc import internal_error
from berrymq_jsonrpc.reading import Share
from berrymq_jsonrpc.taken import counting_taken
from berrymq_jsonrpc.waiting import waits_in

from berrymq.transports.ioloop import io_loop
from berrymq.wire import ParseError
from berrymq_jsonrpc_tcp.waiting_requests import WaitingRequests

if TYPE_CHECKING:
    from berrymq_jsonrpc_tcp.channel import LineChannel

__all__ = ["Answerer"]

logger = logging.getLogger("berrymq.remote.tcp")

_NL = b"\n"


class Answerer(WaitingRequests):
    """The peer's requests on one connection: held in order, then answered on the loop, on
    the delivery lane, or beside the others (those that may wait)."""

    def __init__(self, channel: LineChannel) -> None:
        self.channel = channel
        self.service = channel.service
        #: requests read and not started yet, each with the length of its line (a
        #: ParseError in place of a line that is not JSON, answered in its turn)
        self.held: collections.deque[tuple[Any, int]] = collections.deque()
        self.full: tuple[Callable[[], object], int] | None = None  # work the lane has no room for
        self.pieces = 0  # work handed to the lane whose answers have not come back
        #: requests the lane gave back unanswered (see _answer_all), until the last piece
        #: of work is back; the lane's own flag, read and set there, while they come back
        self.returned: list[tuple[Any, int]] | None = None
        self.handing_back = False
        self.waiting = 0  # requests running that may wait
        self.last_work = 0  # the lane's number of the last work this connection handed over
        self.unanswered = 0  # requests taken whose answers are not written yet
        self.tasks: set[asyncio.Task[None]] = set()
        #: asks whose timer runs (see berrymq_jsonrpc.ask_timer)
        self.timed: set[AskProgress] = set()
        #: the asks handed to WAITS threads and not done: cancelled with the connection
        self.asking: set[concurrent.futures.Future[None]] = set()
        #: done once the peer ended its input: blocking gets stop waiting (see end_gets)
        self.ended = InputEnd()
        #: the shares of ``max_reading_bytes`` that long requests held here brought (by
        #: ``id`` of the request): a request that may wait keeps its share until it begins
        self.shares: dict[int, Share] = {}

    def stalled(self) -> bool:
        """Whether requests wait here for the lane, or for the client to read its answers
        (the connection is not read meanwhile)."""
        return bool(self.held) or self.full is not None or self.returned is not None

    def dispatch(self) -> None:
        """Start what is held, in order, as far as the lane allows (a waiting request over
        ``max_waiting`` is refused at once) and while the client reads its answers (more
        than the high-water mark of them unread: the rest stays held until it has read
        them); read on only when all of it is taken."""
        channel = self.channel
        if self.full is not None or self.returned is not None or channel.closed:
            return
        held = self.held
        batch: list[tuple[Any, int]] = []
        size = 0
        while held and not channel.unread_answers():
            request, length = held.popleft()
            share = self.shares.pop(id(request), None) if self.shares else None
            if share is not None and not waits_in(request):  # taken now: read no more
                self._give_back(share)
                share = None
            if (not batch and not self.unanswered and type(request) is dict and "id" in request
                    and self.service.answers_at_once(request) and io_loop.lane.has_room(length)):
                self._answer_at_once(request, length)
                if self.full is not None:
                    break
            elif (not batch and not self.unanswered and self.service.answers_on_loop(request)
                  and io_loop.lane.ran(self.last_work)):
                self._answer_on_loop(request)
            elif waits := waits_in(request):
                if self.waiting + waits > self.service.max_waiting:
                    self._refuse_waiting(request, waits)
                    self._give_back(share)
                else:
                    self._start_waiting(request, waits, share)
            else:
                batch.append((request, length))
                size += length
        if batch:
            self.unanswered += 1
            self.pieces += 1
            self._offer(functools.partial(self._answer_all, batch), size)
        if self.full is not None or channel.unread_answers():
            channel.pause()
        elif not channel.eof:
            channel.resume()

    def finish_if_answered(self) -> None:
        """After the peer's end of input: close once every request has its answer."""
        if self.channel.eof and not self.unanswered and not self.stalled():
            self.channel.close_transport()

    def cancel(self) -> None:
        """The connection is gone: drop what is held, stop what waits."""
        self.end_gets()
        for task in list(self.tasks):
            task.cancel()
        for progress in self.timed:  # nobody to answer at the timeout any more
            if progress.timer is not None:
                progress.timer.cancel()
        self.timed.clear()
        for asking in list(self.asking):  # those not begun leave the queue (and their
            asking.cancel()  # bytes); those begun run all their receivers
        self.held.clear()
        for share in self.shares.values():
            self._give_back(share)
        self.shares.clear()
        self.returned = None

    def end_gets(self) -> None:
        """The peer ended its input (or the connection): its blocking gets stop waiting,
        answered *Queue is empty* with nothing taken, so that a message coming later stays
        queued for its next get instead of going to a client that may be gone."""
        self.ended.end()

    # -- handing over ---------------------------------------------------------------------

    def _offer(self, work: Callable[[], object], size: int) -> bool:
        """Hand ``work`` to the lane; when it is full, hold it as :attr:`full` (reading
        stays paused) until the lane has room. False when it was held."""
        lane = io_loop.lane
        if lane.offer(work, size):
            self.last_work = lane.offered
            return True
        self.full = (work, size)
        io_loop.lane.room(size).add_done_callback(self._lane_has_room)
        return False

    def _lane_has_room(self, _: asyncio.Future[None]) -> None:
        full, self.full = self.full, None
        if full is not None and not self.channel.closed and self._offer(*full):
            self.dispatch()

    def own(self, request: Any, share: Share) -> None:
        """``request``, held, brought the ``share`` its line was read with."""
        self.shares[id(request)] = share

    def _give_back(self, share: Share | None, _: object = None) -> None:
        if share is not None:  # (also a done callback: the future is the second argument)
            self.service.reading.give_back(share)

    # -- answering ------------------------------------------------------------------------

    def _answer_at_once(self, request: dict[str, Any], size: int) -> None:
        """A ``send_message`` that nothing can refuse: answered here on the loop; its
        delivery goes to the lane once the answer is out."""
        reply, handed = self.service.answer_at_once(request, self.channel, size)
        if reply is not None:
            self._write(reply + _NL)
        for work in handed:  # the lane had room (and only the loop offers): taken at once
            self._offer(work, size)

    def _answer_on_loop(self, request: dict[str, Any]) -> None:
        """A request that delivers nothing and never waits: answered here on the loop."""
        reply: bytes | None
        with counting_taken() as taken:
            try:
                reply = self.service.handle_parsed(request, self.channel)
            except Exception:
                logger.exception("answering a request from %s failed", self.channel.url)
                reply = internal_error(request)
        if reply is not None:
            self._write(reply + _NL, taken[0])

    def _answer_all(self, requests: list[tuple[Any, int]]) -> None:
        """On the delivery lane: answer the requests handed over together, in order, and
        hand the answers to the loop. Once their answers come to the reply limit, the rest
        go back to the loop unanswered and not run (and so do all of this connection's
        work after it on the lane, so that the order holds): the loop holds them again,
        and takes them once the client has read what was written for it. A client that
        sends many small requests for large answers (``network``) and reads none makes the
        node hold a bounded number of answers, not one per request it sent."""
        service, channel = self.service, self.channel
        limit = service.bound.limit
        replies = []
        size = 0
        rest: list[tuple[Any, int]] = []
        with counting_taken() as taken:
            for index, (request, length) in enumerate(requests):
                if self.handing_back or size >= limit:
                    self.handing_back = True
                    rest = requests[index:]
                    break
                reply: bytes | None
                try:
                    if isinstance(request, ParseError):  # held in place of a line not JSON
                        reply = service.dispatcher.parse_error(request)
                    else:
                        reply = service.handle_parsed(request, channel, length)
                except Exception:
                    logger.exception("answering a request from %s failed", channel.url)
                    reply = internal_error(request)
                if reply is not None:
                    replies.append(reply)
                    size += len(reply)
        io_loop.call_soon(self._answered_all, _NL.join(replies) + _NL if replies else b"", rest,
                          taken[0])

    def _answered_all(self, data: bytes, rest: list[tuple[Any, int]], taken: int) -> None:
        """On the loop: the answers to a piece of work of the lane (carrying ``taken``
        messages taken from queues), and the requests it gave back (see
        :meth:`_answer_all`), held again, in order, once the last piece of work is back."""
        self.pieces -= 1
        if rest:
            self.returned = (self.returned or []) + rest
        again = self.returned is not None and not self.pieces
        if again:
            assert self.returned is not None
            self.held.extendleft(reversed(self.returned))
            self.returned = None
            self.handing_back = False  # nothing of this connection's is on the lane now
        self._answered(data, taken)
        if again:
            self.dispatch()

    def _answered(self, data: bytes, taken: int = 0) -> None:
        """On the loop: write one answer (or none, for notifications), carrying ``taken``
        messages taken from queues."""
        self.unanswered -= 1
        if data or taken:
            self._write(data, taken)
        self.finish_if_answered()

    def _write(self, data: bytes, taken: int = 0) -> None:
        """Write answers (carrying ``taken`` messages taken from queues), counted in the
        node's figures on the accepting end."""
        channel = self.channel
        if channel.serving:
            self.service.stats.exchanged(0, len(data))
        channel.write(data, taken)

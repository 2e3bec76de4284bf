"""One TCP connection, either end, as an asyncio protocol on the process's I/O loop.

Every request and every response is one line of UTF-8 JSON. Both ends of a connection are
alike (:class:`LineChannel`): each sends requests and answers the other's, which is how one
connection carries both directions of an interconnection.

The loop reads the socket into the I/O thread's buffer (asyncio's buffered protocol, see
:func:`berrymq.transports.ioloop.read_buffer`) and the channel takes a copy of what came,
splits lines, hands replies to their waiting callers at once (its
:class:`~berrymq_jsonrpc_tcp.calls.Calls`) and gives requests to its
:class:`~berrymq_jsonrpc_tcp.answering.Answerer`, which answers them in order. While the
lane is full, or (on the accepting end) while more than :data:`_HIGH_WATER` bytes of
answers wait for a peer that does not read them, the connection is not read (asyncio's
``pause_reading``): a sender faster than the receivers slows down, and what it can make the
node hold stays bounded.

Line limits, at either end: a request line is at most ``max_size`` bytes; an answer line,
while this end waits for answers (or for the late answers of the last requests it gave up
waiting for: :class:`~berrymq_jsonrpc_tcp.calls.Calls`), at most 4x ``max_size`` (the
reply limit: an answer to a batch can be larger than any request). A line over its limit is answered with
``TOO_LARGE`` and the connection is closed (an answer over it, at the connecting end, fails
the calls waiting on the connection instead, naming the limit). Server limits: a line not
complete ``read_timeout`` seconds after its first byte (a stall, or a slow drip: the
deadline is for the whole line, not per read) is answered *Limit reached* and closed, and
a connection idle that long without an open session is closed (the timer that does it:
:mod:`berrymq_jsonrpc_tcp.deadline`). A peer that half-closes after its requests gets
every answer before the close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from berrymq_jsonrpc.channel import Channel, Late
from berrymq_jsonrpc.limits import Admission
from berrymq_jsonrpc.listener import Accepted
from berrymq_jsonrpc.reading import FREE_READING, Share
from berrymq_jsonrpc.replies import reply_limit
from berrymq_jsonrpc.service import DEFAULT_MAX_WAITING, Service
from berrymq_jsonrpc.taken import TakenInFlight

from berrymq.errors import ConnectionClosed
from berrymq.transports.ioloop import ThreadBufferedProtocol, io_loop
from berrymq.wire import ParseError, dumps, loads
from berrymq_jsonrpc_tcp.answering import Answerer
from berrymq_jsonrpc_tcp.calls import NL, Calls, is_response
from berrymq_jsonrpc_tcp.deadline import ReadDeadline
from berrymq_jsonrpc_tcp.refusing import TURN_AWAY_BYTES, Refusing, http_request_line, over
from berrymq_jsonrpc_tcp.sharing import ReadingShare

__all__ = ["LineChannel"]

logger = logging.getLogger("berrymq.remote.tcp")

#: A writer of requests waits while this much is buffered for the peer; the accepting end
#: does not read a peer that leaves this much of its answers unread.
_HIGH_WATER = 1 << 20


class LineChannel(ReadingShare, ThreadBufferedProtocol, Channel, ReadDeadline, Refusing):
    """One TCP connection, either end: sends requests, answers the peer's requests.

    :param service: answers the requests the peer sends on this connection.
    :param read_timeout: the accepting end's limit for a stalled line and for an idle
        connection without a session; None on the connecting end.
    :param read_limit: the longest request line accepted, in bytes (``max_size``); an
        answer line may be :attr:`answer_limit` long while answers are owed to this end.
    :param admission: the accepting end's caps on connections, asked when one is made.
    :param channels: the accepting end's set of open connections, kept up to date.
    """

    #: a node runs this many waiting requests of one TCP connection at once (its default
    #: ``max_waiting``): this end's threads take turns (see Channel.waiting_turn)
    waiting_at_once = DEFAULT_MAX_WAITING

    def __init__(self, url: str, *, service: Service, secret: str | None, max_size: int,
                 timeout: float, read_limit: int, read_timeout: float | None,
                 admission: Admission | None = None,
                 channels: Accepted[LineChannel] | None = None) -> None:
        Channel.__init__(self, url, secret=secret, max_size=max_size, timeout=timeout)
        self.service = service
        self.read_limit = read_limit
        #: the longest answer line accepted while this end waits for answers
        self.answer_limit = reply_limit(read_limit)
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the connection is on
        self._admission = admission
        self._channels = channels
        self._client: str | None = None  # the admitted peer host, released at the end
        self._first_line = True  # the accepting end looks at it: an HTTP request is refused
        #: the requests sent and not answered yet, and the futures waiting for them
        self.calls = Calls(self)
        self._rest = b""  # the start of a line not yet ended
        self._began = 0.0  # when the line in _rest began: it must end within read_timeout
        self._last = 0.0  # when something was last read (the idle limit)
        self._paused = False  # reading paused (the lane full, or answers not read)
        self.eof = False  # the peer ended its input (it may still read answers)
        self.answers = Answerer(self)
        #: set while over the high-water mark: done once the peer has read enough
        self.writable: asyncio.Future[None] | None = None
        self._closed_here = False  # this end closed the connection (else the peer did)
        #: the node answered a line over read_limit (the connecting end): what waits is
        #: told so, not that the connection "is closed" as if this end had closed it
        self._answer_too_large = False
        #: the answers written that carry messages taken from a queue, until sent
        self.in_flight = TakenInFlight(service.stats, service.unsent, url)

    @property
    def serving(self) -> bool:
        """Whether this is the accepting end (the node's own counters and limits apply)."""
        return self.read_timeout is not None

    # -- the protocol's callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # (asyncio.get_running_loop() makes a system call each time: kept at hand instead)
        self._loop = asyncio.get_running_loop()
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        if not self.serving:
            return
        if self._channels is not None and self._channels.closed:  # the listener stopped
            self._closed_here = True
            transport.abort()
            return
        host, port = transport.get_extra_info("peername")[:2]
        self.url = self.in_flight.peer = f"tcp://{host}:{port}"
        if self._admission is not None:
            refusal = self._admission.admit(host)  # max_connections(_per_client)
            if refusal is not None:
                self._turn_away(dumps(refusal).encode() + NL)
                return
            self._client = host
        if self._channels is not None:
            self._channels.add(self)
        self._last = self._loop.time()
        self._arm(self._last + (self.read_timeout or 0.0))

    def data_received(self, data: bytes) -> None:
        """Take what the peer sent (a copy: the read buffer is reused)."""
        if self._refused:
            self._refused += len(data)
            if self._refused > TURN_AWAY_BYTES:
                self.close_transport()
            return
        if self.closed:
            return
        if self._discarding:
            self._discarding -= len(data)
            if self._discarding <= 0:
                self.close_transport()
            return
        if self.serving:
            self.service.stats.exchanged(len(data), 0)
            assert self._loop is not None
            self._last = self._loop.time()
        if NL not in data:
            if not self._rest:
                self._began = self._last
            self._rest += data
            limit = self._line_limit()
            if len(self._rest) > limit and over(self._rest, limit):
                self._too_large(limit > self.read_limit)
            elif self._share is None and len(self._rest) > FREE_READING:
                self._weigh_line()
            return
        lines = (self._rest + data if self._rest else data).split(NL)
        self._rest = lines.pop()
        self._began = self._last
        if (self._take(lines, self._line_ended()) and len(self._rest) > (limit := self._line_limit())
                and over(self._rest, limit)):
            self._too_large(limit > self.read_limit)
        elif len(self._rest) > FREE_READING:
            self._weigh_line()

    def _line_limit(self) -> int:
        """The longest line read now: while answers are owed to this end (requests sent
        and not answered, those given up on included), as long as an answer may be; else
        as long as a request."""
        return self.answer_limit if self.calls.expecting() else self.read_limit

    def _too_large(self, answer: bool = False) -> None:
        """A line over its limit: a request's (``answer`` False) is answered, counted at
        the accepting end, and the connection closed. A node's answer over the answer
        limit (the connecting end): nothing to tell the node; closed at once, and what
        waits fails naming the limit (not "the connection is closed", as if the user had
        closed it)."""
        if self.serving or not answer:
            super()._too_large()  # answered, counted by a node, then closed
            return
        self._answer_too_large = True
        self._closed_here = True
        if self.transport is not None:
            self.transport.abort()
        self._ended()

    def eof_received(self) -> bool:
        if self._refused or self.closed or self._discarding:
            return False  # (closed then, once what is buffered is written)
        rest, self._rest = self._rest, b""
        if not rest.strip():  # nothing but blanks: no request, and the share is done with
            self._give_back_share()
        elif not self._take([rest], self._line_ended()):  # the end of input ends its line
            return False
        self.eof = True
        self.answers.end_gets()
        self.answers.finish_if_answered()
        return True  # keep the write side open for the answers

    def pause_writing(self) -> None:
        if self.writable is None:
            loop = asyncio.get_running_loop()
            self.writable = loop.create_future()
            self._note_unread(loop.time())  # (see berrymq_jsonrpc_tcp.deadline)
        if self.serving:  # see unread_answers
            self.pause()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        if self.serving and not self._refused:
            self.answers.dispatch()  # reads on, unless the lane is full

    def connection_lost(self, exc: Exception | None) -> None:
        # a reset or an error threw away what the transport held; a close wrote it first
        self.in_flight.ended(failed=exc is not None)
        self._ended()

    # -- reading --------------------------------------------------------------------------

    def _take(self, lines: list[bytes], owned: Share | None = None) -> bool:
        """Hand the replies to their callers and the requests to :attr:`answers`; False if
        closed. ``owned``: the share of ``max_reading_bytes`` the first line was read
        with, which goes with it if it is a request (else it is given back)."""
        carried = [] if owned is None else [owned]
        try:
            return self._take_lines(lines, carried)
        finally:
            if carried:  # not carried by a request: read, and done with
                self.service.reading.give_back(carried[0])

    def _take_lines(self, lines: list[bytes], carried: list[Share]) -> bool:
        limit = self.read_limit
        held = self.answers.held
        expecting = self.calls.expecting
        if self._first_line and lines:
            self._first_line = False
            if self.serving and http_request_line(lines[0]):
                self._refuse_http()
                return False
        for line in lines:
            long = len(line) > limit and over(line, limit)  # an answer's length at most
            if long and (not expecting() or over(line, self.answer_limit)):
                self._too_large(expecting())
                return False
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except ParseError as exc:
                if long:  # no answer: a request over the limit
                    self._too_large()
                    return False
                held.append((exc, len(line)))  # answered in order with a parse error
                continue
            if is_response(obj):
                self.calls.response(obj)
            elif type(obj) is list and obj and all(is_response(member) for member in obj):
                for member in obj:
                    self.calls.response(member)
            elif long:  # a request as long as an answer may be: over its own limit
                self._too_large()
                return False
            else:
                held.append((obj, len(line)))
                if carried and line is lines[0]:
                    self.answers.own(obj, carried.pop())
        self.answers.dispatch()
        return not self.closed

    def pause(self) -> None:
        """Stop reading (the lane is full, or the peer leaves its answers unread)."""
        transport = self.transport
        if transport is not None:
            transport.pause_reading()
            self._paused = True

    def resume(self) -> None:
        """Read on."""
        transport = self.transport
        if transport is None or self._waiting_for_share():
            return
        if self._paused:
            self._paused = False
            if self._rest:  # the line begun before the pause: its deadline starts again
                self._began = asyncio.get_running_loop().time()
        transport.resume_reading()

    def unread_answers(self) -> bool:
        """Whether this accepting end holds more answers than :data:`_HIGH_WATER` that the
        peer has not read: it is not read meanwhile (the connecting end always reads, so
        that two nodes writing to each other cannot both stop reading)."""
        return self.writable is not None and self.serving

    # -- writing --------------------------------------------------------------------------

    def write(self, data: bytes, taken: int = 0) -> None:
        """Write ``data``, answers carrying ``taken`` messages taken from a queue, unless
        the connection is closed or closing (those messages are then counted lost)."""
        transport = self.transport
        if transport is not None and not self.closed and not transport.is_closing():
            transport.write(data)
            self.in_flight.wrote(transport, len(data), taken)
        elif taken:
            self.in_flight.not_written(taken)

    def write_request(self, transport: asyncio.Transport, text: str) -> None:
        """Write the request ``text`` on ``transport``, this connection's, which the caller
        found open (see :class:`~berrymq_jsonrpc_tcp.calls.Calls`)."""
        data = text.encode() + NL
        transport.write(data)
        self.in_flight.sent(len(data))

    async def exchange(self, text: str, request_id: int, timeout: float,
                       late: Late | None = None) -> Any:
        return await self.calls.exchange(text, request_id, timeout, late)

    def call(self, method: str, params: Mapping[str, Any], timeout: float | None = None,
             late: Late | None = None) -> Any:
        """:meth:`Channel.call` without a task on the loop: a callback writes the request
        and the reply goes straight to the waiting thread (two turns of the loop, not
        four; this is the path of ``ask``, ``get`` and the other synchronous calls)."""
        if io_loop.in_loop():
            raise RuntimeError("a blocking berryMQ call was made on the I/O thread; it would deadlock")
        wait = self.timeout if timeout is None else timeout
        text, request_id = self._request(method, params)
        reply = self.calls.call(text, request_id, wait, late)
        return self.result_of(reply, request_id)

    # -- closing --------------------------------------------------------------------------

    def close_transport(self) -> None:
        """Close once what is buffered is written."""
        if not self.eof:  # after the peer's end of input, the peer ended the connection
            self._closed_here = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # what is buffered is written first; then connection_lost

    async def aclose(self) -> None:
        self._closed_here = True
        transport = self.transport
        if transport is not None:
            if self.writable is not None:  # the peer does not read: don't wait for it
                self.in_flight.ended(True, transport)  # what it holds is thrown away
                transport.abort()
            else:
                transport.close()
        self._ended()

    def gone(self) -> ConnectionClosed:
        """What a request on the closed connection is told, the same whichever noticed
        first: that this end closed it, or that the peer did (went away, or reset it)."""
        if self._closed_here:
            return ConnectionClosed(f"the connection to {self.url} is closed")
        return ConnectionClosed(f"{self.url}: the peer closed the connection")

    def _ended(self) -> None:
        """The connection is gone: fail what waits on it, free what it held (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._rest = b""  # a line begun and never ended: freed now, not at the next gc
        self._give_back_share()
        if self._refused:
            return
        self._disarm()
        if self._channels is not None:
            self._channels.discard(self)
        if self._client is not None and self._admission is not None:
            self._admission.release(self._client)
            self._client = None
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_exception(self.gone())
            writable.exception()  # retrieved: nobody may be waiting on it
        self.answers.cancel()
        self.calls.fail(self._answer_too_large)
        self.service.close_sessions_of(self, "connection closed")

"""One accepted HTTP connection of a node's server (:class:`ServerConnection`): requests
parsed on the I/O loop (httptools, :mod:`berrymq_jsonrpc_http.http11`), answered in order
(pipelined too) by the :class:`~berrymq_jsonrpc_http.server.Server` that accepted it, or
refused: bounded in time (a whole request within ``read_timeout``, not per read: ``408``,
counted and logged) and in size (``max_size``: 413; a head over 16 KiB: 431).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.dialect import HTTP_PATHS, MEDIA_TYPES, accepts_media_type, serves_path
from berrymq_jsonrpc.jsonrpc import error_object
from berrymq_jsonrpc.monitor import MONITOR_ONLY, host_allowed
from berrymq_jsonrpc.reading import FREE_READING, Share
from berrymq_jsonrpc.taken import TakenInFlight, counting_taken

from berrymq.bursts import BurstLog
from berrymq.transports.ioloop import io_loop
from berrymq.wire import dumps
from berrymq_jsonrpc_http.http11 import CONTINUE, END, Head, Malformed, RequestEvents, response
from berrymq_jsonrpc_http.streams import READ_CHUNK, EndingReader, discard

if TYPE_CHECKING:
    from berrymq_jsonrpc_http.server import Server

__all__ = ["ServerConnection"]

logger = logging.getLogger("berrymq.remote.http")
_stalled_requests = BurstLog(logger)
_unread = BurstLog(logger)  # clients that left their answers unread
_unanswered = BurstLog(logger)  # status routes whose answer could not be made

_SERVER = (b"Server", b"berryMQ")
#: The methods that read a status route: HEAD is answered as GET, without the body.
_READS = (b"GET", b"HEAD")
#: Answers written and not yet taken by the client beyond which no more of its requests
#: are read until it takes them (asyncio's own high-water mark for a transport).
_UNREAD = 64 * 1024
#: The pieces a status answer is written in, each when the client took the one before.
_PIECE = 32 * 1024


class ServerConnection:
    """One accepted HTTP connection: requests answered one after the other."""

    def __init__(self, server: Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.requests = RequestEvents()
        #: when the first byte of the request being read came (None between requests)
        self.began: float | None = None
        #: whether the request being answered is HTTP/1.0
        self.http10 = False
        #: whether it is a HEAD request: answered as its GET would be, without the body
        self.head = False
        #: the lane's number of the last delivery this connection handed over
        self.last_work = 0
        peer = writer.get_extra_info("peername") or ("?", 0)
        #: the client, as log lines name it
        self.client = f"http://{peer[0]}:{peer[1]}"
        #: the answers written that carry messages taken from a queue, until sent
        self.in_flight = (None if server.service is None else
                          TakenInFlight(server.service.stats, server.service.unsent,
                                        self.client))

    async def _event(self, timeout: float) -> Head | bytes | object | None:
        """The next parsed event, reading as needed; None when the client went away, or
        sent no byte of a request for ``timeout`` seconds. A request cut short is
        :class:`Malformed`, to answer: by the end of the input (400), or ``timeout``
        seconds after its first byte (408; :attr:`began`: not per read, which a drip
        would defeat)."""
        events = self.requests.events
        clock = asyncio.get_running_loop().time
        while not events:
            if self.requests.error is not None:
                raise self.requests.error
            if self.requests.ended:
                return None
            wait = timeout if self.began is None else self.began + timeout - clock()
            try:
                async with asyncio.timeout(max(0.0, wait)):  # no task per read, as wait_for
                    data = await self.reader.read(READ_CHUNK)
            except TimeoutError:
                if self.requests.open:
                    raise Malformed(408, "the request did not all come within read_timeout "
                                         f"({timeout:g}s)") from None
                return None
            except OSError:
                return None
            if not data:
                if self.requests.open:
                    raise Malformed(400, "the client's input ended in the middle of the request")
                return None
            if self.began is None:
                self.began = clock()
            self.requests.feed(data)
        return events.popleft()

    def _send(self, status: int, body: bytes = b"", content_type: bytes = b"application/json",
              extra: list[tuple[bytes, bytes]] | None = None, close: bool = False,
              taken: int = 0) -> None:
        """Write an answer (carrying ``taken`` messages taken from queues, counted lost
        when the connection has ended already)."""
        self._write(response(status, self._headers(status, len(body), content_type, extra,
                                                   close), b"" if self.head else body), taken)

    def _headers(self, status: int, length: int, content_type: bytes,
                 extra: list[tuple[bytes, bytes]] | None, close: bool) -> list[tuple[bytes, bytes]]:
        headers = [_SERVER]
        if status != HTTPStatus.NO_CONTENT:
            headers += [(b"Content-Type", content_type), (b"Content-Length", str(length).encode())]
        if close:
            headers.append((b"Connection", b"close"))
        elif self.http10:  # an HTTP/1.0 client closes unless told it may keep the connection
            headers.append((b"Connection", b"keep-alive"))
        return headers + (extra or [])

    async def _send_status(self, status: int, body: bytes, content_type: bytes,
                           extra: list[tuple[bytes, bytes]], close: bool) -> bool:
        """Write a status route's answer a piece at a time as the client takes them (the
        body is shared by the requests of one :mod:`~berrymq_jsonrpc.one_build`: 100 slow
        readers of copies of a 7 MB status held 700 MB). False when the client took none
        of it for ``read_timeout`` (it is closed); a slow, steady reader is not."""
        self._write(response(status, self._headers(status, len(body), content_type, extra,
                                                   close)))
        if self.head:
            return True
        whole = memoryview(body)
        loop = asyncio.get_running_loop()
        for start in range(0, len(whole), _PIECE):
            self._write(whole[start:start + _PIECE])
            if not await self._taken(loop.time() + self.server.read_timeout):
                return False
        return True

    def _write(self, data: bytes | memoryview, taken: int = 0) -> None:
        transport = self.writer.transport
        if transport.is_closing():  # gone: asyncio would drop it unsaid
            if taken and self.in_flight is not None:
                self.in_flight.not_written(taken)
            return
        transport.write(data)
        if self.in_flight is not None:
            self.in_flight.wrote(transport, len(data), taken)

    def _refuse(self, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
                ) -> bool:
        body = text.encode() + b"\n"
        self._count_out(body)
        self._send(status, body, b"text/plain; charset=utf-8", extra, close=True)
        return False

    def _stalled(self, server: Server, text: str) -> None:
        """Answer a request not whole within ``read_timeout`` (``408``), counted in
        ``/status`` ``refused`` and logged once per burst, as over TCP."""
        _stalled_requests.warning("%s did not send a whole request within read_timeout "
                                  "(%gs); answered 408 and closed", self.client,
                                  server.read_timeout)
        if server.service is not None:
            server.service.count_refusal("read_timeout")
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, text)

    def _count_out(self, body: bytes) -> None:
        """Count a refusal's body in the node's bytes out, as its answers are."""
        service = self.server.service
        if service is not None and not self.head:
            service.stats.exchanged(0, len(body))

    async def run(self) -> None:
        server = self.server
        try:
            while True:
                try:
                    head = await self._event(server.read_timeout)
                    if not isinstance(head, Head):
                        return
                    self.http10 = head.http10
                    self.head = head.method == b"HEAD"
                    if not await self._answer(head):
                        return
                except Malformed as exc:  # in the head, in a chunked body, or cut short
                    if exc.status == HTTPStatus.REQUEST_TIMEOUT:
                        self._stalled(server, str(exc))
                    else:
                        self._refuse(exc.status, f"malformed HTTP request: {exc}")
                    return
                self.began = None
                if not await self._may_read_on():
                    return
        except OSError:
            return  # the client reset the connection, or cannot be answered any more
        finally:
            # the last answers (a refusal) on their way, unless the client does not read
            # (or reset the connection: what its transport held is thrown away)
            failed = False
            try:
                async with asyncio.timeout(server.read_timeout):
                    await self.writer.drain()
            except TimeoutError:  # not read within read_timeout: not left to send later
                self._unread_too_long()
                failed = True
            except (OSError, RuntimeError):
                failed = True
            if self.in_flight is not None:
                self.in_flight.ended(failed)
            self.writer.close()

    def _unread_too_long(self) -> None:
        """Close a client that took none of its answers for ``read_timeout``, with them:
        counted in ``/status`` ``refused`` and logged once per burst, as over TCP."""
        _unread.warning("%s did not read its answers within read_timeout (%gs); closed",
                        self.client, self.server.read_timeout)
        if self.server.service is not None:
            self.server.service.count_refusal("read_timeout")
        self._abort()

    def _abort(self) -> None:
        """End the connection now, with what it holds unsent (counted, when it carries
        messages taken from a queue)."""
        transport = self.writer.transport
        if self.in_flight is not None and not transport.is_closing():
            self.in_flight.ended(True, transport)
        transport.abort()

    async def _may_read_on(self) -> bool:
        """After an answer: whether to read the next request (the client took most of its
        answers, and the server is not stopping)."""
        if self.writer.transport.get_write_buffer_size() > _UNREAD \
                and not await self._taken(asyncio.get_running_loop().time()
                                          + self.server.read_timeout):
            return False
        return not self.writer.is_closing()

    async def _taken(self, deadline: float) -> bool:
        """Wait until the client has taken most of its answers (a client that pipelines
        requests without reading the answers is read no further meanwhile, and a large
        answer is written a piece at a time); False when it has not by ``deadline`` (the
        loop's time: ``read_timeout`` after the wait began), or went away."""
        try:
            async with asyncio.timeout_at(deadline):
                await self.writer.drain()
        except TimeoutError:
            self._unread_too_long()
            return False
        except OSError:
            return False
        return True

    def _keeps(self, request: Head) -> bool:
        """Whether the connection stays open after ``request``'s answer: the client did
        not ask to close, and did not ask for an Upgrade (nothing after it is read)."""
        return request.keep_alive and not self.requests.ended

    def _read_whole(self) -> bool:
        """Pass over the rest of a request answered without its body: whether all of it
        was already read (if not, the connection is closed after the answer)."""
        events = self.requests.events
        while events:
            if events.popleft() is END:
                return True
        return False

    async def _answer(self, request: Head) -> bool:  # noqa: PLR0911 - one per refusal
        """Serve one request; whether the connection stays open."""
        server = self.server
        headers = request.headers
        target = request.target
        monitor = server.monitor  # GET of the status routes: berrymq_jsonrpc.monitor
        reads = request.method in _READS  # GET or HEAD
        if monitor is not None and reads:
            try:
                answer = await monitor.respond("GET", target, {
                    k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()})
            except Exception as exc:  # answered, and the log says what failed
                # every request that shared the failed build gets it: one line per burst,
                # its traceback with the first
                path = target.split("?")[0]
                if _unanswered.error("a node could not answer GET %s: %s: %s", path,
                                     type(exc).__name__, exc):
                    logger.error("where the failure of GET %s came from", path, exc_info=exc)
                return self._refuse(500, "the node could not make its status (its log says "
                                    "why)")
            if answer is not None:
                status, head, body = answer
                extra = [(k.encode(), v.encode()) for k, v in head.items() if k != "Content-Type"]
                # a refusal, or a GET whose body has not all come: close
                close = status >= 400 or not self._keeps(request) or not self._read_whole()
                written = await self._send_status(status, body, head["Content-Type"].encode(),
                                                  extra, close)
                return written and not close
        if server.service is None:  # serve --monitor: the status routes and nothing else
            return self._refuse(404 if reads else 405, MONITOR_ONLY,
                                None if reads else [(b"Allow", b"GET, HEAD")])
        if request.method != b"POST":
            json_rpc = serves_path(target)
            if reads and monitor is not None and not json_rpc:
                return self._refuse(404, "berryMQ answers GET of /, /status, /metrics, "
                                    "/network, and JSON-RPC at POST " + ", ".join(HTTP_PATHS))
            if monitor is None or (json_rpc and target.split("?")[0] != "/"):  # /JSON, ...
                return self._refuse(405, "berryMQ answers POST here", [(b"Allow", b"POST")])
            return self._refuse(405, "berryMQ answers POST (and GET of /, /status, /metrics, "
                                "/network)", [(b"Allow", b"GET, HEAD, POST")])
        host = headers.get(b"host")
        if host and monitor is not None and not host_allowed(host.decode("latin-1"),
                                                             monitor.names):
            # DNS rebinding: a web page's request names the attacker's host (a client
            # that sends no Host at all is no browser, and is served)
            return self._refuse(421, "this node does not answer to that Host name (its "
                                "bound address, localhost, 127.0.0.1, [::1], setting names)")
        # paths and media types of JSON-RPC 1.0 clients too (issue 11): dialect.py
        if not serves_path(target):
            return self._refuse(404, "berryMQ answers JSON-RPC at POST " + ", ".join(HTTP_PATHS))
        ctype = headers.get(b"content-type")
        origin = headers.get(b"origin")
        if not accepts_media_type(None if ctype is None else ctype.decode("latin-1"),
                                  None if origin is None else origin.decode("latin-1")):
            return self._refuse(415, "send JSON-RPC with Content-Type: application/json (or "
                                + ", ".join(sorted(MEDIA_TYPES - {"application/json"}))
                                + ", or none from a client that is not a web page)")
        # a body of a Content-Length, or chunked (llhttp takes no other transfer coding)
        chunked = b"transfer-encoding" in headers
        if not chunked and b"content-length" not in headers:
            return self._refuse(411, "a valid Content-Length (or a chunked body) is required")
        length = 0 if chunked else int(headers[b"content-length"])  # llhttp checked it
        # the client may be holding the body back until told to go on
        waiting = request.expects_continue and not self.requests.events
        if length > server.max_size:
            self._too_large()
            if not waiting:
                await discard(self.reader, length)
            return False
        if waiting:
            self._write(CONTINUE)
        shares = [] if length <= FREE_READING else [await self._share_of(length)]
        try:  # a share is given back once the request is answered (an ask: its replies)
            data = await self._body(shares)
            if data is None:
                return False
            ended = reset = None
            if isinstance(self.reader, EndingReader):
                ended, reset = self.reader.ended, self.reader.reset
            with counting_taken() as taken:
                reply, handed = await server.dispatch(data, self.client, ended,
                                                      self.last_work, reset)
        finally:
            for share in shares:
                server.service.reading.give_back(share)
        server.service.stats.exchanged(len(data), 0 if reply is None else len(reply))
        keep = self._keeps(request)
        if reply is None:
            self._send(204, close=not keep)
        else:
            self._send(200, reply, close=not keep, taken=taken[0])
        for work in handed:  # the lane had room (and only the loop offers): taken at once
            self.last_work = await io_loop.lane.put(work, len(data))
        return keep

    async def _body(self, shares: list[Share]) -> bytes | None:
        """The body of the request being answered; None when it was refused (over
        ``max_size``) or cut short. A chunked body over 64 KiB takes a share of
        ``max_reading_bytes`` on its way, added to ``shares``."""
        server = self.server
        chunks = []
        size = 0
        while (event := await self._event(server.read_timeout)) is not END:
            if not isinstance(event, bytes):
                return None  # the client went away mid-body
            size += len(event)
            if size > server.max_size:  # chunks beyond it: the rest is not read
                self._too_large()
                return None
            if not shares and size > FREE_READING:  # a chunked body
                shares.append(await self._share_of(server.max_size))
            chunks.append(event)
        return b"".join(chunks)

    async def _share_of(self, size: int) -> Share:
        """A share of the node's ``max_reading_bytes`` for a body of ``size`` bytes,
        waited for if need be; the request's deadline starts again after a wait."""
        service = self.server.service
        assert service is not None
        share = await service.reading.wait_for(size, service.max_reading_bytes)
        if share.waited:
            self.began = asyncio.get_running_loop().time()
        return share

    def _too_large(self) -> None:
        if self.server.service is not None:
            self.server.service.count_refusal("max_size")
        body = dumps(error_object(p.TOO_LARGE, p.APPLICATION_ERRORS[p.TOO_LARGE], None, {
            "limit": self.server.max_size, "setting": "max_size"})).encode()
        self._count_out(body)
        self._send(413, body, close=True)

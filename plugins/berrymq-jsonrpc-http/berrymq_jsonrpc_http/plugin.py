"""The ``jsonrpc-http`` plugin: berryMQ's JSON-RPC protocol over HTTP/1.1.

HTTP parsing, keep-alive and ``Expect: 100-continue`` are done by ``h11`` (sans-I/O), the
sockets by asyncio streams on the process's I/O loop: no thread per connection. Chosen
over aiohttp by measurement (a JSON-RPC POST round trip on one keep-alive connection,
client and server in one process: h11 260-310 us at p50, aiohttp 357-370 us) and because
owning the read loop lets the server bound a whole request, not each read.

Server: ``POST`` to the paths of :data:`berrymq_jsonrpc.dialect.HTTP_PATHS` for JSON-RPC
(the media types of :func:`berrymq_jsonrpc.dialect.accepts_media_type`), and ``GET`` of the
node's status routes (``/``, ``/status``, ``/metrics``, ``/network``), answered by
:class:`berrymq_jsonrpc.monitor.Monitor`. Every request is parsed on the loop and answered
on the delivery lane (``ask`` on a :data:`~berrymq_jsonrpc.sessions.WAITS` thread; a blocking
``get`` awaits its queue on the loop).
Client: a small pool of keep-alive connections per peer. Over HTTP a peer cannot answer on
the connection it was called on, so style 01 needs both nodes to serve: ``interconnect``
sends this node's server URL and the peer calls it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import h11
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.cli import add_serve_option
from berrymq_jsonrpc.client import Channel
from berrymq_jsonrpc.dialect import HTTP_PATHS, MEDIA_TYPES, accepts_media_type, serves_path
from berrymq_jsonrpc.jsonrpc import ParseError, dumps, error_object, loads
from berrymq_jsonrpc.limits import Admission
from berrymq_jsonrpc.monitor import Monitor, host_allowed
from berrymq_jsonrpc.service import Service, may_wait
from berrymq_jsonrpc.transport import RemoteTransport, bind_family, declare_settings, split_url

from berrymq.bus import Bus
from berrymq.cli import Commands
from berrymq.errors import ConnectionClosed, TransportError
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry
from berrymq.transports.ioloop import io_loop

__all__ = ["PLUGIN", "HttpChannel", "HttpTransport"]

PLUGIN = "jsonrpc-http"
logger = logging.getLogger("berrymq.remote.http")

#: The longest request line plus headers accepted (h11 answers 431 beyond it).
_MAX_HEAD = 16 * 1024
_RECV = 1 << 16
#: The most of a refused (oversized) body read before the connection is closed.
_DISCARD = 1 << 18
_SERVER = (b"Server", b"berryMQ")


def _reply_to(service: Service, body: bytes) -> tuple[Any, bool]:
    """Parse a body: ``(request, slow)``, the request being the parse-error answer when
    the body is not JSON."""
    try:
        request = loads(body)
    except ParseError:
        return _PARSE_ERROR, False
    return request, may_wait(request)


_PARSE_ERROR = object()


def _with_host(data: bytes) -> bytes:
    """``data`` (starting with a request head) with an empty ``Host`` header added when an
    HTTP/1.1 request has none: h11 answers such a request 400 as RFC 9112 says, while
    berryMQ has always served JSON-RPC clients that leave it out."""
    end = data.find(b"\r\n\r\n")
    first = data.find(b"\r\n")
    if end < 0 or not data[:first].rstrip().endswith(b"HTTP/1.1"):
        return data
    if b"\nhost:" in data[:end + 2].lower().replace(b"\nhost :", b"\nhost:"):
        return data
    return data[:first] + b"\r\nHost: " + data[first:]


class _ServerConnection:
    """One accepted HTTP connection: requests answered one after the other."""

    def __init__(self, server: _Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        #: when the first byte of the request being read came (None between requests)
        self.began: float | None = None

    async def _event(self, timeout: float) -> Any:
        """The next h11 event, reading as needed; None when the client went away, or
        when ``timeout`` seconds passed without a byte of a request, or since the first
        byte of the request being read (:attr:`began`: the deadline is for the whole
        request, head and body, not per read, which a slow drip would defeat)."""
        conn = self.conn
        clock = asyncio.get_running_loop().time
        head = b""
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            wait = timeout if self.began is None else self.began + timeout - clock()
            try:
                async with asyncio.timeout(max(0.0, wait)):  # no task per read, as wait_for
                    data = await self.reader.read(_RECV)
            except (TimeoutError, OSError):
                return None
            if self.began is None:
                self.began = clock()
            if conn.their_state is h11.IDLE and not conn.trailing_data[0] and data:
                # a request head is read whole first, to be lenient where h11 is strict
                head += data
                start = head.lstrip(b"\r\n")[:1]
                if start and not start.isalpha():
                    # e.g. a JSON line for a TCP port: no request line can start so, and
                    # h11 would wait for the end of a header block that never comes
                    raise h11.RemoteProtocolError("not an HTTP request", 400)
                if b"\r\n\r\n" not in head and len(head) <= _MAX_HEAD:
                    continue
                data, head = _with_host(head), b""
            conn.receive_data(data)

    def _send(self, status: int, body: bytes = b"", content_type: bytes = b"application/json",
              extra: list[tuple[bytes, bytes]] | None = None, close: bool = False) -> None:
        headers = [_SERVER]
        if status != HTTPStatus.NO_CONTENT:
            headers += [(b"Content-Type", content_type),
                        (b"Content-Length", str(len(body)).encode())]
        if close:
            headers.append((b"Connection", b"close"))
        headers += extra or []
        conn = self.conn
        data = conn.send(h11.Response(status_code=status, headers=headers,
                                      reason=HTTPStatus(status).phrase.encode()))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        self.writer.write(data)

    def _refuse(self, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
                ) -> bool:
        self._send(status, text.encode() + b"\n", b"text/plain; charset=utf-8", extra, close=True)
        return False

    async def run(self) -> None:
        server = self.server
        try:
            while True:
                try:
                    event = await self._event(server.read_timeout)
                except h11.RemoteProtocolError as exc:
                    with contextlib.suppress(h11.LocalProtocolError):
                        self._refuse(exc.error_status_hint, "malformed HTTP request")
                    return
                if not isinstance(event, h11.Request):
                    return
                try:
                    if not await self._answer(event):
                        return
                except h11.RemoteProtocolError:  # e.g. the client went away mid-body
                    return
                if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                    return
                self.conn.start_next_cycle()
                self.began = None
        except (OSError, h11.LocalProtocolError):
            return  # the client reset the connection, or cannot be answered any more
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                await self.writer.drain()
            self.writer.close()

    async def _answer(self, request: h11.Request) -> bool:  # noqa: PLR0911 - one per refusal
        """Serve one request; whether the connection stays open."""
        server = self.server
        headers = {name.lower(): value for name, value in request.headers}
        target = request.target.decode("latin-1")
        monitor = server.monitor  # GET of the status routes: berrymq_jsonrpc.monitor
        if monitor is not None and request.method == b"GET":
            answer = monitor.respond("GET", target, {k.decode("latin-1"): v.decode("latin-1")
                                                     for k, v in headers.items()})
            if answer is not None:
                status, head, body = answer
                extra = [(k.encode(), v.encode()) for k, v in head.items() if k != "Content-Type"]
                # a refusal, or a GET that came with a body we did not read: close
                close = status >= 400 or headers.get(b"content-length", b"0") != b"0"
                self._send(status, body, head["Content-Type"].encode(), extra, close=close)
                return not close
        if request.method != b"POST":
            return self._refuse(405, "berryMQ answers POST (and GET of /, /status, /metrics, "
                                "/network)", [(b"Allow", b"GET, POST")])
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
        if b"transfer-encoding" in headers:
            return self._refuse(411, "send a Content-Length, not chunks")
        if b"content-length" not in headers:
            return self._refuse(411, "a valid Content-Length is required")
        length = int(headers[b"content-length"])  # h11 checked it is a number
        if length > server.max_size:
            error = error_object(p.TOO_LARGE, p.APPLICATION_ERRORS[p.TOO_LARGE], None,
                                 {"limit": server.max_size, "setting": "max_size"})
            self._send(413, dumps(error).encode(), close=True)
            if not self.conn.they_are_waiting_for_100_continue:
                await self._discard(length)
            return False
        if self.conn.they_are_waiting_for_100_continue:
            self.writer.write(self.conn.send(h11.InformationalResponse(
                status_code=100, headers=[], reason=b"Continue")))
        chunks = []
        while True:
            event = await self._event(server.read_timeout)
            if isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False  # the client went away mid-body
        body = b"".join(chunks)
        reply = await server.dispatch(body)
        server.service.stats.exchanged(len(body), 0 if reply is None else len(reply))
        if reply is None:
            self._send(204)
        else:
            self._send(200, reply)
        return True

    async def _discard(self, length: int) -> None:
        # Read a small part of the body we refused (at most _DISCARD bytes, for at most
        # a second in all), so that closing the socket does not reset the connection
        # before the client has read the answer; the rest is never read.
        loop = asyncio.get_running_loop()
        left = min(length, _DISCARD)
        deadline = loop.time() + 1.0
        with contextlib.suppress(TimeoutError, OSError):
            while left > 0:
                chunk = await asyncio.wait_for(self.reader.read(min(left, _RECV)),
                                               max(0.0, deadline - loop.time()))
                if not chunk:
                    break
                left -= len(chunk)


class _Server:
    """A listening socket on the loop and the connections it accepted."""

    def __init__(self, service: Service, max_size: int, read_timeout: float,
                 admission: Admission) -> None:
        self.service = service
        self.admission = admission
        self.max_size = max_size
        self.read_timeout = read_timeout
        self.connections: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.monitor: Monitor | None = None  # answers GET /status, /metrics, / (set by _serve)

    async def start(self, host: str, port: int) -> int:
        family, bind_host = bind_family(host)
        self.server = await asyncio.start_server(
            self._accept, bind_host, port, family=family, reuse_address=True, backlog=1024)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = writer.get_extra_info("peername")[0]
        refusal = self.admission.admit(host)  # max_connections(_per_client)
        if refusal is not None:
            body = dumps(refusal).encode()
            await Admission.turn_away(reader, writer, (
                "HTTP/1.1 503 Service Unavailable\r\nServer: berryMQ\r\n"
                "Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            return
        self.connections.add(writer)
        try:
            await _ServerConnection(self, reader, writer).run()
        except asyncio.CancelledError:
            pass  # the loop is stopping (asyncio 3.11 would print a cancelled handler)
        finally:
            self.connections.discard(writer)
            self.admission.release(host)

    async def dispatch(self, body: bytes) -> bytes | None:
        """The answer to one body: on the delivery lane, or a WAITS thread if it may wait."""
        service = self.service
        request, slow = _reply_to(service, body)
        if request is _PARSE_ERROR:
            return service.dispatcher.parse_error()
        if slow:
            return await service.answer_waiting(request)
        lane = io_loop.lane
        if service.answers_at_once(request) and lane.has_room(len(body)):
            # a send_message nothing can refuse: answered here, delivered on the lane
            reply, handed = service.answer_at_once(request, None)
            for work in handed:
                await lane.put(work, len(body))  # room was checked: at once
            return reply
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes | None] = loop.create_future()
        await lane.put(functools.partial(_answer_on_lane, service, request, done),
                               len(body))
        return await done

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.connections):
            writer.close()


def _answer_on_lane(service: Service, request: Any, done: asyncio.Future[bytes | None]) -> None:
    try:
        reply = service.handle_parsed(request, None)
    except Exception:
        logger.exception("answering an HTTP request failed")
        reply = dumps(error_object(p.INTERNAL_ERROR, "Internal error")).encode()
    io_loop.call_soon(_settle, done, reply)


def _settle(done: asyncio.Future[bytes | None], reply: bytes | None) -> None:
    if not done.done():
        done.set_result(reply)


def _may_start_http(data: bytes) -> bool:
    """Whether ``data``, the first bytes of an answer, may begin an HTTP/1.x status line."""
    return data.lstrip(b"\r\n")[:5] in (b"HTTP/", b"HTTP/"[:len(data.lstrip(b"\r\n"))])


class _Stale(Exception):
    """A reused keep-alive connection turned out closed before any answer came."""


class _ClientConnection:
    """One keep-alive HTTP/1.1 connection to the peer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host_header: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT)
        self.host_header = host_header
        self.since = time.monotonic()

    async def roundtrip(self, body: bytes, reused: bool) -> tuple[int, bytes, bytes, bool]:
        """Send one POST; return (status, content type, body, keep-alive)."""
        conn = self.conn
        self.writer.write(
            conn.send(h11.Request(method=b"POST", target=p.HTTP_PATH.encode(), headers=[
                (b"Host", self.host_header), (b"Content-Type", b"application/json"),
                (b"Content-Length", str(len(body)).encode())]))
            + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        status, ctype, chunks = 0, b"", []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.reader.read(_RECV)
                except OSError:
                    data = b""
                if not data and reused and status == 0:
                    raise _Stale()
                if status == 0 and conn.their_state is h11.SEND_RESPONSE and data \
                        and not _may_start_http(data):
                    # e.g. a berryMQ TCP port answering with JSON lines: h11 would wait
                    # for a header block that never comes
                    raise h11.RemoteProtocolError("the server does not speak HTTP", 502)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                ctype = dict((k.lower(), v) for k, v in event.headers).get(b"content-type", b"")
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                if reused and status == 0:
                    raise _Stale()
                raise ConnectionResetError("the server closed the connection without an answer")
        keep = conn.our_state is h11.DONE and conn.their_state is h11.DONE
        if keep:
            conn.start_next_cycle()
        return status, ctype, b"".join(chunks), keep

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.close()


class HttpChannel(Channel):
    """Requests to one peer over keep-alive HTTP connections (one per concurrent request).

    A pooled connection idle for long may have been closed by the server; a request that
    finds its reused connection closed before any answer is sent once more on a new one.
    """

    def __init__(self, url: str, *, secret: str | None, max_size: int, timeout: float,
                 idle: float) -> None:
        super().__init__(url, secret=secret, max_size=max_size, timeout=timeout)
        self.host, self.port = split_url(url, "http")
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = f"{shown}:{self.port}".encode()
        self.idle = idle
        self._pool: list[_ClientConnection] = []
        self._busy: set[_ClientConnection] = set()

    def _take(self) -> _ClientConnection | None:
        if self.closed:
            raise ConnectionClosed(f"the channel to {self.url} is closed")
        now = time.monotonic()
        while self._pool:
            conn = self._pool.pop()
            if now - conn.since < self.idle and not conn.writer.is_closing():
                return conn
            conn.close()
        return None

    async def _roundtrip(self, body: bytes) -> tuple[int, bytes, bytes]:
        for attempt in (0, 1):
            conn = self._take()
            reused = conn is not None
            if conn is None:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                conn = _ClientConnection(reader, writer, self.host_header)
            self._busy.add(conn)
            keep = False
            try:
                status, ctype, data, keep = await conn.roundtrip(body, reused)
                return status, ctype, data
            except _Stale:
                if attempt == 0:
                    continue  # the server had closed this idle connection
                raise ConnectionClosed(f"{self.url} closed the connection") from None
            finally:
                self._busy.discard(conn)
                if keep and not self.closed:
                    conn.since = time.monotonic()
                    self._pool.append(conn)
                else:
                    conn.close()
        raise AssertionError("unreachable")

    async def exchange(self, text: str, request_id: int, timeout: float) -> Any:
        try:
            status, ctype, data = await asyncio.wait_for(self._roundtrip(text.encode()), timeout)
        except TimeoutError:
            raise TransportError(f"{self.url} did not answer within {timeout:g}s") from None
        except (OSError, h11.ProtocolError) as exc:
            if self.closed:
                raise ConnectionClosed(f"the channel to {self.url} is closed") from None
            raise ConnectionClosed(f"cannot reach {self.url}: {exc}") from None
        if not ctype.startswith(b"application/json"):
            raise TransportError(f"{self.url} answered HTTP {status} without JSON: {data[:200]!r}")
        try:
            return loads(data)
        except ParseError as exc:
            raise TransportError(f"{self.url} answered with malformed JSON: {exc}") from None

    async def alive(self) -> bool:
        """Whether the peer's server still accepts a connection: refused or unreachable
        means gone; a slow answer is not taken as death (the ttl or a send decides)."""
        if self.closed:
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                               self.timeout)
        except TimeoutError:
            return True
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def aclose(self) -> None:
        self.closed = True
        pool, self._pool = self._pool, []
        for conn in [*pool, *self._busy]:  # also wakes a caller waiting for an answer
            conn.close()


class HttpTransport(RemoteTransport):
    """JSON-RPC over HTTP: ``http://host:port`` and ``(host, port)`` tuples."""

    scheme = "http"
    plugin = PLUGIN

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)

    def _serve(self, host: str, port: int) -> tuple[Any, int]:
        server = _Server(self.service, self.max_size, self.read_timeout, self.admission)
        server.monitor = Monitor(self.bus, host=host, secret=self.secret, names=self.names)
        return server, io_loop.run(server.start(host, port), self.timeout)

    def _stop(self, server: Any) -> None:
        with contextlib.suppress(TimeoutError, RuntimeError):
            io_loop.run(server.stop(), self.timeout)

    def _open_channel(self, url: str) -> Channel:
        # keep-alive connections are reused while idle for less than half the server's
        # read timeout (the default one: the peer's own setting is not known here)
        return HttpChannel(url, secret=self.secret, max_size=self.max_size,
                           timeout=self.timeout, idle=self.read_timeout / 2)

    def _own_address(self) -> str | None:
        if not self.urls:
            raise ConnectionClosed(
                "interconnect over HTTP needs this node's own server, which the peer calls "
                "back: call berrymq.init_connection(...) with an http address first"
            )
        return self.urls[0]


@hookimpl
def berrymq_declare_settings(schema: SettingsSchema) -> None:
    declare_settings(schema, PLUGIN)


@hookimpl
def berrymq_register_transports(registry: TransportRegistry) -> None:
    registry.add("http", HttpTransport, plugin=PLUGIN)


@hookimpl
def berrymq_register_commands(commands: Commands) -> None:
    add_serve_option(commands, "http", 8000)

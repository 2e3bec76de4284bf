"""The ``jsonrpc-http`` plugin: berryMQ's JSON-RPC protocol over HTTP/1.1.

Server: a thread per connection (so one stalled client holds only its own thread), every
socket read bounded by ``read_timeout``, keep-alive, ``POST`` to the paths of
:data:`berrymq_jsonrpc.dialect.HTTP_PATHS` for JSON-RPC, and GET of the node's status
routes (``/``, ``/status``, ``/metrics``, ``/network``), answered by
:class:`berrymq_jsonrpc.monitor.Monitor`. Client: a small pool
of keep-alive ``http.client`` connections per peer. Over HTTP a peer cannot answer on the
connection it was called on, so style 01 needs both nodes to serve: ``interconnect``
sends this node's server URL and the peer calls it back.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.cli import add_serve_option
from berrymq_jsonrpc.client import Channel
from berrymq_jsonrpc.dialect import HTTP_PATHS, MEDIA_TYPES, accepts_media_type, serves_path
from berrymq_jsonrpc.jsonrpc import ParseError, dumps, error_object, loads
from berrymq_jsonrpc.monitor import Monitor
from berrymq_jsonrpc.service import Service
from berrymq_jsonrpc.transport import (
    RemoteTransport,
    bind_family,
    declare_settings,
    run_server,
    split_url,
)

from berrymq.bus import Bus
from berrymq.cli import Commands
from berrymq.errors import ConnectionClosed, TransportError
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry

__all__ = ["PLUGIN", "HttpChannel", "HttpTransport"]

PLUGIN = "jsonrpc-http"
logger = logging.getLogger("berrymq.remote.http")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 made quick connects wait for a resend
    monitor: Monitor | None = None  # status: answers GET /status, /metrics, / (set by _serve)

    def __init__(self, address: tuple[str, int], service: Service, max_size: int,
                 read_timeout: float, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.service = service
        self.max_size = max_size
        self.read_timeout = read_timeout
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_all(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_MAX_LINE = 8192
_MAX_HEADERS = 100


class _Handler(socketserver.StreamRequestHandler):
    """A lean HTTP/1.1 server for one method on one path.

    ``http.server.BaseHTTPRequestHandler`` parses headers with the ``email`` package,
    which costs more than the whole JSON-RPC dispatch; this reads the request line and
    headers itself, with bounded lengths, and writes each answer in one ``send``.
    """

    server: _Server
    wbufsize = 0

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # type: ignore[misc]  # all reads and writes
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        try:
            while self._one():
                pass
        except OSError:  # a timeout (stalled or idle client) or a reset: close
            pass

    def _answer(self, status: HTTPStatus, body: bytes = b"", *, keep: bool = True,
                content_type: str = "application/json", extra: str = "") -> bool:
        head = f"HTTP/1.1 {status.value} {status.phrase}\r\nServer: berryMQ\r\n"
        if status != HTTPStatus.NO_CONTENT:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        if not keep:
            head += "Connection: close\r\n"
        self.wfile.write((head + extra + "\r\n").encode("latin-1") + body)
        return keep

    def _refuse(self, status: HTTPStatus, text: str, extra: str = "") -> bool:
        return self._answer(status, text.encode() + b"\n", keep=False,
                            content_type="text/plain; charset=utf-8", extra=extra)

    def _one(self) -> bool:  # noqa: PLR0911 - one return per refusal
        """Serve one request; whether the connection stays open."""
        readline = self.rfile.readline
        line = readline(_MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerated before a request line (RFC 9112)
            line = readline(_MAX_LINE + 1)
        if not line:
            return False
        if len(line) > _MAX_LINE:
            return self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return self._refuse(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        while True:
            raw = readline(_MAX_LINE + 1)
            if not raw:
                return False
            if raw in (b"\r\n", b"\n"):
                break
            if len(raw) > _MAX_LINE or len(headers) >= _MAX_HEADERS:
                return self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                    "too many or too long headers")
            name, colon, value = raw.decode("latin-1").partition(":")
            if not colon:
                return self._refuse(HTTPStatus.BAD_REQUEST, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        monitor = self.server.monitor  # status: GET routes answered by berrymq_jsonrpc.monitor
        answer = None if monitor is None else monitor.respond(method, target, headers)
        if answer is not None:
            status, head, body = answer
            extra = "".join(f"{k}: {v}\r\n" for k, v in head.items() if k != "Content-Type")
            return self._answer(HTTPStatus(status), body, keep=keep,
                                content_type=head["Content-Type"], extra=extra)
        if method != "POST":
            return self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "berryMQ answers POST (and GET "
                                "of /, /status, /metrics, /network)",
                                extra="Allow: GET, POST\r\n")
        # paths and media types of JSON-RPC 1.0 clients too (issue 11): dialect.py
        if not serves_path(target):
            return self._refuse(HTTPStatus.NOT_FOUND, "berryMQ answers JSON-RPC at POST "
                                + ", ".join(HTTP_PATHS))
        if not accepts_media_type(headers.get("content-type"), headers.get("origin")):
            return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                "send JSON-RPC with Content-Type: application/json "
                                "(or " + ", ".join(sorted(MEDIA_TYPES - {"application/json"}))
                                + ", or none from a client that is not a web page)")
        if "transfer-encoding" in headers:
            return self._refuse(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks")
        try:
            length = int(headers.get("content-length", ""))
            if length < 0:
                raise ValueError
        except ValueError:
            return self._refuse(HTTPStatus.LENGTH_REQUIRED, "a valid Content-Length is required")
        if length > self.server.max_size:
            error = error_object(p.TOO_LARGE, p.APPLICATION_ERRORS[p.TOO_LARGE],
                                 None, {"limit": self.server.max_size})
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, dumps(error).encode(),
                         keep=False)
            if "100-continue" not in headers.get("expect", "").lower():
                self._discard(length)
            return False
        if "100-continue" in headers.get("expect", "").lower():
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.rfile.read(length)
        if len(body) < length:
            return False  # the client went away mid-body
        reply = self.server.service.handle(body, None)
        if reply is None:
            return self._answer(HTTPStatus.NO_CONTENT, keep=keep)
        return self._answer(HTTPStatus.OK, reply, keep=keep)

    def _discard(self, length: int) -> None:
        # Read (a bounded part of) the body we refused, so that closing the socket does
        # not reset the connection before the client has read the answer.
        left = min(length, 64 * self.server.max_size)
        with contextlib.suppress(OSError):
            self.connection.settimeout(1.0)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)


class _Stale(Exception):
    """A reused keep-alive connection turned out closed before any answer came."""


class _Connection:
    """One keep-alive HTTP/1.1 connection to the peer, with a lean request/response cycle
    (``http.client`` parses headers with the ``email`` package, slower than the rest of
    a call)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.head = (f"POST {p.HTTP_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.since = time.monotonic()

    def roundtrip(self, body: bytes, timeout: float, reused: bool
                  ) -> tuple[int, str, bytes, bool]:
        """Send one POST; return (status, content type, body, keep-alive)."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status_line = self.rfile.readline(_MAX_LINE + 1)
        except (BrokenPipeError, ConnectionResetError):
            if reused:
                raise _Stale() from None
            raise
        if not status_line:
            if reused:
                raise _Stale()
            raise ConnectionResetError("the server closed the connection without an answer")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise http.client.BadStatusLine(status_line.decode("latin-1"))
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n"):
                break
            if not raw or len(raw) > _MAX_LINE or len(headers) >= _MAX_HEADERS:
                raise http.client.HTTPException("malformed answer headers")
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status < 200:  # we never send "Expect: 100-continue"
            raise http.client.HTTPException(f"unexpected interim answer {status}")
        keep = "close" not in headers.get("connection", "").lower()
        if "content-length" in headers:
            data = self.rfile.read(int(headers["content-length"]))
        elif status in (204, 304):
            data = b""
        else:
            data = self.rfile.read()
            keep = False
        return status, headers.get("content-type", ""), data, keep

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class HttpChannel(Channel):
    """Requests to one peer over keep-alive HTTP connections (one per concurrent caller).

    A pooled connection idle for long may have been closed by the server; a request that
    finds its reused connection closed before any answer is sent once more on a new one.
    """

    def __init__(self, url: str, *, secret: str | None, max_size: int, timeout: float,
                 idle: float) -> None:
        super().__init__(url, secret=secret, max_size=max_size, timeout=timeout)
        self.host, self.port = split_url(url, "http")
        self.idle = idle
        self._pool: list[_Connection] = []
        self._lock = threading.Lock()
        self._busy: set[_Connection] = set()

    def _take(self) -> tuple[_Connection | None, bool]:
        now = time.monotonic()
        with self._lock:
            if self.closed:
                raise ConnectionClosed(f"the channel to {self.url} is closed")
            while self._pool:
                conn = self._pool.pop()
                if now - conn.since < self.idle:
                    self._busy.add(conn)
                    return conn, True
                conn.close()
        return None, False

    def _give_back(self, conn: _Connection, keep: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            if keep and not self.closed:
                conn.since = time.monotonic()
                self._pool.append(conn)
                return
        conn.close()

    def exchange(self, text: str, request_id: int, timeout: float) -> Any:
        body = text.encode()
        for attempt in (0, 1):
            conn, reused = self._take()
            keep = False
            try:
                if conn is None:
                    conn = _Connection(self.host, self.port, timeout)
                    with self._lock:
                        self._busy.add(conn)
                status, ctype, data, keep = conn.roundtrip(body, timeout, reused)
            except _Stale:
                if attempt == 0:
                    continue  # the server had closed this idle connection
                raise ConnectionClosed(f"{self.url} closed the connection") from None
            except TimeoutError:
                raise TransportError(f"{self.url} did not answer within {timeout:g}s") from None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if self.closed:
                    raise ConnectionClosed(f"the channel to {self.url} is closed") from None
                raise ConnectionClosed(f"cannot reach {self.url}: {exc}") from None
            finally:
                if conn is not None:
                    self._give_back(conn, keep)
            if not ctype.startswith("application/json"):
                raise TransportError(f"{self.url} answered HTTP {status} without JSON: "
                                     f"{data[:200]!r}")
            try:
                return loads(data)
            except ParseError as exc:
                raise TransportError(f"{self.url} answered with malformed JSON: {exc}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self.closed = True
            pool, self._pool = self._pool, []
            busy = list(self._busy)
        for conn in pool:
            conn.close()
        for conn in busy:  # wake a caller waiting for an answer
            conn.shutdown()


class HttpTransport(RemoteTransport):
    """JSON-RPC over HTTP: ``http://host:port`` and ``(host, port)`` tuples."""

    scheme = "http"
    plugin = PLUGIN

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)

    def _serve(self, host: str, port: int) -> tuple[Any, int]:
        family, bind_host = bind_family(host)
        server = _Server((bind_host, port), self.service, self.max_size, self.read_timeout,
                         family)
        server.monitor = Monitor(self.bus, host=host, secret=self.secret,  # status
                                 names=self.names)
        return run_server(server, "berrymq-http")

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

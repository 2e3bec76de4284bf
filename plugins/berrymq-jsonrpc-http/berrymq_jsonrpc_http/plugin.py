"""The ``jsonrpc-http`` plugin: berryMQ's JSON-RPC protocol over HTTP/1.1.

Server: a thread per connection (so one stalled client holds only its own thread), every
socket read bounded by ``read_timeout``, keep-alive, ``POST /`` only. Client: a small pool
of keep-alive ``http.client`` connections per peer. Over HTTP a peer cannot answer on the
connection it was called on, so style 01 needs both nodes to serve: ``interconnect``
sends this node's server URL and the peer calls it back.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from berrymq.bus import Bus
from berrymq.errors import ConnectionClosed, TransportError
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry
from berrymq.remote import protocol as p
from berrymq.remote.client import Channel
from berrymq.remote.jsonrpc import ParseError, dumps, error_object, loads
from berrymq.remote.service import Service
from berrymq.remote.transport import RemoteTransport, declare_settings, split_url

__all__ = ["PLUGIN", "HttpChannel", "HttpTransport"]

PLUGIN = "jsonrpc-http"
logger = logging.getLogger("berrymq.remote.http")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "berryMQ"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # type: ignore[misc]  # every read and write
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _answer(self, status: HTTPStatus, body: bytes = b"", *, close: bool = False,
                content_type: str = "application/json", extra: str = "") -> None:
        head = f"HTTP/1.1 {status.value} {status.phrase}\r\nServer: berryMQ\r\n"
        if body or status != HTTPStatus.NO_CONTENT:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
            self.close_connection = True
        self.wfile.write((head + extra + "\r\n").encode("latin-1") + body)

    def _refuse(self, status: HTTPStatus, text: str, extra: str = "") -> None:
        self._answer(status, text.encode() + b"\n", close=True,
                     content_type="text/plain; charset=utf-8", extra=extra)

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != p.HTTP_PATH:
            self._refuse(HTTPStatus.NOT_FOUND, f"berryMQ answers JSON-RPC at POST {p.HTTP_PATH}")
            return
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                         "send JSON-RPC with Content-Type: application/json")
            return
        if self.headers.get("Transfer-Encoding"):
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
            if length < 0:
                raise ValueError
        except ValueError:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "a valid Content-Length is required")
            return
        if length > self.server.max_size:
            error = error_object(p.TOO_LARGE, p.APPLICATION_ERRORS[p.TOO_LARGE],
                                 None, {"limit": self.server.max_size})
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, dumps(error).encode(), close=True)
            self._discard(length)
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True  # the client went away mid-body
            return
        reply = self.server.service.handle(body, None)
        if reply is None:
            self._answer(HTTPStatus.NO_CONTENT)
        else:
            self._answer(HTTPStatus.OK, reply)

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

    def _not_post(self) -> None:
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "berryMQ answers POST only",
                     extra="Allow: POST\r\n")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_post

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


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
        self._pool: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self._busy: set[http.client.HTTPConnection] = set()

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self._lock:
            if self.closed:
                raise ConnectionClosed(f"the channel to {self.url} is closed")
            while self._pool:
                conn, since = self._pool.pop()
                if now - since < self.idle:
                    self._busy.add(conn)
                    return conn, True
                conn.close()
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._busy.add(conn)
            return conn, False

    def _give_back(self, conn: http.client.HTTPConnection, keep: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            if keep and not self.closed:
                self._pool.append((conn, time.monotonic()))
                return
        conn.close()

    def exchange(self, text: str, request_id: int, timeout: float) -> Any:
        body = text.encode()
        for attempt in (0, 1):
            conn, reused = self._take()
            keep = False
            try:
                conn.timeout = timeout
                if conn.sock is None:
                    conn.connect()
                    sock: socket.socket = conn.sock  # type: ignore[assignment]
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sock.settimeout(timeout)
                conn.request("POST", p.HTTP_PATH, body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                keep = not response.will_close
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                if reused and attempt == 0:
                    continue  # the server had closed this idle connection
                raise ConnectionClosed(f"{self.url} closed the connection: {exc}") from None
            except TimeoutError:
                raise TransportError(f"{self.url} did not answer within {timeout:g}s") from None
            except (OSError, http.client.HTTPException) as exc:
                if self.closed:
                    raise ConnectionClosed(f"the channel to {self.url} is closed") from None
                raise ConnectionClosed(f"cannot reach {self.url}: {exc}") from None
            finally:
                self._give_back(conn, keep)
            ctype = response.getheader("Content-Type", "")
            if not ctype.startswith("application/json"):
                raise TransportError(f"{self.url} answered HTTP {response.status} without JSON: "
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
        for conn, _ in pool:
            conn.close()
        for conn in busy:  # wake a caller waiting for an answer
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class HttpTransport(RemoteTransport):
    """JSON-RPC over HTTP: ``http://host:port`` and ``(host, port)`` tuples."""

    scheme = "http"
    plugin = PLUGIN

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)

    def _serve(self, host: str, port: int) -> tuple[Any, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        bind_host = "127.0.0.1" if host == "localhost" else host
        server = _Server((bind_host, port), self.service, self.max_size, self.read_timeout,
                         family)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                  name=f"berrymq-http-{server.server_address[1]}", daemon=True)
        thread.start()
        return (server, thread), int(server.server_address[1])

    def _stop(self, handle: Any) -> None:
        server, thread = handle
        server.shutdown()
        server.server_close()
        server.close_all()
        thread.join(5)

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

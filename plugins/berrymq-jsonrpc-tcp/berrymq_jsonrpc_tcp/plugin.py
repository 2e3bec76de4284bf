"""The ``jsonrpc-tcp`` plugin: berryMQ's JSON-RPC protocol over a TCP stream.

Every request and every response is one line of UTF-8 JSON. Both ends of a connection
are alike (:class:`LineChannel`): each can send requests and answer the other's, which
is how one connection carries both directions of an interconnection. Per connection a
reader thread splits lines and hands replies to their waiting callers, and a dispatch
thread answers requests in order (``ask`` and blocking ``get`` run on threads of their
own, so they never hold up the connection).

Server limits: a line over ``max_size`` is answered with ``TOO_LARGE`` and the
connection is closed; a connection that stalls in the middle of a line for
``read_timeout`` seconds, or stays idle that long without an open session, is closed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import socketserver
import threading
from collections.abc import Mapping
from typing import Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.cli import add_serve_option
from berrymq_jsonrpc.client import Channel
from berrymq_jsonrpc.jsonrpc import ParseError, dumps, error_object, loads
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
from berrymq.errors import ConnectionClosed, MessageTooLarge, TransportError
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry

__all__ = ["PLUGIN", "LineChannel", "TcpTransport"]

PLUGIN = "jsonrpc-tcp"
logger = logging.getLogger("berrymq.remote.tcp")

#: Methods that may wait: answered on a thread of their own.
_SLOW = frozenset({p.METHOD_ASK, p.METHOD_GET})
#: At most this many such waits per connection; more are answered in order.
_MAX_SLOW = 16
_RECV = 1 << 18
_NL = b"\n"


class _Slot:
    __slots__ = ("error", "event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Any = None
        self.error: BaseException | None = None


def _is_response(obj: Any) -> bool:
    return type(obj) is dict and "method" not in obj and ("result" in obj or "error" in obj)


class LineChannel(Channel):
    """One TCP connection, either end: sends requests, answers the peer's requests.

    :param service: answers the requests the peer sends on this connection.
    :param server_side: the accepting end, which enforces ``read_timeout`` and closes
        idle connections without sessions.
    :param read_limit: the longest line accepted, in bytes.
    """

    def __init__(self, sock: socket.socket, url: str, *, service: Service, secret: str | None,
                 max_size: int, timeout: float, read_limit: int, server_side: bool) -> None:
        super().__init__(url, secret=secret, max_size=max_size, timeout=timeout)
        self.sock = sock
        self.service = service
        self.read_limit = read_limit
        self.server_side = server_side
        self._pending: dict[Any, _Slot] = {}
        self._wlock = threading.Lock()
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slow = threading.BoundedSemaphore(_MAX_SLOW)
        self._null_error: dict[str, Any] | None = None
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                            name="berrymq-tcp-dispatch")
        self._dispatcher.start()

    # -- writing ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write whole lines; a failure closes the channel and raises ConnectionClosed."""
        if self.server_side:  # stats: bytes the node's servers wrote
            self.service.stats.exchanged(0, len(data))
        try:
            with self._wlock:
                self.sock.sendall(data)
        except OSError as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionClosed(f"{self.url} stopped reading (write timed out)") from None
            raise ConnectionClosed(f"{self.url}: {exc}") from None

    def exchange(self, text: str, request_id: int, timeout: float) -> Any:
        if self.closed:
            raise ConnectionClosed(f"the connection to {self.url} is closed")
        slot = _Slot()
        self._pending[request_id] = slot
        try:
            self.write(text.encode() + _NL)
        except ConnectionClosed:
            self._pending.pop(request_id, None)
            raise
        if not slot.event.wait(timeout):
            self._pending.pop(request_id, None)
            raise TransportError(f"{self.url} did not answer within {timeout:g}s")
        if slot.error is not None:
            raise slot.error
        return slot.reply

    # -- reading ------------------------------------------------------------------------

    def start(self) -> None:
        """Read on a thread of its own (the connecting end)."""
        threading.Thread(target=self.run, daemon=True, name="berrymq-tcp-reader").start()

    def run(self) -> None:  # noqa: PLR0911 - each return ends the connection
        """Read lines until the connection ends, then close the sessions opened on it."""
        sock = self.sock
        limit = self.read_limit
        chunks: list[bytes] = []
        size = 0
        try:
            while not self.closed:
                try:
                    data = sock.recv(_RECV)
                except TimeoutError:
                    if not self.server_side:
                        continue
                    if chunks:
                        logger.info("%s stalled in the middle of a request; closed", self.url)
                        return
                    if not self._in_use():
                        logger.debug("%s idle without a session; closed", self.url)
                        return
                    continue
                except OSError:
                    return
                if not data:
                    return
                if _NL not in data:
                    chunks.append(data)
                    size += len(data)
                    if size > limit:
                        self._too_large()
                        return
                    continue
                if chunks:
                    data = b"".join(chunks) + data
                    chunks = []
                lines = data.split(_NL)
                rest = lines.pop()
                for line in lines:
                    if len(line) > limit:
                        self._too_large()
                        return
                    if line.strip():
                        self._on_line(line)
                size = len(rest)
                if rest:
                    chunks.append(rest)
                    if size > limit:
                        self._too_large()
                        return
        finally:
            self.close()

    def _in_use(self) -> bool:
        return bool(self._pending) or any(
            s.context is self for s in list(self.service.sessions.values())
        )

    def _too_large(self) -> None:
        logger.warning("%s sent a line over %d bytes; closed", self.url, self.read_limit)
        error = error_object(p.TOO_LARGE, p.APPLICATION_ERRORS[p.TOO_LARGE], None,
                             {"limit": self.read_limit})
        with contextlib.suppress(ConnectionClosed):
            self.write(dumps(error).encode() + _NL)

    def _on_line(self, line: bytes) -> None:
        if self.server_side:  # stats: bytes the node's servers read
            self.service.stats.exchanged(len(line), 0)
        try:
            obj = loads(line)
        except ParseError:
            self._requests.put(_PARSE_ERROR)  # answered in order with a parse error
            return
        if _is_response(obj):
            self._response(obj)
        elif type(obj) is list and obj and all(_is_response(member) for member in obj):
            for member in obj:
                self._response(member)
        elif (type(obj) is dict and type(obj.get("method")) is str
              and obj["method"] in _SLOW and self._slow.acquire(False)):
            threading.Thread(target=self._answer_slow, args=(obj,), daemon=True,
                             name="berrymq-tcp-slow").start()
        else:
            self._requests.put(obj)

    def _response(self, reply: dict[str, Any]) -> None:
        key = reply.get("id")
        slot = self._pending.pop(key, None) if type(key) in (int, str) else None
        if slot is None:
            if key is None and "error" in reply:
                self._null_error = reply["error"]
                logger.warning("%s answered an error without id: %s", self.url, reply["error"])
            return
        slot.reply = reply
        slot.event.set()

    def _answer(self, request: Any) -> None:
        if request is _PARSE_ERROR:  # not None: the JSON text null is an Invalid Request
            reply: bytes | None = self.service.dispatcher.parse_error()
        else:
            reply = self.service.handle_parsed(request, self)
        if reply is not None and not self.closed:
            with contextlib.suppress(ConnectionClosed):
                self.write(reply + _NL)

    def _answer_slow(self, request: Any) -> None:
        try:
            self._answer(request)
        finally:
            self._slow.release()

    def _dispatch(self) -> None:
        get = self._requests.get
        while True:
            request = get()
            if request is _STOP:
                return
            try:
                self._answer(request)
            except Exception:
                logger.exception("answering a request from %s failed", self.url)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        self._requests.put(_STOP)
        null_error = self._null_error
        for key in list(self._pending):
            slot = self._pending.pop(key, None)
            if slot is None:
                continue
            if null_error is not None and null_error.get("code") == p.TOO_LARGE:
                slot.error = MessageTooLarge(f"{self.url} refused a request over its size "
                                             f"limit ({null_error.get('data')})")
            else:
                slot.error = ConnectionClosed(f"the connection to {self.url} closed")
            slot.event.set()
        self.service.close_sessions_of(self, "connection closed")


_STOP = object()
_PARSE_ERROR = object()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 made quick connects wait for a resend

    def __init__(self, address: tuple[str, int], transport: TcpTransport,
                 family: socket.AddressFamily) -> None:
        self.address_family = family
        self.transport = transport
        self.channels: set[LineChannel] = set()
        self.channels_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_all(self) -> None:
        with self.channels_lock:
            channels = list(self.channels)
        for channel in channels:
            channel.close()


class _Handler(socketserver.BaseRequestHandler):
    server: _Server
    request: socket.socket

    def handle(self) -> None:
        transport = self.server.transport
        sock = self.request
        sock.settimeout(transport.read_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = self.client_address[:2]
        channel = LineChannel(
            sock, f"tcp://{host}:{port}", service=transport.service, secret=transport.secret,
            max_size=transport.max_size, timeout=transport.timeout,
            read_limit=transport.max_size, server_side=True,
        )
        with self.server.channels_lock:
            self.server.channels.add(channel)
        try:
            channel.run()
        finally:
            with self.server.channels_lock:
                self.server.channels.discard(channel)


class TcpTransport(RemoteTransport):
    """JSON-RPC over TCP, one JSON text per line: ``tcp://host:port``."""

    scheme = "tcp"
    plugin = PLUGIN

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)

    def _serve(self, host: str, port: int) -> tuple[Any, int]:
        family, bind_host = bind_family(host)
        server = _Server((bind_host, port), self, family)
        return run_server(server, "berrymq-tcp")

    def _open_channel(self, url: str) -> Channel:
        host, port = split_url(url, "tcp")
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except TimeoutError:
            raise ConnectionClosed(f"cannot reach {url}: no answer in {self.timeout:g}s") from None
        except OSError as exc:
            raise ConnectionClosed(f"cannot reach {url}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        channel = LineChannel(sock, url, service=self.service, secret=self.secret,
                              max_size=self.max_size, timeout=self.timeout,
                              read_limit=4 * self.max_size, server_side=False)
        channel.start()
        return channel

    def _back_channel(self, context: Any) -> Channel | None:
        return context if isinstance(context, LineChannel) else None


@hookimpl
def berrymq_declare_settings(schema: SettingsSchema) -> None:
    declare_settings(schema, PLUGIN)


@hookimpl
def berrymq_register_transports(registry: TransportRegistry) -> None:
    registry.add("tcp", TcpTransport, plugin=PLUGIN)


@hookimpl
def berrymq_register_commands(commands: Commands) -> None:
    add_serve_option(commands, "tcp", 7000)

"""The ``jsonrpc-tcp`` plugin: berryMQ's JSON-RPC protocol over a TCP stream.

Every request and every response is one line of UTF-8 JSON. Both ends of a connection
are alike (:class:`LineChannel`): each can send requests and answer the other's, which
is how one connection carries both directions of an interconnection.

Everything runs on the process's I/O loop (asyncio streams), no thread per connection:
the loop reads, splits lines and hands replies to their waiting callers; the requests of
one read go to the delivery lane as one piece of work, answered in order there (``ask``
on a thread of :data:`~berrymq_jsonrpc.service.WAITS`, a blocking ``get`` awaits its queue
on the loop; at most 16 such waits per connection). While the lane is full the connection is not read, which
slows that sender and bounds what it can make the node hold.

Server limits: a line over ``max_size`` is answered with ``TOO_LARGE`` and the
connection is closed; a line not complete ``read_timeout`` seconds after its first byte
(a stall, or a slow drip: the deadline is for the whole line, not per read), or a
connection idle that long without an open session, is closed.
A client that half-closes after its requests gets every answer before the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from typing import Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.cli import add_serve_option
from berrymq_jsonrpc.client import Channel
from berrymq_jsonrpc.jsonrpc import ParseError, dumps, error_object, loads
from berrymq_jsonrpc.limits import Admission, BurstLog
from berrymq_jsonrpc.service import Service, may_wait
from berrymq_jsonrpc.transport import RemoteTransport, bind_family, declare_settings, split_url

from berrymq.bus import Bus
from berrymq.cli import Commands
from berrymq.errors import ConnectionClosed, MessageTooLarge, TransportError
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry
from berrymq.transports.ioloop import io_loop

__all__ = ["PLUGIN", "LineChannel", "TcpTransport"]

PLUGIN = "jsonrpc-tcp"
logger = logging.getLogger("berrymq.remote.tcp")

#: At most this many waiting requests (``ask``, blocking ``get``) per connection; the
#: connection is not read while that many wait.
_MAX_SLOW = 16
_RECV = 1 << 18
_NL = b"\n"
#: Errors without id from peers: one log line per burst, however many lines a client sends.
_odd_replies = BurstLog(logger)
#: Pause a writer of requests while this much is buffered for the peer.
_HIGH_WATER = 1 << 20


def _is_response(obj: Any) -> bool:
    return type(obj) is dict and "method" not in obj and ("result" in obj or "error" in obj)


class LineChannel(Channel):
    """One TCP connection, either end: sends requests, answers the peer's requests.

    :param service: answers the requests the peer sends on this connection.
    :param read_timeout: the accepting end's limit for a stalled line and for an idle
        connection without a session; None on the connecting end.
    :param read_limit: the longest line accepted, in bytes.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str, *,
                 service: Service, secret: str | None, max_size: int, timeout: float,
                 read_limit: int, read_timeout: float | None) -> None:
        super().__init__(url, secret=secret, max_size=max_size, timeout=timeout)
        self.reader = reader
        self.writer = writer
        self.service = service
        self.read_limit = read_limit
        self.read_timeout = read_timeout
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._answers: set[asyncio.Future[None]] = set()
        self._slow = asyncio.Semaphore(_MAX_SLOW)
        self._null_error: dict[str, Any] | None = None
        self._reading: asyncio.Task[None] | None = None

    # -- writing ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    async def exchange(self, text: str, request_id: int, timeout: float) -> Any:
        if self.closed:
            raise ConnectionClosed(f"the connection to {self.url} is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self.writer.write(text.encode() + _NL)
            if self.writer.transport.get_write_buffer_size() > _HIGH_WATER:
                await self.writer.drain()
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TransportError(f"{self.url} did not answer within {timeout:g}s") from None
        except (OSError, RuntimeError) as exc:
            await self.aclose()
            raise ConnectionClosed(f"{self.url}: {exc}") from None
        finally:
            self._pending.pop(request_id, None)

    # -- reading ------------------------------------------------------------------------

    def start(self) -> None:
        """Read on a task of its own (the connecting end; call on the loop)."""
        self._reading = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        """Read lines until the connection ends, answer what came, then close."""
        try:
            if await self._read():
                # the peer half-closed or we stopped reading: answer what it sent first
                while self._answers:
                    await asyncio.wait(list(self._answers))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            await self.aclose()

    async def _read(self) -> bool:  # noqa: PLR0911 - each return ends the connection
        """Read and dispatch; True at a clean end of input, False when cut off."""
        reader = self.reader
        limit = self.read_limit
        clock = asyncio.get_running_loop().time
        rest = b""
        began = 0.0  # when the line in `rest` began: it must end within read_timeout
        while not self.closed:
            wait = self.read_timeout
            if wait is not None and rest:
                wait = max(0.0, began + wait - clock())
            try:
                if wait is None:
                    data = await reader.read(_RECV)
                else:
                    data = await asyncio.wait_for(reader.read(_RECV), wait)
            except TimeoutError:
                if rest:
                    logger.info("%s stalled in the middle of a request; closed", self.url)
                    return False
                if not self._in_use():
                    logger.debug("%s idle without a session; closed", self.url)
                    return False
                continue
            if not data:  # the end of input also ends its last line
                return not rest.strip() or await self._lines([rest], len(rest))
            if _NL not in data:
                if not rest:
                    began = clock()
                rest += data
                if len(rest) > limit:
                    self._too_large()
                    return False
                continue
            lines = (rest + data).split(_NL)
            rest = lines.pop()
            began = clock()
            if not await self._lines(lines, len(data)):
                return False
            if len(rest) > limit:
                self._too_large()
                return False
        return False

    async def _lines(self, lines: list[bytes], size: int) -> bool:
        """Hand the responses to their callers and the requests to the lane, in order."""
        serving = self.read_timeout is not None  # the accepting end: the node's own counters
        if serving:
            self.service.stats.exchanged(size, 0)
        requests: list[Any] = []
        for line in lines:
            if len(line) > self.read_limit:
                self._too_large()
                return False
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except ParseError:
                requests.append(_PARSE_ERROR)  # answered in order with a parse error
                continue
            if _is_response(obj):
                self._response(obj)
            elif type(obj) is list and obj and all(_is_response(member) for member in obj):
                for member in obj:
                    self._response(member)
            elif may_wait(obj):
                await self._slow.acquire()
                self._track(asyncio.get_running_loop().create_task(self._answer_slow(obj)))
            else:
                requests.append(obj)
        if requests:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._track(done)
            await io_loop.lane.put(functools.partial(self._answer_all, requests, done), size)
        return True

    def _track(self, future: asyncio.Future[None]) -> None:
        self._answers.add(future)
        future.add_done_callback(self._answers.discard)

    def _in_use(self) -> bool:
        return bool(self._pending) or bool(self._answers) or any(
            s.context is self for s in list(self.service.sessions.values())
        )

    def _too_large(self) -> None:
        logger.warning("%s sent a line over %d bytes; closed", self.url, self.read_limit)
        error = error_object(p.TOO_LARGE, p.APPLICATION_ERRORS[p.TOO_LARGE], None,
                             {"limit": self.read_limit})
        self._write(dumps(error).encode() + _NL)

    def _response(self, reply: dict[str, Any]) -> None:
        key = reply.get("id")
        future = self._pending.pop(key, None) if type(key) in (int, str) else None
        if future is None:
            if key is None and "error" in reply:
                self._null_error = reply["error"]
                _odd_replies.warning("%s answered an error without id: %.200s", self.url,
                                     reply["error"])
            return
        if not future.done():
            future.set_result(reply)

    def _answer(self, request: Any) -> bytes | None:
        if request is _PARSE_ERROR:  # not None: the JSON text null is an Invalid Request
            return self.service.dispatcher.parse_error()
        return self.service.handle_parsed(request, self)

    def _answer_all(self, requests: list[Any], done: asyncio.Future[None]) -> None:
        """On the delivery lane: answer the requests of one read, write the answers."""
        replies = []
        try:
            for request in requests:
                reply = self._answer(request)
                if reply is not None:
                    replies.append(reply)
        except Exception:
            logger.exception("answering a request from %s failed", self.url)
        data = _NL.join(replies) + _NL if replies else b""
        if data and self.read_timeout is not None:
            self.service.stats.exchanged(0, len(data))
        io_loop.call_soon(self._written, data, done)

    def _written(self, data: bytes, done: asyncio.Future[None]) -> None:
        if data:
            self._write(data)
        if not done.done():
            done.set_result(None)

    async def _answer_slow(self, request: Any) -> None:
        try:
            reply = await self.service.answer_waiting(request, self)
        finally:
            self._slow.release()
        if reply is not None:
            self._write(reply + _NL)

    # -- closing ------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.close()
        null_error = self._null_error
        for key in list(self._pending):
            future = self._pending.pop(key, None)
            if future is None or future.done():
                continue
            if null_error is not None and null_error.get("code") == p.TOO_LARGE:
                future.set_exception(MessageTooLarge(
                    f"{self.url} refused a request over its size limit ({null_error.get('data')})"))
            else:
                future.set_exception(ConnectionClosed(f"the connection to {self.url} closed"))
        reading = self._reading
        if reading is not None and reading is not asyncio.current_task():
            reading.cancel()
        # closing sessions may flush their links: not on the loop
        self.service.close_sessions_of(self, "connection closed")


_PARSE_ERROR = object()


class _Server:
    """A listening socket on the loop and the connections it accepted."""

    def __init__(self, transport: TcpTransport) -> None:
        self.transport = transport
        self.channels: set[LineChannel] = set()
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        family, bind_host = bind_family(host)
        self.server = await asyncio.start_server(
            self._accept, bind_host, port, family=family, reuse_address=True, backlog=1024,
            limit=_RECV)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = self.transport
        host, port = writer.get_extra_info("peername")[:2]
        refusal = transport.admission.admit(host)  # max_connections(_per_client)
        if refusal is not None:
            await Admission.turn_away(reader, writer, dumps(refusal).encode() + _NL)
            return
        channel = LineChannel(
            reader, writer, f"tcp://{host}:{port}", service=transport.service,
            secret=transport.secret, max_size=transport.max_size, timeout=transport.timeout,
            read_limit=transport.max_size, read_timeout=transport.read_timeout,
        )
        self.channels.add(channel)
        try:
            await channel.run()
        except asyncio.CancelledError:
            pass  # the loop is stopping (asyncio 3.11 would print a cancelled handler)
        finally:
            self.channels.discard(channel)
            transport.admission.release(host)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for channel in list(self.channels):
            await channel.aclose()


class TcpTransport(RemoteTransport):
    """JSON-RPC over TCP, one JSON text per line: ``tcp://host:port``."""

    scheme = "tcp"
    plugin = PLUGIN

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)

    def _serve(self, host: str, port: int) -> tuple[Any, int]:
        server = _Server(self)
        return server, io_loop.run(server.start(host, port), self.timeout)

    def _stop(self, server: Any) -> None:
        with contextlib.suppress(TimeoutError, RuntimeError):
            io_loop.run(server.stop(), self.timeout)

    async def _connect(self, url: str) -> LineChannel:
        host, port = split_url(url, "tcp")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=_RECV), self.timeout)
        except TimeoutError:
            raise ConnectionClosed(f"cannot reach {url}: no answer in {self.timeout:g}s") from None
        except OSError as exc:
            raise ConnectionClosed(f"cannot reach {url}: {exc}") from None
        channel = LineChannel(reader, writer, url, service=self.service, secret=self.secret,
                              max_size=self.max_size, timeout=self.timeout,
                              read_limit=4 * self.max_size, read_timeout=None)
        channel.start()
        return channel

    def _open_channel(self, url: str) -> Channel:
        return io_loop.run(self._connect(url), self.timeout + 1.0)

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

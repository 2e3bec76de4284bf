"""The ``jsonrpc-tcp`` plugin: berryMQ's JSON-RPC protocol over a TCP stream.

Every request and every response is one line of UTF-8 JSON; a connection is a
:class:`~berrymq_jsonrpc_tcp.channel.LineChannel` at either end. Everything runs on the
process's I/O loop, no thread per connection; the limits of a connection (line size, the
deadline of a line, idle connections, backpressure) are described in
:mod:`berrymq_jsonrpc_tcp.channel`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import bind_family, split_url
from berrymq_jsonrpc.channel import Channel
from berrymq_jsonrpc.cli import add_serve_option
from berrymq_jsonrpc.listener import Accepted, RemoteListener
from berrymq_jsonrpc.settings import declare_settings, read_number
from berrymq_jsonrpc.transport import RemoteTransport

from berrymq.bus import Bus
from berrymq.cli import Commands
from berrymq.errors import ConnectionClosed
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc_tcp.channel import LineChannel

__all__ = ["PLUGIN", "LineChannel", "TcpTransport"]

PLUGIN = "jsonrpc-tcp"


class _Server(RemoteListener):
    """A listening socket on the loop and the connections it accepted."""

    def __init__(self, transport: TcpTransport) -> None:
        self.transport = transport
        self.channels: Accepted[LineChannel] = Accepted()

    def _channel(self) -> LineChannel:
        transport = self.transport
        return LineChannel(
            "tcp://", service=transport.service, secret=transport.secret,
            max_size=transport.max_size, timeout=transport.timeout,
            read_limit=transport.max_size, read_timeout=transport.read_timeout,
            admission=transport.admission, channels=self.channels,
        )

    async def start(self, host: str, port: int) -> int:
        family, bind_host = bind_family(host)
        self.server = await asyncio.get_running_loop().create_server(
            self._channel, bind_host, port, family=family, reuse_address=True, backlog=1024)
        return int(self.server.sockets[0].getsockname()[1])

    async def _close_accepted(self) -> None:
        for channel in self.channels.close():
            await channel.aclose()


class TcpTransport(RemoteTransport):
    """JSON-RPC over TCP, one JSON text per line: ``tcp://host:port``.

    A connection is a stream of requests, both ways: many may wait at once on one
    (``max_waiting``, counted across them), and an ``interconnect`` without ``addr`` makes
    the node send its messages back over the connection it came on
    (``max_interconnects_per_connection``, which only this transport takes:
    :data:`~berrymq_jsonrpc.settings.STREAM_SETTINGS`).
    """

    scheme = "tcp"
    plugin = PLUGIN

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)
        service, source = self.service, bus.plugins.settings
        service.max_interconnects_per_connection = int(read_number(
            settings, "max_interconnects_per_connection",
            p.DEFAULT_MAX_INTERCONNECTS_PER_CONNECTION, PLUGIN, source))

    def _listener(self, host: str) -> RemoteListener:
        return _Server(self)

    async def _connect(self, url: str) -> LineChannel:
        host, port = split_url(url, "tcp")

        def channel() -> LineChannel:
            return LineChannel(url, service=self.service, secret=self.secret,
                               max_size=self.max_size, timeout=self.timeout,
                               read_limit=self.max_size, read_timeout=None)

        try:
            _, connected = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(channel, host, port), self.timeout)
        except TimeoutError:
            raise ConnectionClosed(f"cannot reach {url}: no answer in {self.timeout:g}s") from None
        except OSError as exc:
            raise ConnectionClosed(f"cannot reach {url}: {exc}") from None
        return connected

    def _open_channel(self, url: str) -> Channel:
        return io_loop.run(self._connect(url), self.timeout + 1.0)

    def _back_channel(self, context: Any) -> Channel | None:
        return context if isinstance(context, LineChannel) else None


@hookimpl
def berrymq_declare_settings(schema: SettingsSchema) -> None:
    declare_settings(schema, PLUGIN, stream=True)


@hookimpl
def berrymq_register_transports(registry: TransportRegistry) -> None:
    registry.add("tcp", TcpTransport, plugin=PLUGIN)


@hookimpl(tryfirst=True)  # serve is there for every other plugin's options (hookspecs)
def berrymq_register_commands(commands: Commands) -> None:
    add_serve_option(commands, "tcp", 7000)

"""The ``jsonrpc-http`` plugin: berryMQ's JSON-RPC protocol over HTTP/1.1.

HTTP parsing, keep-alive and ``Expect: 100-continue`` are done by ``h11`` (sans-I/O), the
sockets by asyncio streams on the process's I/O loop: no thread per connection. Chosen
over aiohttp by measurement (a JSON-RPC POST round trip on one keep-alive connection,
client and server in one process: h11 260-310 us at p50, aiohttp 357-370 us) and because
owning the read loop lets the server bound a whole request, not each read.

The server is :mod:`berrymq_jsonrpc_http.server`, the client
:mod:`berrymq_jsonrpc_http.client`; this module makes them a transport and registers it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from berrymq_jsonrpc.cli import add_serve_option
from berrymq_jsonrpc.client import Channel
from berrymq_jsonrpc.monitor import Monitor
from berrymq_jsonrpc.settings import declare_settings
from berrymq_jsonrpc.transport import RemoteTransport

from berrymq.cli import Commands
from berrymq.errors import ConnectionClosed
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc_http.client import HttpChannel
from berrymq_jsonrpc_http.server import Server

__all__ = ["PLUGIN", "HttpChannel", "HttpTransport"]

PLUGIN = "jsonrpc-http"


class HttpTransport(RemoteTransport):
    """JSON-RPC over HTTP: ``http://host:port`` and ``(host, port)`` tuples."""

    scheme = "http"
    plugin = PLUGIN

    def _serve(self, host: str, port: int) -> tuple[Any, int]:
        server = Server(self.service, self.max_size, self.read_timeout, self.admission)
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

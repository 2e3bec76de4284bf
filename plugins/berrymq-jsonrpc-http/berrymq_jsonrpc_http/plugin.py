"""The ``jsonrpc-http`` plugin: berryMQ's JSON-RPC protocol over HTTP/1.1.

HTTP/1.1 is parsed by ``httptools``, the Python binding of llhttp (Node.js's parser, also
uvicorn's): requests by the server, answers by the client, keep-alive decided from what
the parser read. The sockets are asyncio streams on the process's I/O loop: no thread per
connection. What the parser leaves to its user is in the server: answers are written
whole (HTTP/1.1, with a ``Content-Length``), a head over 16 KiB is refused, and
``Expect: 100-continue`` is answered.

Chosen by measurement. A bare server on asyncio answering each POST of one keep-alive
connection with a fixed body: p50 round trip 11 us on httptools, 140 us on h11 (whose
parsing and writing are pure Python). The node's own HTTP ``send_message`` round trip went
from 127 to 61 us at p50 when it moved from h11 to httptools (interleaved rounds, the two
versions side by side). aiohttp had measured slower than h11 (357-370 us against 260-310
us, client and server in one process). Owning the read loop also lets the server bound a
whole request, not each read.

The server is :mod:`berrymq_jsonrpc_http.server`, the client
:mod:`berrymq_jsonrpc_http.client`, both on :mod:`berrymq_jsonrpc_http.http11`; this module
makes them a transport and registers it, with ``serve --http`` and ``serve --monitor``
(:mod:`berrymq_jsonrpc_http.monitor_port`, the status on an address of its own).
"""

from __future__ import annotations

from berrymq_jsonrpc.channel import Channel
from berrymq_jsonrpc.cli import add_serve_option
from berrymq_jsonrpc.listener import RemoteListener
from berrymq_jsonrpc.monitor import Monitor
from berrymq_jsonrpc.settings import declare_settings
from berrymq_jsonrpc.transport import RemoteTransport

from berrymq.cli import Commands
from berrymq.errors import ConnectionClosed
from berrymq.hookspecs import hookimpl
from berrymq.registries import SettingsSchema, TransportRegistry
from berrymq_jsonrpc_http.client import HttpChannel
from berrymq_jsonrpc_http.monitor_port import add_monitor_option
from berrymq_jsonrpc_http.server import Server

__all__ = ["PLUGIN", "HttpChannel", "HttpTransport"]

PLUGIN = "jsonrpc-http"


class HttpTransport(RemoteTransport):
    """JSON-RPC over HTTP: ``http://host:port`` and ``(host, port)`` tuples."""

    scheme = "http"
    plugin = PLUGIN

    def _listener(self, host: str) -> RemoteListener:
        server = Server(self.service, self.max_size, self.read_timeout, self.admission)
        server.monitor = Monitor(self.bus, host=host, secret=self.secret, names=self.names)
        return server

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


@hookimpl(tryfirst=True)  # serve is there for every other plugin's options (hookspecs)
def berrymq_register_commands(commands: Commands) -> None:
    add_serve_option(commands, "http", 8000)
    add_monitor_option(commands)  # serve --monitor HOST:PORT

"""``berrymq serve --monitor HOST:PORT``: a node's status routes (``/``, ``/status``,
``/metrics``, ``/network``) on an address of their own.

The address is served by this plugin's HTTP server with no JSON-RPC service behind it, so a
TCP-only node can show its status too: loopback unless a host is given; another address
needs the node's secret, as the JSON-RPC servers do. At most :data:`MAX_CLIENTS`
connections at once (more are answered 503), each request head and body within
:data:`READ_TIMEOUT` seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import is_loopback, netloc, split_url, unresolved
from berrymq_jsonrpc.cli import add_serve_starter, server_url
from berrymq_jsonrpc.limits import Admission
from berrymq_jsonrpc.listener import RemoteListener
from berrymq_jsonrpc.monitor import Monitor
from berrymq_jsonrpc.status import MONITOR_ADMISSIONS

from berrymq.cli import Commands, UsageError
from berrymq.errors import TransportError
from berrymq.state import StateKey
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc_http.server import Server

__all__ = ["MAX_CLIENTS", "MONITORS", "READ_TIMEOUT", "add_monitor_option", "check_monitor",
           "serve_monitor", "start_monitor", "status_server"]

logger = logging.getLogger("berrymq.monitor")

#: The most connections the status address holds open at once.
MAX_CLIENTS = 64
#: Seconds a request (head and body) may take from its first byte; also how long a
#: connection may stay idle.
READ_TIMEOUT = 10.0
#: The largest request body read (the status routes take none).
_MAX_BODY = 1024


def _close_all(servers: list[RemoteListener]) -> None:
    for server in servers:
        server.close()


#: The status addresses a bus serves: closed with the bus (they served nobody else).
MONITORS: StateKey[list[RemoteListener]] = StateKey("monitor servers", lambda bus: [],
                                                    close=_close_all)


def add_monitor_option(commands: Commands) -> None:
    """Add ``--monitor HOST:PORT`` to ``serve``."""
    add_serve_starter(commands, serve_monitor, check_monitor)
    serve = commands.get("serve")
    assert serve is not None
    serve.add_argument("--monitor", metavar="HOST:PORT",
                       help="also serve /, /status, /metrics, /network on this address (host default "
                            "127.0.0.1; another than loopback needs the secret)")


def status_server(monitor: Monitor, read_timeout: float = READ_TIMEOUT) -> Server:
    """An HTTP server (not yet listening) that answers ``monitor``'s routes and nothing
    else."""
    server = Server(None, _MAX_BODY, read_timeout, Admission(MAX_CLIENTS, MAX_CLIENTS, logger, fixed=True))
    server.monitor = monitor
    return server


def _monitor_address(bus: Any, args: argparse.Namespace) -> tuple[str, int, str | None]:
    """The host, port and secret of ``--monitor``; UsageError for an address that cannot
    be served."""
    try:
        host, port = split_url(server_url("http", args.monitor, option="monitor"), "http")
    except ValueError as exc:  # a full URL that is no host:port
        raise UsageError(f"--monitor {args.monitor!r}: {exc}") from None
    transports = [t for _, t in sorted(bus.transports().items()) if hasattr(t, "service")]
    secret = next((t.secret for t in transports if t.secret), None) or os.environ.get(
        p.SECRET_ENV_VAR) or None
    if not is_loopback(host) and not secret:
        raise UsageError(f"refusing to serve the status at {host}:{port}: it is not a loopback "
                         f"address, and the status of a node others can reach needs its secret "
                         f"({p.SECRET_ENV_VAR})")
    return host, port, secret


def check_monitor(bus: Any, args: argparse.Namespace) -> tuple[str, str, int] | None:
    """Check ``--monitor`` before ``serve`` binds anything (a bad address is a usage
    error, and then nothing was done); the address, for ``serve`` to refuse one that
    another of its options names too."""
    if getattr(args, "monitor", None) is None:  # ("" is given, and refused as an address)
        return None
    host, port, _secret = _monitor_address(bus, args)
    why = unresolved(host)
    if why is not None:  # (as serve's --tcp and --http: the command is at fault, exit 2)
        raise UsageError(f"cannot serve the status at {host}:{port}: the host name {host!r} "
                         f"names no address ({why})")
    return f"--monitor {args.monitor}", host, port


def start_monitor(bus: Any, args: argparse.Namespace) -> tuple[Server, str] | None:
    """Serve the status at ``--monitor`` (after ``serve``'s transports: the secret and the
    ``names`` setting are theirs): the server and its URL; None without ``--monitor``."""
    if getattr(args, "monitor", None) is None:  # ("" is given, and refused as an address)
        return None
    host, port, secret = _monitor_address(bus, args)
    transports = [t for _, t in sorted(bus.transports().items()) if hasattr(t, "service")]
    server = status_server(Monitor(bus, host=host, secret=secret,
                                   names=[n for t in transports for n in getattr(t, "names", ())]))
    try:
        bound = io_loop.run(server.start(host, port), READ_TIMEOUT)
    except OSError as exc:  # e.g. the port is in use: the run failed
        raise TransportError(f"cannot serve the status at {host}:{port}: {exc}") from None
    bus.state(MONITOR_ADMISSIONS).append(server.admission)  # its refusals in /status
    server.address = f"http://{netloc(host, bound)}"
    bus.state(MONITORS).append(server)
    return server, server.address


def serve_monitor(bus: Any, args: argparse.Namespace) -> dict[str, str] | None:
    """``serve``'s starter: :func:`start_monitor`, and ``{"monitor": URL}`` for ``serve``
    to print (a line, or a key of its ``--json`` object)."""
    started = start_monitor(bus, args)
    return None if started is None else {"monitor": started[1]}

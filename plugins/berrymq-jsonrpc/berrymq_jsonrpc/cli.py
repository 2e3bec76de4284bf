"""The node commands of ``berrymq``: ``serve``, ``send`` and ``listen`` (SPEC section 9).

- ``berrymq serve [--tcp ADDR] [--http ADDR]`` serves this process's bus over JSON-RPC
  and prints each bound URL on a line of its own (``serving tcp://127.0.0.1:7000``), then
  runs until Ctrl-C, SIGINT or SIGTERM, closes every server and connection, and exits 0.
- ``berrymq send URL ID [ARGS...] [--kw KEY=VALUE ...]`` sends one message to the node at
  ``URL`` (style 02), waits until the node acknowledged it, and exits 0.
- ``berrymq listen URL PATTERN`` asks the node at ``URL`` for a queue of ``PATTERN``
  (style 03) and prints every message that reaches it, one line each, until Ctrl-C.

Failures (an unreachable node, a bad identifier or address, a missing plugin) print one
line ``berrymq: error: ...`` on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from berrymq.cli import Commands
from berrymq.errors import BerryMQError
from berrymq_jsonrpc.status_cli import register_status_commands, start_monitor

__all__ = ["add_serve_option", "format_message", "parse_value", "register_commands",
           "server_url"]


class CommandError(BerryMQError):
    """A command-line mistake: printed as one line, exit status 2."""


# -- helpers ---------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_strict = json.JSONDecoder(parse_constant=_reject_constant)


def parse_value(text: str) -> Any:
    """A command-line value: its JSON value when ``text`` is JSON, else the text itself.

    ``42`` is a number, ``true`` a boolean, ``'"42"'`` the string ``42``, ``[1,2]`` an
    array, ``hello`` the string ``hello``. ``NaN``/``Infinity`` are not JSON and stay
    strings (berryMQ never sends them).
    """
    try:
        return _strict.decode(text)
    except ValueError:
        return text


def _keyword(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"--kw takes KEY=VALUE with KEY a Python identifier, got {text!r}")
    return key, parse_value(value)


def server_url(scheme: str, addr: str, default_host: str = "127.0.0.1") -> str:
    """``scheme://host:port`` from ``HOST:PORT``, ``:PORT``, ``PORT`` or a full URL; a
    missing host is ``default_host``."""
    if "://" in addr:
        given = addr.split("://", 1)[0].lower()
        if given != scheme:
            raise CommandError(f"--{scheme} takes a {scheme}:// address, got {addr!r}")
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = "", addr
    if not port.isdigit() or int(port) > 65535:
        raise CommandError(f"--{scheme} {addr!r}: expected HOST:PORT, :PORT or PORT "
                           "(e.g. 127.0.0.1:7000)")
    host = host or default_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class _Stop(Exception):
    """Raised in the main thread by SIGTERM (SIGINT raises KeyboardInterrupt)."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def _signals_stop() -> Iterator[Callable[[], None]]:
    """Within the block, SIGINT (Ctrl-C) and SIGTERM stop the command: SIGINT raises
    KeyboardInterrupt (even when the shell started us with SIGINT ignored, ``cmd &``) and
    SIGTERM raises :class:`_Stop`, in the main thread.

    The kernel gives a process-directed signal to any thread that does not block it, and
    Python runs its handler only in the main thread: if a server thread took the signal,
    a main thread waiting on a lock would not wake up. So the signals are blocked while
    the command starts its threads (which inherit the mask), and the main thread unblocks
    them for itself when it calls the function the block yields (before it waits)."""
    previous_term = signal.signal(signal.SIGTERM, _raise_stop)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    masked = hasattr(signal, "pthread_sigmask")
    if masked:
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)

    def unblock() -> None:
        if masked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    try:
        yield unblock
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


@contextmanager
def _quiet_remote_logs() -> Iterator[None]:
    """The outbox logs a failed send on ``berrymq.remote``; the command reports it itself
    as its one error line, so such records are not printed twice."""
    logger = logging.getLogger("berrymq.remote")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _connection_error(exc: BaseException) -> CommandError:
    return CommandError(str(exc) or type(exc).__name__)


# -- serve -------------------------------------------------------------------------------------


def _default_host(bus: Any, scheme: str) -> str:
    """The host ``serve`` binds for an address without one: the transport plugin's
    ``host`` setting (127.0.0.1 by default)."""
    return str(getattr(bus.transport(scheme), "default_host", "127.0.0.1"))


def _cmd_serve(args: argparse.Namespace) -> int:
    from berrymq.api import init_connection, regist_function
    from berrymq.default import get_bus

    schemes: list[tuple[str, int]] = args.serve_schemes
    given = {scheme: getattr(args, f"serve_{scheme}") or [] for scheme, _ in schemes}
    if not any(given.values()):
        given = {scheme: [f":{port}"] for scheme, port in schemes}
    stop = threading.Event()  # never set: the main thread waits for a signal
    bus = None
    try:
        with _signals_stop() as wait_for_signals:
            try:
                bus = get_bus()
                urls = [server_url(scheme, addr, _default_host(bus, scheme))
                        for scheme, addrs in given.items() for addr in addrs]
                for url in urls:
                    try:
                        bound = init_connection(url)
                    except (ValueError, OSError) as exc:
                        raise CommandError(f"cannot serve {url}: {exc}") from None
                    print(f"serving {bound}", flush=True)
                start_monitor(bus, args)  # status: serve --monitor HOST:PORT
                for pattern in args.print or []:
                    regist_function(pattern, _print_message, weak=False)
                print("press Ctrl-C to stop", file=sys.stderr, flush=True)
                if hasattr(signal, "sigwait") and hasattr(signal, "pthread_sigmask"):
                    # Take the signal synchronously (it is still blocked): no handler
                    # runs inside a lock, so nothing can break the shutdown.
                    signal.sigwait(_STOP_SIGNALS)
                else:
                    wait_for_signals()
                    stop.wait()
            except (KeyboardInterrupt, _Stop):
                pass
            finally:
                # One stop is enough: a second Ctrl-C or SIGTERM during the shutdown is
                # ignored (and discarded when the mask is lifted), so it stays clean.
                for signum in _STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_IGN)
                if bus is not None:
                    bus.close()
                    bus = None
    finally:
        if bus is not None:
            bus.close()
    print("stopped", file=sys.stderr, flush=True)
    return 0


# -- send --------------------------------------------------------------------------------------


def _cmd_send(args: argparse.Namespace) -> int:
    from berrymq.api import connect_oneway
    from berrymq.identifier import parse
    from berrymq.message import Message

    ident = parse(args.identifier)
    if ident.is_local:
        raise CommandError(f"{args.identifier!r} is local (its name starts with '_'); local "
                           "messages never leave their process")
    message = Message(ident, tuple(parse_value(a) for a in args.args), dict(args.kw or []))
    with _quiet_remote_logs():
        try:
            connection = connect_oneway(args.url, ttl=max(args.timeout, 1.0))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            try:
                connection.send(message)
            except (TypeError, ValueError) as exc:
                raise CommandError(str(exc)) from None
            if not connection.flush(args.timeout):
                raise CommandError(f"{args.url} did not acknowledge the message within "
                                   f"{args.timeout:g}s")
        finally:
            connection.close()
    return 0


# -- listen ------------------------------------------------------------------------------------


def format_message(message: Any, as_json: bool = False) -> str:
    """One line for a message: ``ID ARGS [KWARGS]`` (args and kwargs as JSON), or a JSON
    object ``{"identifier", "args", "kwargs"}`` with ``as_json``."""
    ident = str(message.identifier)
    if as_json:
        return json.dumps({"identifier": ident, "args": list(message.args),
                           "kwargs": message.kwargs}, ensure_ascii=False)
    line = f"{ident} {json.dumps(list(message.args), ensure_ascii=False)}"
    if message.kwargs:
        line += " " + json.dumps(message.kwargs, ensure_ascii=False)
    return line


def _print_message(message: Any) -> None:
    print(format_message(message), flush=True)


def _cmd_listen(args: argparse.Namespace) -> int:
    from berrymq.api import connect_via_queue

    with _signals_stop() as wait_for_signals, _quiet_remote_logs():
        try:
            try:
                connection = connect_via_queue(args.url, args.pattern)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            wait_for_signals()
        except (KeyboardInterrupt, _Stop):
            return 0
        print(f"listening to {args.pattern} at {args.url}", file=sys.stderr, flush=True)
        try:
            while True:
                message = connection.get(block=True, timeout=None)
                sys.stdout.write(format_message(message, args.json) + "\n")
                sys.stdout.flush()
        except (KeyboardInterrupt, _Stop):
            pass
        except BrokenPipeError:
            # the reader went away (e.g. `| head -1`): stop quietly, and let the flush
            # at exit write to /dev/null instead of failing again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            with suppress(KeyboardInterrupt, _Stop):
                connection.close()
    return 0


# -- graph URL -------------------------------------------------------------------------------


def _cmd_graph(args: argparse.Namespace) -> int:
    from berrymq import network
    from berrymq_jsonrpc.graph import fetch

    if args.url is None:
        description = network.describe()
    else:
        try:
            description = fetch(args.url, timeout=args.timeout)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    sys.stdout.write(network.render(description, args.format))
    return 0


# -- the parsers -------------------------------------------------------------------------------


def register_commands(commands: Commands) -> None:
    """Add ``serve``, ``send``, ``listen`` and the ``URL`` of ``graph`` (once: every
    transport plugin calls this from its ``berrymq_register_commands``)."""
    if commands.get("serve") is not None:
        return
    p = commands.add(
        "serve", _cmd_serve, help="run a node that others connect to (Ctrl-C stops it)",
        description="Serve this process's bus over JSON-RPC so that other processes "
                    "(berrymq send/listen, interconnect, any JSON-RPC client) connect. "
                    "Without an address option: every installed transport on its default "
                    "address. A non-loopback address needs a shared secret (BERRYMQ_SECRET).",
    )
    p.add_argument("--print", action="append", metavar="PATTERN",
                   help="also print the messages matching PATTERN that reach this node")
    p.set_defaults(serve_schemes=[])

    p = commands.add(
        "send", _cmd_send, help="send one message to a node",
        description="Send one message to the node at URL and wait until it has it. "
                    "Each ARG is parsed as JSON when it is valid JSON (42, true, [1,2], "
                    "'\"text\"'), else taken as a string.",
    )
    p.add_argument("url", metavar="URL", help="the node, e.g. tcp://127.0.0.1:7000")
    p.add_argument("identifier", metavar="ID", help="the message identifier, e.g. job:done")
    p.add_argument("args", nargs="*", metavar="ARG", help="positional arguments")
    p.add_argument("--kw", action="append", type=_keyword, metavar="KEY=VALUE",
                   help="a keyword argument (VALUE parsed like ARG); repeatable")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the node (default 10)")

    p = commands.add(
        "listen", _cmd_listen, help="print the messages a node sees that match a pattern",
        description="Print every message matching PATTERN that reaches the node at URL, "
                    "one line each (ID ARGS [KWARGS], as JSON), until Ctrl-C.",
    )
    p.add_argument("url", metavar="URL", help="the node, e.g. tcp://127.0.0.1:7000")
    p.add_argument("pattern", metavar="PATTERN", help="an identifier pattern, e.g. 'job:*'")
    p.add_argument("--json", action="store_true",
                   help='print each message as a JSON object {"identifier", "args", "kwargs"}')

    register_status_commands(commands)  # status: `status URL`, `serve --monitor`

    graph = commands.get("graph")
    if graph is not None:
        graph.add_argument("url", nargs="?", metavar="URL",
                           help="a running node (tcp://HOST:PORT or http://HOST:PORT) to ask "
                                "over JSON-RPC; without it, this process's own (empty) bus")
        graph.add_argument("--timeout", type=float, default=10.0,
                           help="seconds to wait for the node")
        graph.set_defaults(run=_cmd_graph)


def add_serve_option(commands: Commands, scheme: str, default_port: int) -> None:
    """Add ``--SCHEME ADDR`` to ``serve`` (a transport plugin calls this from its
    ``berrymq_register_commands``); without any address option ``serve`` serves every
    such scheme on ``default_port`` of the host the plugin's ``host`` setting names."""
    register_commands(commands)
    serve = commands.get("serve")
    assert serve is not None
    serve.add_argument(f"--{scheme}", action="append", metavar="ADDR", dest=f"serve_{scheme}",
                       help=f"serve JSON-RPC over {scheme.upper()} at HOST:PORT, :PORT or PORT "
                            f"(port 0: a free one; default :{default_port}); repeatable")
    schemes: list[tuple[str, int]] = serve.get_default("serve_schemes")
    schemes.append((scheme, default_port))

"""The node commands of ``berrymq`` (SPEC section 9): ``serve`` here, ``send``
(:mod:`berrymq_jsonrpc.cli_send`), ``listen`` (:mod:`berrymq_jsonrpc.cli_listen`) and the
``URL`` of ``graph``.

- ``berrymq serve [--tcp ADDR] [--http ADDR] [--print PATTERN]`` serves this process's bus
  over JSON-RPC and prints each bound URL on a line of its own (``serving
  tcp://127.0.0.1:7000``; with ``--json`` one object ``{"serving": [...], "pid": N}``),
  then runs until Ctrl-C, SIGINT or SIGTERM, closes every server and connection, and
  exits 0 (a close that hangs or fails, and a second signal:
  :func:`~berrymq_jsonrpc.serve_stop.stop_serving`).
- ``berrymq send [URL] ID [ARGS...]`` sends one message, ``send [URL] -`` one per line of
  stdin; ``berrymq listen [URL] PATTERN`` prints what matches; ``berrymq ask [URL] ID
  [ARGS...]`` prints what the node's receivers reply (:mod:`berrymq_jsonrpc.cli_ask`);
  ``berrymq graph [URL]`` draws a node's network. A left-out URL is the ``BERRYMQ_URL``
  environment variable.

Failures print one line ``berrymq: error: ...`` on stderr; the exit status is 1 when the
run failed (an unreachable node, a refused request) and 2 for a usage error (a bad
option, identifier, pattern or address; a missing plugin): see :mod:`berrymq.cli`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from berrymq import network
from berrymq.api import init_connection
from berrymq.cli import Commands, UsageError, add_json_option, print_json, show_graph
from berrymq.default import get_bus
from berrymq.errors import TransportError
from berrymq_jsonrpc.cli_ask import register_ask_command
from berrymq_jsonrpc.cli_listen import run_listen
from berrymq_jsonrpc.cli_send import run_send
from berrymq_jsonrpc.cli_support import (
    URL_HELP,
    add_message_arguments,
    connect,
    pattern_argument,
    seconds_argument,
)
from berrymq_jsonrpc.graph import ask_network, checked_description
from berrymq_jsonrpc.serve_addresses import checked_addresses, refuse_duplicates, server_url
from berrymq_jsonrpc.serve_print import Printer, Printers
from berrymq_jsonrpc.serve_stop import STOP_WAIT, Stop, signals_stop, stop_serving, take_stop_signal
from berrymq_jsonrpc.status_cli import register_status_commands

__all__ = ["add_serve_option", "add_serve_starter", "register_commands", "server_url"]



# -- serve -------------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    schemes: list[tuple[str, int]] = args.serve_schemes
    given = {scheme: getattr(args, f"serve_{scheme}") or [] for scheme, _ in schemes}
    if not any(given.values()):
        given = {scheme: [f":{port}"] for scheme, port in schemes}
    stop = threading.Event()  # never set: the main thread waits for a signal
    bus = None
    printers: Printers = []
    with signals_stop() as wait_for_signals:
        try:
            bus = get_bus()
            urls, named = checked_addresses(bus, given)
            for check in args.serve_checks:  # plugins' own serve options (--monitor)
                address = check(bus, args)
                if isinstance(address, tuple):
                    named.append(address)
            refuse_duplicates(named)
            # the printers follow before anything is served: a client that sends as
            # soon as the node says it serves is printed (it was not, now and then)
            for pattern in args.print or []:
                printers.append(Printer(pattern, args.json))
            bound = []
            for url in urls:
                try:
                    bound.append(init_connection(url))
                except (ValueError, TransportError) as exc:
                    if isinstance(exc.__cause__, OSError):  # the port is taken: the run
                        raise TransportError(str(exc)) from None  # failed (it names url)
                    # a malformed address, or one that needs a secret: fix the command
                    # (the transport's own error names the address, once)
                    text = str(exc) if url in str(exc) else f"cannot serve {url}: {exc}"
                    raise UsageError(text) from None
                except OSError as exc:  # from a transport of another plugin, unwrapped
                    raise TransportError(f"cannot serve {url}: {exc}") from None
            started: dict[str, Any] = {}
            for start in args.serve_starters:  # plugins' own serve options (--monitor)
                served = start(bus, args)
                if isinstance(served, dict):
                    started.update(served)
            # said once everything is served: a node that fails to bind its second
            # address announced its first, and a script reading stdout took it as up
            if args.json:
                print_json({"serving": bound, **started, "pid": os.getpid()})
            else:
                for served_url in bound:
                    print(f"serving {served_url}", flush=True)
                for name, started_url in started.items():
                    print(f"{name} {started_url}", flush=True)
            print("press Ctrl-C to stop", file=sys.stderr, flush=True)
            if hasattr(signal, "sigwaitinfo") and hasattr(signal, "pthread_sigmask"):
                # Take the signal synchronously (it is still blocked): no handler
                # runs inside a lock, so nothing can break the shutdown.
                take_stop_signal()
            else:
                wait_for_signals()
                stop.wait()
        except (KeyboardInterrupt, Stop):
            pass
        except BaseException:
            # The run failed (it is said on the way out): the node is closed as on a
            # stop, within the same bound.
            stop_serving(bus, [], args.stop_timeout, wait_for_signals)
            raise
        status = stop_serving(bus, printers, args.stop_timeout, wait_for_signals)
    if status == 0:
        print("stopped", file=sys.stderr, flush=True)
    return status


# -- graph URL -------------------------------------------------------------------------------


def _cmd_graph(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("BERRYMQ_URL") or None
    if url is None:
        description = network.describe()
    else:
        # (checked outside connect: a node that answered nonsense speaks its scheme, and
        # probing its port for the other one would only cost a second)
        description = checked_description(
            *connect(url, args.timeout, lambda u: ask_network(u, timeout=args.timeout)))
    show_graph(description, args)
    return 0


# -- the parsers -------------------------------------------------------------------------------


def register_commands(commands: Commands) -> None:
    """Add ``serve``, ``send``, ``listen``, ``status``, ``ask`` and the ``URL`` of
    ``graph`` (once: every transport plugin calls this from its
    ``berrymq_register_commands``)."""
    if commands.get("serve") is not None:
        return
    p = commands.add(
        "serve", _cmd_serve, help="run a node that others connect to (Ctrl-C stops it)",
        description="Serve this process's bus over JSON-RPC so that other processes "
                    "(berrymq send/listen, interconnect, any JSON-RPC client) connect. "
                    "Without an address option: every installed transport on its default "
                    "address. A non-loopback address needs a shared secret (BERRYMQ_SECRET). "
                    "Prints 'serving URL' for each address once it is bound, then runs until "
                    "Ctrl-C or SIGTERM (exit status 0; 1 when the node did not close within "
                    "--stop-timeout, 130 or 143 on a second signal).\n\n"
                    "examples:\n"
                    "  berrymq serve                     # tcp://127.0.0.1:7000, "
                    "http://127.0.0.1:8000\n"
                    "  berrymq serve --tcp 0 --json      # a free port: "
                    '{"serving": ["tcp://..."], "pid": N}\n'
                    "  berrymq serve --print 'job:*'     # and print what matches job:*",
    )
    p.add_argument("--print", action="append", metavar="PATTERN", type=pattern_argument,
                   help="also print the messages matching PATTERN that reach this node "
                        "(as listen does; it does not answer ask); repeatable")
    add_json_option(p, 'the bound addresses as one JSON object {"serving": [URL...], '
                       '"pid": N}, and the --print messages as listen --json does')
    p.add_argument("--stop-timeout", type=seconds_argument, default=STOP_WAIT,
                   metavar="SECONDS",
                   help="on SIGTERM or Ctrl-C, seconds to wait for the node to close (its "
                        "servers, connections and plugins) before exiting with status 1 "
                        "and naming what did not close; a second signal ends it at once "
                        f"(default {STOP_WAIT:g})")
    p.set_defaults(serve_schemes=[], serve_starters=[], serve_checks=[])

    p = commands.add(
        "send", run_send, help="send messages to a node",
        description="Send one message to the node at URL, or with - one message per line "
                    "of stdin over one connection, and wait until the node has them all. "
                    "Each ARG is parsed as JSON when it is valid JSON (42, true, [1,2], "
                    "'\"text\"'), else taken as a string. A stdin line is an ID and its ARGs "
                    "(and --kw KEY=VALUE) as on the command line, quoted as in a shell; with "
                    "--json a JSON array [\"ID\", [ARGS], {KWARGS}]. A stdin line that is "
                    "not a message is reported, skipped, and makes the exit status 1.\n\n"
                    "examples:\n"
                    "  berrymq send tcp://127.0.0.1:7000 job:done report.txt 3 --kw user=bob\n"
                    "  export BERRYMQ_URL=http://127.0.0.1:8000; berrymq send job:start\n"
                    "  printf 'job:a 1\\njob:b \"two words\"\\n' | berrymq send -\n"
                    "  echo '[\"job:c\", [1], {\"k\": true}]' | berrymq send --json -",
        usage="berrymq send [-h] [--kw KEY=VALUE] [--timeout SECONDS] [--json] "
              "[URL] ID [ARG ...]\n       berrymq send [-h] [--timeout SECONDS] [--json] "
              "[URL] -",
    )
    add_message_arguments(p, "the message identifier, e.g. job:done; - reads messages from "
                             "stdin")
    p.add_argument("--timeout", type=seconds_argument, default=10.0, metavar="SECONDS",
                   help="seconds to wait for the node: to connect, and for it to "
                        "acknowledge the messages (default 10)")
    add_json_option(p, 'one JSON object {"url", "sent", "not_sent"} once the node has the '
                       'messages; stdin lines are JSON arrays')

    p = commands.add(
        "listen", run_listen, help="print the messages a node sees that match a pattern",
        description="Print every message matching PATTERN that reaches the node at URL, "
                    "one line each (ID ARGS [KWARGS], as JSON), until Ctrl-C or SIGTERM "
                    "(exit status 0), --count messages, or --timeout. When the node goes "
                    "away, listen says so on stderr and reconnects; messages sent until it "
                    "is back are not queued for it. With a nats:// URL (plugin "
                    "berrymq-nats) this process joins the broker and prints what matches.\n\n"
                    "examples:\n"
                    "  berrymq listen tcp://127.0.0.1:7000 'job:*'\n"
                    "  berrymq listen 'job:*' --count 1 --timeout 5   # one message within 5 s\n"
                    "  berrymq listen 'job:*' --json --timestamps\n"
                    "  berrymq listen nats://127.0.0.1:4222 'job:*'",
    )
    p.add_argument("url", nargs="?", metavar="URL", help=URL_HELP)
    p.add_argument("pattern", metavar="PATTERN", type=pattern_argument,
                   help="an identifier pattern, e.g. 'job:*'")
    p.add_argument("--count", type=_positive_int, metavar="N",
                   help="stop after N messages (exit status 1 if --timeout ends it first)")
    p.add_argument("--timeout", type=seconds_argument, metavar="SECONDS",
                   help="stop after SECONDS (exit status 0, or 1 when --count messages did "
                        "not come)")
    p.add_argument("--timestamps", action="store_true",
                   help="start each line with the time it arrived (ISO 8601, UTC)")
    p.add_argument("--no-reconnect", action="store_true",
                   help="when the node goes away, stop with exit status 1 instead of "
                        "reconnecting")
    p.add_argument("--connect-timeout", type=seconds_argument, default=10.0, metavar="SECONDS",
                   help="seconds each attempt to reach the node may take (default 10)")
    add_json_option(p, 'each message as a JSON object {"identifier", "args", "kwargs", '
                       '"time"}')

    register_status_commands(commands)  # status: `status URL`
    register_ask_command(commands)

    graph = commands.get("graph")
    if graph is not None:
        graph.add_argument("url", nargs="?", metavar="URL",
                           help="a running node (tcp://HOST:PORT or http://HOST:PORT) to ask "
                                "over JSON-RPC, or its serve --monitor address (read with GET "
                                "/network) (default: BERRYMQ_URL; without either, this "
                                "process's own, empty, bus)")
        graph.add_argument("--timeout", type=seconds_argument, default=10.0, metavar="SECONDS",
                           help="seconds to wait for the node (default 10)")
        graph.set_defaults(run=_cmd_graph)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


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


def add_serve_starter(commands: Commands, start: Callable[[Any, argparse.Namespace], object],
                      check: Callable[[Any, argparse.Namespace], object] | None = None
                      ) -> None:
    """Have ``serve`` act on a plugin's own options (``jsonrpc-http``'s ``--monitor``).

    ``check(bus, args)``, when given, runs before ``serve`` binds anything and raises
    :class:`berrymq.cli.UsageError` for a bad value (exit status 2 means nothing was
    done); it returns the address the option will bind, as ``(option as given, host,
    port)``, so that ``serve`` refuses one that another option names too, or None.
    ``start(bus, args)`` runs once the transports are serving; it returns a dict of
    what it serves, e.g. ``{"monitor": URL}``, which ``serve`` prints (a line ``monitor
    URL``, or a key of its ``--json`` object), or None when it served nothing.
    """
    register_commands(commands)
    serve = commands.get("serve")
    assert serve is not None
    starters: list[Callable[[Any, argparse.Namespace], object]] = serve.get_default(
        "serve_starters")
    starters.append(start)
    if check is not None:
        checks: list[Callable[[Any, argparse.Namespace], object]] = serve.get_default(
            "serve_checks")
        checks.append(check)

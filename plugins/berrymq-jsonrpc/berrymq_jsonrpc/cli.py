"""The node commands of ``berrymq`` (SPEC section 9): ``serve`` here, ``send``
(:mod:`berrymq_jsonrpc.cli_send`), ``listen`` (:mod:`berrymq_jsonrpc.cli_listen`) and the
``URL`` of ``graph``.

- ``berrymq serve [--tcp ADDR] [--http ADDR] [--print PATTERN]`` serves this process's bus
  over JSON-RPC and prints each bound URL on a line of its own (``serving
  tcp://127.0.0.1:7000``; with ``--json`` one object ``{"serving": [...], "pid": N}``),
  then runs until Ctrl-C, SIGINT or SIGTERM, closes every server and connection, and
  exits 0 (see :func:`_stop_serving` for a close that hangs or fails, and a second signal).
- ``berrymq send [URL] ID [ARGS...]`` sends one message, ``send [URL] -`` one per line of
  stdin; ``berrymq listen [URL] PATTERN`` prints what matches; ``berrymq graph [URL]``
  draws a node's network. A left-out URL is the ``BERRYMQ_URL`` environment variable.

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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from berrymq import network
from berrymq.api import init_connection
from berrymq.bus import Bus
from berrymq.cli import Commands, UsageError, add_json_option, print_json, show_graph, write_output
from berrymq.default import get_bus
from berrymq.errors import QueueClosed, TransportError
from berrymq.plugins import KNOWN_SCHEMES
from berrymq.receivers.queues import Queue
from berrymq_jsonrpc.cli_listen import run_listen
from berrymq_jsonrpc.cli_send import run_send
from berrymq_jsonrpc.cli_support import (
    connect,
    format_message,
    keyword,
    pattern_argument,
    seconds_argument,
    timestamp,
)
from berrymq_jsonrpc.graph import fetch
from berrymq_jsonrpc.serve_addresses import checked_addresses, refuse_duplicates, server_url
from berrymq_jsonrpc.status_cli import register_status_commands

__all__ = ["add_serve_option", "add_serve_starter", "register_commands", "server_url"]

#: How many messages ``serve --print`` lets wait for the printer before senders wait.
PRINT_QUEUE_SIZE = 10_000

#: How long a stopping ``serve --print`` waits for its printers to write what they hold.
PRINT_DRAIN_WAIT = 10.0

#: How long a stopping ``serve`` waits for its bus to close, by default (``--stop-timeout``):
#: berryMQ's own transports take up to 10 s to deliver what they took from peers.
STOP_WAIT = 20.0


# -- serve -------------------------------------------------------------------------------------


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


def _start_printer(pattern: str, as_json: bool) -> tuple[Queue, threading.Thread]:
    """``serve --print PATTERN``: a queue of PATTERN and a thread that prints it. A queue
    stores a request and does not answer it, so ``ask`` to an identifier only the printer
    follows still gets no reply (``[]``), as if nothing followed it. When the reader of
    stdout goes away (``| head -2``), ``serve`` stops as on SIGTERM, as ``listen`` ends
    there: a node that would print nothing more is not left running silently."""
    printed = Queue(pattern, maxsize=PRINT_QUEUE_SIZE)

    def run() -> None:
        while True:
            try:
                message = printed.get(block=True, timeout=None)
            except QueueClosed:
                return
            line = format_message(message, as_json, timestamp() if as_json else None)
            if not write_output(line + "\n"):
                # to the process (this thread blocks the signal): the main thread takes it
                os.kill(os.getpid(), signal.SIGTERM)
                return

    printer = threading.Thread(target=run, name=f"berrymq-print-{pattern}", daemon=True)
    printer.start()
    return printed, printer


def _finish_printing(printers: list[tuple[Queue, threading.Thread]], timeout: float) -> None:
    """Once the bus closed (its queues with it): let the printers write what their
    queues still hold, the messages the node acknowledged, for up to ``timeout`` seconds
    in all (a slow reader of stdout); what is left then is said on stderr, with its count,
    rather than lost with the process."""
    deadline = time.monotonic() + timeout
    for printed, printer in printers:
        printer.join(max(0.0, deadline - time.monotonic()))
        left = printed.qsize()
        if left:
            print(f"berrymq: {left} message(s) of {printed.pattern} not printed: the output "
                  f"was not read within {timeout:g}s of the stop", file=sys.stderr, flush=True)


class _SecondStop(Exception):
    """Raised in the main thread by a stop signal that comes while ``serve`` stops."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _raise_second_stop(signum: int, frame: FrameType | None) -> None:
    _ignore_stop_signals()  # a third one cannot break the report of the second
    raise _SecondStop(signum)


def _ignore_stop_signals() -> None:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class _Closing:
    """The close of a stopping ``serve``'s bus, in a thread of its own (a daemon, which
    the process does not wait for at exit), so that a plugin's ``close()`` that never
    returns cannot keep the command from ending: berryMQ's own transports first (the
    node stops accepting at once, whatever a plugin does next), then the whole bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        #: the built-in transport ``serve`` closes itself at this moment (its scheme)
        self.scheme: str | None = None
        #: a line for each part that raised in its close
        self.errors: list[str] = []
        #: set once the close returned (waited on, not the thread: a join that a signal
        #: interrupts takes the thread for ended)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="berrymq-serve-close",
                                       daemon=True)

    def _run(self) -> None:
        try:
            self._close()
        finally:
            self.done.set()

    def _close(self) -> None:
        bus = self.bus
        for scheme, transport in bus.transports().items():
            if _plugin_of(bus, scheme) == KNOWN_SCHEMES.get(scheme, ("",))[0]:
                self.scheme = scheme
                try:
                    transport.close()  # idempotent: the bus's close then passes over it
                except Exception as exc:  # noqa: BLE001 - said on stderr; the rest still closes
                    self.errors.append(f"the {scheme}:// transport of plugin "
                                       f"{_plugin_of(bus, scheme)!r} raised "
                                       f"{type(exc).__name__} in close(): {exc}")
        self.scheme = None
        try:
            bus.close()
        except Exception as exc:  # noqa: BLE001 - a plugin's close (a PluginError naming it)
            self.errors.append(str(exc))

    def what_is_left(self) -> str:
        """What the close is waiting for now, for a line on stderr."""
        node = self.bus.node
        part = ("transport", self.scheme) if self.scheme is not None else (
            node.closing if node is not None else None)
        if part is None:
            return ("the bus's close (a plugin's berrymq_close_bus hook, the worker pool or "
                    "a plugin's per-bus state) has not returned")
        what, scheme = part
        return (f"the {scheme}:// {what} of plugin {_plugin_of(self.bus, scheme)!r} has not "
                f"returned from close()")


def _plugin_of(bus: Bus, scheme: str) -> str:
    return bus.plugins.transports.plugin_for(scheme) or scheme


def _stop_serving(bus: Bus | None, printers: list[tuple[Queue, threading.Thread]],
                  wait: float, unblock: Callable[[], None]) -> int:
    """Close ``bus`` (see :class:`_Closing`) for up to ``wait`` seconds, then let the
    printers write what they hold; returns the exit status. Called in the main thread
    with the stop signals blocked (or their handlers raising): from here on a SIGINT or
    SIGTERM is a second one, and ends the command at once (128 + its number) with a line
    that says what it cut short. A close that takes longer than ``wait`` is named on
    stderr and left to the process's end (exit 1); so is a part that raised in its close.
    """
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _raise_second_stop)
    if bus is None:  # the run failed before it had a bus: nothing to close
        _ignore_stop_signals()
        return 0
    closing = _Closing(bus)
    doing = "closing"
    try:
        closing.thread.start()  # the signals still blocked: the thread never takes one
        unblock()  # a second signal pending since the first is raised here
        if not closing.done.wait(wait):
            _ignore_stop_signals()
            print(f"berrymq: error: the node did not close within {wait:g}s: "
                  f"{closing.what_is_left()}; exiting without it", file=sys.stderr, flush=True)
            return 1
        doing = "printing the messages it had acknowledged"
        _finish_printing(printers, PRINT_DRAIN_WAIT)
        _ignore_stop_signals()
    except _SecondStop as stop:
        left = "" if closing.done.is_set() else f": {closing.what_is_left()}"
        print(f"berrymq: stopped by a second {stop} while {doing}{left}", file=sys.stderr,
              flush=True)
        for printed, _ in printers:
            if printed.qsize():
                print(f"berrymq: {printed.qsize()} message(s) of {printed.pattern} not printed",
                      file=sys.stderr, flush=True)
        return 128 + stop.signum
    for error in closing.errors:
        print(f"berrymq: error: {error}", file=sys.stderr, flush=True)
    return 1 if closing.errors else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    schemes: list[tuple[str, int]] = args.serve_schemes
    given = {scheme: getattr(args, f"serve_{scheme}") or [] for scheme, _ in schemes}
    if not any(given.values()):
        given = {scheme: [f":{port}"] for scheme, port in schemes}
    stop = threading.Event()  # never set: the main thread waits for a signal
    bus = None
    printers: list[tuple[Queue, threading.Thread]] = []
    with _signals_stop() as wait_for_signals:
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
                printers.append(_start_printer(pattern, args.json))
            bound = []
            for url in urls:
                try:
                    bound.append(init_connection(url))
                except (ValueError, TransportError) as exc:
                    # a malformed address, or one that needs a secret: fix the command
                    raise UsageError(f"cannot serve {url}: {exc}") from None
                except OSError as exc:  # e.g. the port is in use: the run failed
                    raise TransportError(f"cannot serve {url}: {exc}") from None
                if not args.json:
                    print(f"serving {bound[-1]}", flush=True)
            started: dict[str, Any] = {}
            for start in args.serve_starters:  # plugins' own serve options (--monitor)
                served = start(bus, args)
                if isinstance(served, dict):
                    started.update(served)
            if args.json:
                print_json({"serving": bound, **started, "pid": os.getpid()})
            else:
                for name, url in started.items():
                    print(f"{name} {url}", flush=True)
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
        except BaseException:
            # The run failed (it is said on the way out): the node is closed as on a
            # stop, within the same bound.
            _stop_serving(bus, [], args.stop_timeout, wait_for_signals)
            raise
        status = _stop_serving(bus, printers, args.stop_timeout, wait_for_signals)
    if status == 0:
        print("stopped", file=sys.stderr, flush=True)
    return status


# -- graph URL -------------------------------------------------------------------------------


def _cmd_graph(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("BERRYMQ_URL") or None
    if url is None:
        description = network.describe()
    else:
        description = connect(url, args.timeout, lambda u: fetch(u, timeout=args.timeout))
    show_graph(description, args)
    return 0


# -- the parsers -------------------------------------------------------------------------------

_URL_HELP = ("the node, e.g. tcp://127.0.0.1:7000 or http://127.0.0.1:8000 (default: the "
             "environment variable BERRYMQ_URL)")


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
                    "address. A non-loopback address needs a shared secret (BERRYMQ_SECRET). "
                    "Prints 'serving URL' for each address once it is bound, then runs until "
                    "Ctrl-C or SIGTERM (exit status 0).\n\n"
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
    p.add_argument("url", nargs="?", metavar="URL", help=_URL_HELP)
    p.add_argument("identifier", nargs="?", metavar="ID",
                   help="the message identifier, e.g. job:done; - reads messages from stdin")
    p.add_argument("args", nargs="*", metavar="ARG", help="positional arguments (optional)")
    p.add_argument("--kw", action="append", type=keyword, metavar="KEY=VALUE",
                   help="a keyword argument (VALUE parsed like ARG); repeatable")
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
    p.add_argument("url", nargs="?", metavar="URL", help=_URL_HELP)
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

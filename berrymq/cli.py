"""The ``berrymq`` command (also ``python -m berrymq``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from berrymq.cli_remote import add_commands as add_remote_commands
from berrymq.errors import BerryMQError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


def _cmd_plugins(args: argparse.Namespace) -> int:
    from berrymq.default import get_bus

    bus = get_bus()
    host = bus.plugins
    infos = host.infos()
    rows = [("NAME", "DISTRIBUTION", "VERSION", "ACTIVE", "WHY")]
    rows += [(i.name, i.distribution, i.version, "yes" if i.active else "no", i.reason) for i in infos]
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    if host.settings.path is not None:
        print(f"\nsettings: {host.settings.path}")
    else:
        print("\nsettings: none found (every installed plugin is active)")
    report = host.status(bus)
    for plugin, lines in report.lines.items():
        for line in lines:
            print(f"status: {plugin}: {line}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from berrymq.demo import run_demo

    run_demo()
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from berrymq import network

    if args.url is None:
        description = network.describe()
    else:
        try:
            description = network.fetch(args.url, timeout=args.timeout)
        except ValueError as exc:
            print(f"berrymq: error: {exc}", file=sys.stderr)
            return 2
    sys.stdout.write(network.render(description, args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="berrymq", description="berryMQ: a programmer-friendly message library."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = commands.add_parser("plugins", help="list installed plugins and whether each is active")
    p.set_defaults(run=_cmd_plugins)
    p = commands.add_parser("demo", help="show the main features in one short run")
    p.set_defaults(run=_cmd_demo)
    p = commands.add_parser(
        "graph", help="print who follows what (Graphviz DOT or Mermaid), here or at a node URL"
    )
    p.add_argument("url", nargs="?", metavar="URL",
                   help="a running node (tcp://HOST:PORT or http://HOST:PORT) to ask over "
                        "JSON-RPC; without it, this process's own (empty) bus")
    p.add_argument("--format", choices=("dot", "mermaid"), default="dot",
                   help="dot (render with 'dot -Tpng') or mermaid (default: dot)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node")
    p.set_defaults(run=_cmd_graph)
    add_remote_commands(commands)  # serve, send, listen
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except BerryMQError as exc:
        print(f"berrymq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

"""The ``berrymq`` command (also ``python -m berrymq``).

The core has ``plugins``, ``demo`` and ``graph`` (this process's own bus); plugins add
commands, or options to existing ones, through the hook
:func:`~berrymq.hookspecs.berrymq_register_commands` (the JSON-RPC distribution adds
``serve``, ``send``, ``listen`` and ``graph URL``; each transport plugin adds its option
to ``serve``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from berrymq.errors import BerryMQError
from berrymq.plugins import KNOWN_SCHEMES, get_plugin_host

__all__ = ["Command", "Commands", "build_parser", "main"]

#: What runs a command: gets the parsed arguments, returns the exit status.
Command = Callable[[argparse.Namespace], int]


class Commands:
    """The sub-commands of ``berrymq``, as :func:`berrymq_register_commands
    <berrymq.hookspecs.berrymq_register_commands>` gives them to plugins.

    :param subparsers: the ``add_subparsers()`` action of the top-level parser.
    """

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self._parsers: dict[str, argparse.ArgumentParser] = {}

    def add(self, name: str, run: Command, *, help: str, description: str | None = None,
            ) -> argparse.ArgumentParser:
        """Add the command ``name`` run by ``run``; returns its parser to add arguments to.

        :raises ValueError: when another plugin already added ``name``.
        """
        if name in self._parsers:
            raise ValueError(f"the berrymq command {name!r} exists already")
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help, description=description or help)
        parser.set_defaults(run=run)
        self._parsers[name] = parser
        return parser

    def get(self, name: str) -> argparse.ArgumentParser | None:
        """The parser of the command ``name`` (to add options to it), or None."""
        return self._parsers.get(name)

    def names(self) -> list[str]:
        """The commands added so far, in order."""
        return list(self._parsers)


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

    sys.stdout.write(network.render(network.describe(), args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole ``berrymq`` parser: the core's commands, then what the active plugins add.

    :raises berrymq.BerryMQError: the settings file is wrong (the plugins load first).
    """
    parser = argparse.ArgumentParser(
        prog="berrymq", description="berryMQ: a programmer-friendly message library."
    )
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    commands.add("plugins", _cmd_plugins,
                 help="list installed plugins and whether each is active")
    commands.add("demo", _cmd_demo, help="show the main features in one short run")
    p = commands.add("graph", _cmd_graph,
                     help="print who follows what (Graphviz DOT or Mermaid)")
    p.add_argument("--format", choices=("dot", "mermaid"), default="dot",
                   help="dot (render with 'dot -Tpng') or mermaid (default: dot)")
    get_plugin_host().register_commands(commands)
    return parser


def _unknown_arguments(parser: argparse.ArgumentParser, unknown: list[str]) -> int:
    """Name the plugin behind an option such as ``--tcp`` when it is not active (exit 2)."""
    for arg in unknown:
        scheme = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if scheme in KNOWN_SCHEMES:
            plugin, distribution = KNOWN_SCHEMES[scheme]
            print(f"berrymq: error: {arg.partition('=')[0]} comes from the plugin {plugin!r}, "
                  f"which is not active: install it (pip install {distribution}) or enable "
                  "it (berrymq plugins says why it is off)", file=sys.stderr)
            return 2
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except BerryMQError as exc:
        print(f"berrymq: error: {exc}", file=sys.stderr)
        return 2
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        return _unknown_arguments(parser, unknown)
    run: Command = args.run
    try:
        return run(args)
    except BerryMQError as exc:
        print(f"berrymq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

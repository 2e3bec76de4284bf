"""The ``berrymq`` command (also ``python -m berrymq``).

The core has ``plugins``, ``demo`` and ``graph`` (this process's own bus); plugins add
commands, or options to existing ones, through the hook
:func:`~berrymq.hookspecs.berrymq_register_commands` (the JSON-RPC distribution adds
``serve``, ``send``, ``listen`` and ``graph URL``; each transport plugin adds its option
to ``serve``).

Exit status, the same for every command (and for the Node.js client's ``berrymq-js``):
0 done; 1 the run failed (an unreachable node, a refused request, a node that went
away); 2 a usage error (a bad option, identifier, pattern or URL on the command line, a
wrong settings file, a plugin missing or unable to load): nothing was done. ``berrymq``
alone prints the help and exits 0, as do ``--help`` and ``--version`` when the plugins
cannot load. A command interrupted by Ctrl-C exits 130, except ``serve`` and
``listen``, for which SIGINT or SIGTERM is the normal end (exit 0; ``serve`` exits 1
when its node did not close within ``--stop-timeout``, 130 or 143 on a second signal).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from berrymq._cli_versions import print_versions
from berrymq._output import discard_output, open_output, write_output
from berrymq.default import get_bus
from berrymq.demo import run_demo
from berrymq.errors import BerryMQError, PluginError, PluginNotAvailable, SettingsError
from berrymq.network import describe, render
from berrymq.plugins import BLOCK_ENV_VAR, KNOWN_COMMANDS, KNOWN_OPTIONS, get_plugin_host

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "URL_ENV_VAR", "Command", "Commands",
           "UsageError", "add_json_option", "build_parser", "discard_output", "exit_status",
           "main", "node_url", "print_json", "show_graph", "write_output"]

#: What runs a command: gets the parsed arguments, returns the exit status.
Command = Callable[[argparse.Namespace], int]

EXIT_OK = 0
#: The run failed: an unreachable node, a refused request, a node that went away.
EXIT_FAILURE = 1
#: The command line (or the settings file) is wrong; nothing was done.
EXIT_USAGE = 2

#: The node ``send``, ``listen``, ``graph`` and ``status`` talk to when no URL is given
#: (as ``NATS_URL`` for ``nats``).
URL_ENV_VAR = "BERRYMQ_URL"

EPILOG = f"""\
exit status: 0 done; 1 the run failed (unreachable node, refused request, node went
away); 2 usage error (bad option, identifier, pattern or URL, wrong settings file,
plugin missing or unable to load): nothing was done. serve and listen stopped by Ctrl-C (SIGINT) or
SIGTERM exit 0 (serve: 1 when the node did not close within --stop-timeout, 130 or
143 on a second signal); another command interrupted by Ctrl-C exits 130. berrymq alone prints
this help and exits 0.

environment: {URL_ENV_VAR} is the node when a command's URL is left out (e.g.
tcp://127.0.0.1:7000); BERRYMQ_SECRET a node's shared secret; BERRYMQ_CONFIG the
settings file.
"""


class HelpFormatter(argparse.HelpFormatter):
    """Fills each paragraph of a description or epilog to the terminal's width, but keeps
    an indented paragraph (examples) line for line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines[1:]):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


class UsageError(BerryMQError):
    """A mistake on the command line: printed as one line, exit status 2.

    :param show_usage: print the command's usage before the line (for missing arguments).
    """

    def __init__(self, message: str, *, show_usage: bool = False) -> None:
        super().__init__(message)
        self.show_usage = show_usage


def node_url(given: str | None, example: str = "tcp://127.0.0.1:7000") -> str:
    """The node a command talks to: ``given``, else the environment variable
    ``BERRYMQ_URL``; a :class:`UsageError` when neither is set, whose hint is ``example``
    (a command served over HTTP only gives an ``http://`` one)."""
    url = given or os.environ.get(URL_ENV_VAR, "").strip()
    if not url:
        raise UsageError(f"no node given: pass its URL (e.g. {example}) or set "
                         f"{URL_ENV_VAR}")
    return url


def exit_status(exc: BaseException) -> int:
    """The exit status for an exception that ended a command: 2 for usage errors (a bad
    argument or settings file, a missing plugin or one that cannot load: nothing was done),
    1 for everything else."""
    if isinstance(exc, (UsageError, SettingsError, PluginNotAvailable, PluginError)):
        return EXIT_USAGE
    return EXIT_FAILURE


def print_json(value: Any) -> None:
    """One JSON text on one line of stdout (what ``--json`` prints)."""
    write_output(json.dumps(value, ensure_ascii=False) + "\n")


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--json`` to a command: ``what`` says what it prints as JSON."""
    parser.add_argument("--json", action="store_true", help=f"print {what}")


class Commands:
    """The sub-commands of ``berrymq``, as :func:`berrymq_register_commands
    <berrymq.hookspecs.berrymq_register_commands>` gives them to plugins.

    :param subparsers: the ``add_subparsers()`` action of the top-level parser.
    """

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self._parsers: dict[str, argparse.ArgumentParser] = {}
        self._owners: dict[str, str | None] = {}
        #: The plugin whose hook is adding commands now (the plugin host sets it), None
        #: for berryMQ's own: named in the error for a command added twice.
        self.plugin: str | None = None

    def add(self, name: str, run: Command, *, help: str, description: str | None = None,
            usage: str | None = None) -> argparse.ArgumentParser:
        """Add the command ``name`` run by ``run``; returns its parser to add arguments to.
        ``usage`` replaces the generated usage line (for arguments argparse cannot show).

        :raises SettingsError: when another plugin already added ``name`` (two plugins
            claiming one name, as for URL schemes: ``berrymq`` says so in one line, naming
            both), or when ``name`` is one of berryMQ's own commands.
        :raises ValueError: when this plugin already added ``name`` (a fault of the plugin).
        """
        if name in self._parsers:
            self._refuse(name)
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help, description=description or help, usage=usage, epilog=EPILOG,
            formatter_class=HelpFormatter)
        parser.set_defaults(run=run, command_parser=parser, command_plugin=self.plugin)
        self._parsers[name] = parser
        self._owners[name] = self.plugin
        return parser

    def _refuse(self, name: str) -> None:
        """Raise the error for ``name`` added a second time."""
        first, plugin = self._owners[name], self.plugin
        if plugin is not None and first == plugin:
            raise ValueError(f"it adds the berrymq command {name!r} twice")
        turn_off = (f"(disable = [{plugin!r}] in the settings file, or "
                    f"{BLOCK_ENV_VAR}={plugin})")
        if first is None:
            raise SettingsError(f"the berrymq command {name!r} is one of berryMQ's own, and "
                                f"plugin {plugin!r} adds it too; disable plugin {plugin!r} "
                                f"{turn_off}")
        raise SettingsError(f"the berrymq command {name!r} is added by both plugin {first!r} "
                            f"and plugin {plugin!r}; disable one of them (the 'disable' list "
                            "of [berrymq] in the settings file)")

    def get(self, name: str) -> argparse.ArgumentParser | None:
        """The parser of the command ``name`` (to add options to it), or None."""
        return self._parsers.get(name)

    def names(self) -> list[str]:
        """The commands added so far, in order."""
        return list(self._parsers)


def _cmd_plugins(args: argparse.Namespace) -> int:
    bus = get_bus()
    host = bus.plugins
    infos = host.infos()
    report = host.status(bus)
    if args.json:
        print_json({
            "plugins": [{"name": i.name, "distribution": i.distribution, "version": i.version,
                         "module": i.module, "active": i.active, "reason": i.reason}
                        for i in infos],
            "settings": None if host.settings.path is None else str(host.settings.path),
            "status": report.lines,
        })
        return 0
    rows = [("NAME", "DISTRIBUTION", "VERSION", "ACTIVE", "WHY")]
    rows += [(i.name, i.distribution, i.version, "yes" if i.active else "no", i.reason) for i in infos]
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    if host.settings.path is not None:
        print(f"\nsettings: {host.settings.path}")
    else:
        print("\nsettings: none found (every installed plugin is active)")
    for plugin, lines in report.lines.items():
        for line in lines:
            print(f"status: {plugin}: {line}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(args.json)
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    show_graph(describe(), args)
    return 0


def show_graph(description: dict[str, Any], args: argparse.Namespace) -> None:
    """Print a network description as ``graph`` does: JSON with ``--json``, else drawn
    in ``--format``."""
    if args.json:
        print_json(description)
    else:
        write_output(render(description, args.format))


def build_parser() -> argparse.ArgumentParser:
    """The whole ``berrymq`` parser: the core's commands, then what the active plugins add.

    :raises berrymq.BerryMQError: the settings file is wrong (the plugins load first).
    """
    return _parser_and_commands()[0]


def _parser_and_commands(plugins: bool = True) -> tuple[argparse.ArgumentParser, Commands]:
    """The parser and its commands: the core's, then (with ``plugins``) the plugins'."""
    parser = argparse.ArgumentParser(
        prog="berrymq", description="berryMQ: a programmer-friendly message library.",
        epilog=EPILOG, formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="store_true", dest="versions",  # (printed
                        # once the command line is read: a --json after it counts too)
                        help="print the versions of berryMQ and of its installed plugins")
    parser.add_argument("--json", action="store_true", dest="json_output",
                        help="print JSON: as the command's own --json, or with --version")
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    p = commands.add("plugins", _cmd_plugins,
                     help="list installed plugins and whether each is active")
    add_json_option(p, 'one JSON object {"plugins": [...], "settings", "status"}')
    p = commands.add("demo", _cmd_demo, help="show the main features in one short run")
    add_json_option(p, 'one JSON object per feature, {"title", "code", "printed"}, a line each')
    p = commands.add("graph", _cmd_graph,
                     help="print who follows what (Graphviz DOT or Mermaid)")
    p.add_argument("--format", choices=("dot", "mermaid"), default="dot",
                   help="dot (render with 'dot -Tpng') or mermaid (default: dot)")
    add_json_option(p, "the description itself (receivers, queues, connections) as one "
                       "JSON object instead of a picture")
    if plugins:
        get_plugin_host().register_commands(commands)
    return parser, commands


#: The commands of the core, whose help needs no plugin.
_CORE_COMMANDS = ("plugins", "demo", "graph")


def _asks_for_help(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks only for the help or the versions (``berrymq`` alone, ``-h``,
    ``--version``, ``plugins --help``...): what must work when the plugins cannot load."""
    if not argv or argv[0] in ("-h", "--help", "--version"):
        return True
    if argv[:2] == ["--json", "--version"]:
        return True
    return argv[0] in _CORE_COMMANDS and any(arg in ("-h", "--help") for arg in argv[1:])


def _absent(what: str, plugins: Sequence[tuple[str, str]]) -> str:
    """``what`` comes from ``plugins`` (entry point, distribution), none active: what to do."""
    host = get_plugin_host()
    names = " or ".join(repr(plugin) for plugin, _ in plugins)
    hints = "; or ".join(host.how_to_get(plugin, distribution) for plugin, distribution in plugins)
    return f"{what} comes from the plugin {names}, and none is active: {hints}"


def _unknown_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       unknown: list[str]) -> int:
    """Name the plugin behind an option such as ``--tcp`` or ``--monitor``, or behind
    ``graph URL``, when it is not active (exit 2)."""
    for arg in unknown:
        option = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if option in KNOWN_OPTIONS:
            hint = get_plugin_host().how_to_get(*KNOWN_OPTIONS[option])
            print(f"berrymq: error: {arg.partition('=')[0]} comes from the plugin "
                  f"{KNOWN_OPTIONS[option][0]!r}, which is not active: {hint}", file=sys.stderr)
            return EXIT_USAGE
    if getattr(args, "command", None) == "graph" and any(not a.startswith("-") for a in unknown):
        print(f"berrymq: error: {_absent('graph URL (a running node)', KNOWN_COMMANDS['graph'])}",
              file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")


def _refuse_absent_command(argv: Sequence[str], commands: Commands) -> None:
    """A :class:`UsageError` saying what to do to have the command of ``argv`` when it is
    one that berryMQ's own plugins add (``serve``, ``send``...) and none of them is active."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command is None or command in commands.names():
        return
    if command in KNOWN_COMMANDS:
        raise UsageError(_absent(f"the command {command!r}", KNOWN_COMMANDS[command]))
    inactive = get_plugin_host().inactive()
    if inactive:  # (argparse would list the commands there are, and say no more)
        raise UsageError(
            f"unknown command {command!r}: the commands there are: "
            f"{', '.join(sorted(commands.names()))}; installed plugins that are not "
            f"active may add it: {', '.join(map(repr, inactive))} (see berrymq plugins)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``berrymq`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    The help and ``--version`` work even when the plugins cannot load (a wrong settings
    file, a faulty plugin): the core's parser serves them, and a warning says why the
    plugins' commands are missing."""
    argv = list(sys.argv[1:] if argv is None else argv)
    open_output()  # stdout closed (>&-): output goes nowhere, as to a reader gone
    failed = "plugins not loaded"
    try:
        get_plugin_host()
        # loaded: what fails now is a plugin adding its commands (a hook that raises,
        # a command two plugins add), not the loading
        failed = "the plugins' commands not added (the help shows berryMQ's own)"
        parser, commands = _parser_and_commands()
        _refuse_absent_command(argv, commands)
    except Exception as exc:  # the help must work whatever a plugin does (raised otherwise)
        if not _asks_for_help(argv):
            if not isinstance(exc, BerryMQError):
                raise
            print(f"berrymq: error: {exc}", file=sys.stderr)
            return exit_status(exc)
        print(f"berrymq: warning: {failed}: {exc}", file=sys.stderr)
        parser, commands = _parser_and_commands(plugins=False)
    args, unknown = parser.parse_known_args(argv)
    if args.versions:
        return print_versions(args.json_output)
    if unknown:
        return _unknown_arguments(parser, args, unknown)
    run: Command | None = getattr(args, "run", None)
    if args.json_output and run is not None:  # berrymq --json COMMAND
        if not hasattr(args, "json"):
            parser.error(f"--json: the command {args.command!r} has no JSON output")
        args.json = True
    if run is None:  # berrymq alone: the help, not a usage error
        parser.print_help()
        return EXIT_OK
    return _run_command(run, args)


def _run_command(run: Command, args: argparse.Namespace) -> int:
    """``run(args)``, its errors made one line and an exit status: any other exception
    (a plugin's command that fails) is a line naming the command, its plugin and the
    exception, exit status 1."""
    try:
        status = run(args)
        sys.stdout.flush()  # here, not at exit: a reader that went away is seen below
        return status
    except BrokenPipeError:  # the reader of stdout went away (| head -1): stop, as listen
        discard_output()
        return EXIT_OK
    except BerryMQError as exc:
        if isinstance(exc, UsageError) and exc.show_usage:
            args.command_parser.print_usage(sys.stderr)
        print(f"berrymq: error: {exc}", file=sys.stderr)
        return exit_status(exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a plugin's command that fails: one line
        plugin = getattr(args, "command_plugin", None)
        owner = f" (plugin {plugin!r})" if plugin else ""
        problem = " ".join(str(exc).split())
        print(f"berrymq: error: the command {args.command!r}{owner} failed: "
              f"{type(exc).__name__}{': ' + problem if problem else ''}", file=sys.stderr)
        return EXIT_FAILURE

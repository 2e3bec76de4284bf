"""SPEC 9: the berrymq command (plugins, demo) and commands added by plugins."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env, plugin_site
from helpers import run_berrymq as run

import berrymq
from berrymq.cli import Commands, build_parser, main
from berrymq.hookspecs import hookimpl
from berrymq.plugins import PluginHost, reset_plugin_host
from berrymq.settings import Settings


def test_plugins_lists_distribution_version_and_activity(tmp_path: Path) -> None:
    result = run("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "DISTRIBUTION", "VERSION", "ACTIVE"]
    row = next(line.split() for line in lines if line.startswith("queues "))
    assert row[:4] == ["queues", "berrymq", berrymq.__version__, "yes"]
    assert "settings: none found" in result.stdout


def test_plugins_shows_settings_and_inactive(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text('[berrymq]\ndisable = ["local"]\n')
    result = run("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("local "))
    assert row.split()[3] == "no" and "disabled in" in row
    assert f"settings: {tmp_path / 'berrymq.toml'}" in result.stdout


def test_an_unknown_command_names_the_installed_plugins_that_are_not_active(
        tmp_path: Path) -> None:
    """A command of an outside plugin turned off was argparse's 'invalid choice', which
    named no plugin (serve, send... of berryMQ's own plugins say how to enable them)."""
    (tmp_path / "berrymq.toml").write_text('[berrymq]\ndisable = ["local"]\n')
    result = run("hello", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "berrymq: error: unknown command 'hello'" in result.stderr, result.stderr
    assert "installed plugins that are not active may add it: 'local'" in result.stderr
    assert "plugins, " in result.stderr  # the commands there are
    (tmp_path / "none").mkdir()  # every installed plugin active: argparse's own words
    result = run("hello", cwd=tmp_path / "none")
    assert result.returncode == 2 and "invalid choice: 'hello'" in result.stderr


def test_bad_settings_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text('[berrymq]\nplugins = ["ghost"]\n')
    result = run("plugins", cwd=tmp_path)
    assert result.returncode == 2
    assert "berrymq: error:" in result.stderr and "unknown plugin 'ghost'" in result.stderr
    assert "berrymq.toml:2:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("hook", "error"), [
    ("berrymq_register_transports(registry):\n    registry.add('local', object, plugin='dup')",
     "URL scheme 'local' is claimed by both plugin 'local' and plugin 'dup'"),
    ("berrymq_register_transports(registry):\n    registry.add('local', object, plugin='local')",
     "plugin 'dup' (bmq-outside 0.1) raised ValueError in its hook berrymq_register_transports: "
     "it registers the URL scheme 'local' with plugin='local', another plugin's name; a plugin "
     "registers names as its own ('dup'): leave out plugin="),
    ("berrymq_register_commands(commands):\n    commands.add('demo', lambda a: 0, help='x')",
     "the berrymq command 'demo' is one of berryMQ's own, and plugin 'dup' adds it too; "
     "disable plugin 'dup' (disable = ['dup'] in the settings file, or "
     "BERRYMQ_BLOCK_PLUGINS=dup)"),
])
def test_two_plugins_claiming_one_name_is_one_clear_line(
        tmp_path: Path, hook: str, error: str) -> None:
    """A URL scheme or a command: one ``berrymq: error:`` line and exit 2, no traceback."""
    env = plugin_site(tmp_path, "dup", f"from berrymq.hookspecs import hookimpl\n@hookimpl\ndef {hook}\n")
    result = run("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"berrymq: error: {error}"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_added_by_two_plugins_names_both(tmp_path: Path) -> None:
    source = ("from berrymq.hookspecs import hookimpl\n@hookimpl\n"
              "def berrymq_register_commands(commands):\n"
              "    commands.add('hello', lambda a: 0, help='x')\n")
    plugin_site(tmp_path, "one", source, dist="bmq-one")
    env = plugin_site(tmp_path, "two", source, dist="bmq-two")
    result = run("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(
        r"berrymq: error: the berrymq command 'hello' is added by both plugin '(one|two)' "
        r"and plugin '(one|two)'; disable one of them \(the 'disable' list of \[berrymq\] "
        r"in the settings file\)\n", result.stderr), result.stderr
    assert len(set(re.findall("plugin '(one|two)'", result.stderr))) == 2


#: Plugins that cannot be loaded, and what the error says of each.
FAULTY = [
    ("def berrymq_register_transports(registry, nonsense):\n    pass",
     "cannot be registered: hookimpl definition: berrymq_register_transports(registry, "
     "nonsense); Argument(s) {'nonsense'} are declared in the hookimpl but can not be found "
     "in the hookspec"),
    ("def berrymq_declare_settings(schema):\n    raise RuntimeError('boom')",
     "raised RuntimeError in its hook berrymq_declare_settings: boom"),
    ("def berrymq_register_commands(commands):\n    raise KeyError('x')",
     "raised KeyError in its hook berrymq_register_commands: 'x'"),
    ("def berrymq_start_bus(bus):\n    pass\nraise ImportError('no module named missing')",
     "failed to load from bmq_outside_bad: no module named missing"),
]


@pytest.mark.parametrize(("hook", "problem"), FAULTY, ids=["parameter", "raises", "commands",
                                                             "import"])
def test_a_faulty_plugin_is_one_line_naming_it_and_the_fixes(
        tmp_path: Path, hook: str, problem: str) -> None:
    env = plugin_site(tmp_path, "bad", f"from berrymq.hookspecs import hookimpl\n@hookimpl\n{hook}\n")
    result = run("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"berrymq: error: plugin 'bad' (bmq-outside 0.1) {problem}; uninstall it, disable it "
        "in the settings file (disable = ['bad']) or set BERRYMQ_BLOCK_PLUGINS=bad\n")
    result = run("plugins", cwd=tmp_path, env={**env, "BERRYMQ_BLOCK_PLUGINS": "bad"})
    assert result.returncode == 0, result.stderr  # the fix it names works


def test_two_entry_points_naming_one_module_are_one_line_and_the_help_still_works(
        tmp_path: Path) -> None:
    """pluggy's bare ValueError ("Plugin already registered under a different name") was a
    traceback, exit 1, for every command, --help and --version, and any program."""
    env = plugin_site(tmp_path, "x1", "from berrymq.hookspecs import hookimpl\n"
                                      "@hookimpl\ndef berrymq_start_bus(bus):\n    pass\n")
    points = next((tmp_path / "site").glob("*.dist-info")) / "entry_points.txt"
    points.write_text(points.read_text() + "x2 = bmq_outside_x1\n")
    result = run("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(
        r"berrymq: error: plugin '(x1|x2)' \(bmq-outside 0.1\) cannot be registered: its "
        r"module bmq_outside_x1 is plugin '(x1|x2)' already \(two entry points name one "
        r"module\); uninstall it, disable it in the settings file \(disable = \['\1'\]\) or "
        r"set BERRYMQ_BLOCK_PLUGINS=\1\n", result.stderr), result.stderr
    for args in (("--help",), ("--version",)):
        result = run(*args, cwd=tmp_path, env=env)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "cannot load" in result.stdout  # --version marks the faulty plugin
    program = subprocess.run(
        [sys.executable, "-c", "import berrymq\ntry:\n    berrymq.twitter('a:b')\n"
         "except berrymq.PluginError as e:\n    print(e.plugin)\n"],
        cwd=tmp_path, env=clean_env(**env), capture_output=True, text=True, timeout=60)
    assert program.returncode == 0 and program.stdout.strip() in ("x1", "x2"), program.stderr


def test_a_settings_check_that_raises_is_one_line_naming_the_plugin(tmp_path: Path) -> None:
    env = plugin_site(tmp_path, "bad", "from berrymq.hookspecs import hookimpl\n@hookimpl\n"
                      "def berrymq_declare_settings(schema):\n    schema.add('bad', level=int)\n"
                      "    schema.add_check('bad', 'level', lambda v: 1 / 0)\n")
    (tmp_path / "berrymq.toml").write_text("[berrymq.bad]\nlevel = 1\n")
    result = run("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "berrymq: error: plugin 'bad' (bmq-outside 0.1) raised ZeroDivisionError in its check "
        f"of the setting bad.level (set at {tmp_path / 'berrymq.toml'}:2): division by zero"
        f"{_TURN_OFF}\n")


_RAISES_IN = "from berrymq.hookspecs import hookimpl\n@hookimpl\ndef {hook}:\n    raise RuntimeError('boom')\n"
_TURN_OFF = ("; uninstall it, disable it in the settings file (disable = ['bad']) or set "
             "BERRYMQ_BLOCK_PLUGINS=bad")


@pytest.mark.parametrize("args", [("demo",), ("serve", "--tcp", "127.0.0.1:0")])
def test_a_plugin_whose_start_hook_raises_is_one_line_naming_it_and_the_hook(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    """(``plugins`` starts no bus: it lists what loads, and asks for the status.)"""
    env = plugin_site(tmp_path, "bad", _RAISES_IN.format(hook="berrymq_start_bus(bus)"))
    result = run(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("berrymq: error: plugin 'bad' (bmq-outside 0.1) raised "
                             f"RuntimeError in its hook berrymq_start_bus: boom{_TURN_OFF}\n")
    assert "serving" not in result.stdout


def test_a_plugin_whose_status_hook_raises_is_listed_with_its_error(tmp_path: Path) -> None:
    env = plugin_site(tmp_path, "bad", _RAISES_IN.format(hook="berrymq_report_status(bus, report)"))
    result = run("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert ("status: bad: error: plugin 'bad' (bmq-outside 0.1) raised RuntimeError in its "
            f"hook berrymq_report_status: boom{_TURN_OFF}") in result.stdout.splitlines()
    assert any(line.startswith("bad ") for line in result.stdout.splitlines())


def test_an_outside_plugin_named_like_a_built_in_one_is_listed_and_a_warning(
        tmp_path: Path) -> None:
    env = plugin_site(tmp_path, "queues", "raise AssertionError('imported')\n")
    result = run("plugins", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 4) for line in result.stdout.splitlines()
            if line.startswith("queues ")]
    assert rows == [["queues", "berrymq", berrymq.__version__, "yes", "installed"],  # used
                    ["queues", "bmq-outside", "0.1", "no",
                     "not loaded: berryMQ's built-in plugin has this name"]], result.stdout
    assert ("plugin 'queues' of bmq-outside 0.1 (bmq_outside_queues) is not loaded: "
            "berryMQ's built-in plugin has this name; ask its authors to rename its entry "
            "point, or uninstall it") in result.stderr


def test_two_outside_plugins_of_one_name_the_second_is_listed_and_a_warning(
        tmp_path: Path) -> None:
    plugin_site(tmp_path, "twin", "", dist="bmq-first")
    env = plugin_site(tmp_path, "twin", "", dist="bmq-second")
    result = run("plugins", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    twins = [(p["distribution"], p["active"], p["reason"])
             for p in json.loads(result.stdout)["plugins"] if p["name"] == "twin"]
    assert len(twins) == 2 and twins[0][1] and not twins[1][1], twins
    first, second = twins[0][0], twins[1][0]  # the order of sys.path's listing
    assert twins[1][2] == f"not loaded: the plugin of {first} 0.1 has this name"
    assert f"plugin 'twin' of {second} 0.1" in result.stderr


def test_demo_runs(tmp_path: Path) -> None:
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "receive_log: do_something:log" in result.stdout
    assert "receive_result: processed report.txt" in result.stdout
    assert "queued: 3 first: (0,) then: (1,)" in result.stdout
    assert "ask('price:quote', 2) -> [19.0]" in result.stdout
    assert "got child:hello ('from process'" in result.stdout
    assert "its _secret:x never left it: True" in result.stdout


def test_no_command_prints_the_help(tmp_path: Path) -> None:
    result = run(cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: berrymq")
    assert "exit status: 0 done; 1 the run failed" in result.stdout  # the epilog documents it
    for command in ("plugins", "demo", "graph", "serve", "send", "listen"):
        assert f"    {command} " in result.stdout


def test_plugins_json(tmp_path: Path) -> None:
    result = run("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    queues = next(p for p in report["plugins"] if p["name"] == "queues")
    assert queues == {"name": "queues", "distribution": "berrymq", "version": berrymq.__version__,
                      "module": queues["module"], "active": True, "reason": queues["reason"]}
    assert report["settings"] is None and isinstance(report["status"], dict)


def test_graph_json_and_the_exit_status_of_a_usage_error(tmp_path: Path) -> None:
    result = run("graph", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    description = json.loads(result.stdout)
    assert description["receivers"] == [] and "node" in description
    result = run("graph", "--format", "svg", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'svg'" in result.stderr


class _HelloPlugin:
    """A plugin registered in code that adds a command and an option to another."""

    @hookimpl
    def berrymq_register_commands(self, commands: Commands) -> None:
        p = commands.add("hello", self.run, help="say hello")
        p.add_argument("name")
        graph = commands.get("graph")
        assert graph is not None
        graph.add_argument("--shout", action="store_true")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 7


def test_a_plugin_adds_a_command_through_berrymq_register_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = reset_plugin_host(PluginHost(Settings(), extra_plugins=[("hello", _HelloPlugin())]))
    try:
        parser = build_parser()
        assert main(["hello", "world"]) == 7
        assert capsys.readouterr().out == "hello world\n"
        assert parser.parse_args(["graph", "--shout"]).shout is True
        # the JSON-RPC distribution, through the transport plugins, adds the node commands
        args = parser.parse_args(["serve", "--tcp", ":0", "--http", "0"])
        assert args.serve_tcp == [":0"] and args.serve_http == ["0"]
        assert parser.parse_args(["graph", "tcp://127.0.0.1:1"]).url == "tcp://127.0.0.1:1"
    finally:
        reset_plugin_host(old)


class _ServeOptionPlugin:
    """A plugin that adds an option to ``serve`` as the hookspec says, with
    ``commands.get("serve")``."""

    @hookimpl
    def berrymq_register_commands(self, commands: Commands) -> None:
        serve = commands.get("serve")
        if serve is None:
            raise RuntimeError(f"no serve among {commands.names()}")
        serve.add_argument("--quiet-banner", action="store_true")


@pytest.mark.parametrize("name", ["aaa-serveopt", "zzz-serveopt"])
def test_a_plugin_finds_serve_to_add_an_option_to_whatever_its_name(name: str) -> None:
    """Plugins are registered by name and pluggy calls the last registered first: one
    named after the transport plugins ran before ``serve`` existed (found by an outside
    audit). The transport plugins' implementations run first."""
    old = reset_plugin_host(PluginHost(Settings(), extra_plugins=[(name, _ServeOptionPlugin())]))
    try:
        args = build_parser().parse_args(["serve", "--tcp", ":0", "--quiet-banner"])
        assert args.quiet_banner is True and args.serve_tcp == [":0"]
    finally:
        reset_plugin_host(old)


def test_a_plugins_command_that_raises_is_one_line_naming_command_and_plugin(
        tmp_path: Path) -> None:
    """A raw traceback before (exit 1 still: the run failed, the command line was right)."""
    env = plugin_site(tmp_path, "crasher", "from berrymq.hookspecs import hookimpl\n"
                      "def run(args):\n    raise RuntimeError('crashed\\nat last')\n"
                      "@hookimpl\ndef berrymq_register_commands(commands):\n"
                      "    commands.add('crash', run, help='crashes')\n")
    result = run("crash", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == ("berrymq: error: the command 'crash' (plugin 'crasher') failed: "
                             "RuntimeError: crashed at last\n")


def test_without_the_transport_plugins_there_is_no_serve(tmp_path: Path) -> None:
    env = {**os.environ, "BERRYMQ_BLOCK_PLUGINS": "jsonrpc-tcp,jsonrpc-http"}
    for command in ("serve", "send", "ask", "listen", "status"):  # named with what to do
        result = run(command, cwd=tmp_path, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(
            f"berrymq: error: the command {command!r} comes from the plugin 'jsonrpc-tcp' "
            "or 'jsonrpc-http', and none is active: plugin 'jsonrpc-tcp' is installed but "
            "not active (blocked by BERRYMQ_BLOCK_PLUGINS)"), result.stderr
    result = run("sevre", cwd=tmp_path, env=env)  # any other word: unknown, which may be
    assert result.returncode == 2 and "unknown command 'sevre'" in result.stderr  # theirs
    assert "not active may add it: 'jsonrpc-http', 'jsonrpc-tcp'" in result.stderr
    result = run("graph", "--format", "mermaid", cwd=tmp_path, env=env)
    assert result.returncode == 0 and result.stdout.startswith("flowchart LR")


def test_graph_url_and_serve_monitor_without_their_plugins_say_how_to_have_them(
        tmp_path: Path) -> None:
    env = {"BERRYMQ_BLOCK_PLUGINS": "jsonrpc-tcp,jsonrpc-http"}
    result = run("graph", "tcp://127.0.0.1:5999", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "berrymq: error: graph URL (a running node) comes from the plugin 'jsonrpc-tcp' or "
        "'jsonrpc-http', and none is active: plugin 'jsonrpc-tcp' is installed but not "
        "active (blocked by BERRYMQ_BLOCK_PLUGINS)"), result.stderr
    result = run("serve", "--tcp", "127.0.0.1:0", "--monitor", "127.0.0.1:0", cwd=tmp_path,
                 env={"BERRYMQ_BLOCK_PLUGINS": "jsonrpc-http"})
    assert result.returncode == 2
    assert result.stderr == (
        "berrymq: error: --monitor comes from the plugin 'jsonrpc-http', which is not active: "
        "plugin 'jsonrpc-http' is installed but not active (blocked by BERRYMQ_BLOCK_PLUGINS); "
        "remove 'jsonrpc-http' from the environment variable BERRYMQ_BLOCK_PLUGINS\n")


def test_an_option_of_an_inactive_transport_says_how_to_have_it(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text('[berrymq]\nplugins = ["local", "jsonrpc-tcp"]\n')
    result = run("serve", "--http", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "berrymq: error: --http comes from the plugin 'jsonrpc-http', which is not active: "
        "plugin 'jsonrpc-http' is installed but not active (not in the plugins list in "
        f"{tmp_path / 'berrymq.toml'}); enable it in {tmp_path / 'berrymq.toml'}")


def test_how_to_get_a_plugin_that_is_not_installed() -> None:
    """No package index serves the plugins: the hint is a pip install from a checkout."""
    host = PluginHost(Settings())
    assert host.how_to_get("jsonrpc-zmq", "berrymq-jsonrpc-zmq") == (
        "install the plugin 'jsonrpc-zmq' (in a berryMQ checkout: pip install "
        "./plugins/berrymq-jsonrpc ./plugins/berrymq-jsonrpc-zmq)")

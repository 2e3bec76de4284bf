"""The example receiver plugin ``examples/berrymq-jsonl`` (issue 2, point 8).

Two layers: the plugin's behaviour, loaded in this process through a
:class:`~berrymq.plugins.PluginHost` as an extra plugin; and the real thing, a virtual
environment into which the core and the plugin are installed with pip, where the
``berrymq`` command discovers the plugin through its entry point, settings activate and
disable it, and a program's messages land in the file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from types import ModuleType

import pytest

import berrymq
from berrymq.errors import PluginNotAvailable, SettingsError
from berrymq.hookspecs import hookimpl
from berrymq.plugins import PluginHost
from berrymq.registries import ReceiverRegistry
from berrymq.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "examples" / "berrymq-jsonl"


def _load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "berrymq_jsonl_under_test", PLUGIN_DIR / "berrymq_jsonl" / "plugin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load_plugin()


def _host(settings: Settings) -> PluginHost:
    return PluginHost(settings, entry_points=False, extra_plugins=[("jsonl", plugin)])


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- in this process -------------------------------------------------------------------------


def test_writes_matching_messages_as_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "messages.jsonl"
    host = _host(Settings(tables={"jsonl": {"path": str(out), "pattern": "job:*"}}))
    with berrymq.Bus(raise_errors=True, plugins=host) as bus:
        bus.twitter("job:done", 1, "two", user="ada")
        bus.twitter("other:done", 3)  # does not match job:*
        bus.twitter("job@ops:done", 4)  # another namespace: does not match either
        bus.twitter("*:start", when=object())  # a wildcard sender reaches job:*
        assert plugin.writer_for(bus) is not None
    records = _lines(out)
    assert [(r["id"], r["args"]) for r in records] == [("job:done", [1, "two"]), ("*:start", [])]
    assert records[0]["kwargs"] == {"user": "ada"}
    assert records[0]["namespace"] is None
    # Not JSON: written as its repr, the line is not lost.
    assert str(records[1]["kwargs"]["when"]).startswith("<object object at")  # type: ignore[index]


def test_relative_path_is_next_to_the_settings_file_and_patterns_may_be_a_list(
    tmp_path: Path,
) -> None:
    config = tmp_path / "conf" / "berrymq.toml"
    config.parent.mkdir()
    config.write_text(
        '[berrymq.jsonl]\npath = "log.jsonl"\npattern = ["a:*", "*:b"]\n', encoding="utf-8"
    )
    host = _host(load_settings(config))
    with berrymq.Bus(raise_errors=True, plugins=host) as bus:
        for ident in ("a:x", "c:b", "c:x", "a:b"):
            bus.twitter(ident)
    # a:b matches both patterns: one line per subscription, in registration order.
    assert [r["id"] for r in _lines(config.parent / "log.jsonl")] == ["a:x", "c:b", "a:b", "a:b"]


def test_close_stops_writing_and_closes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    host = _host(Settings(tables={"jsonl": {"path": str(out)}}))
    bus = berrymq.Bus(raise_errors=True, plugins=host)
    bus.twitter("x:y")
    writer = plugin.writer_for(bus)
    assert writer is not None and writer.count == 1
    bus.close()
    assert plugin.writer_for(bus) is None
    assert writer.subscriptions == []
    writer(berrymq.Message("late:message"))  # a worker that raced with close: ignored
    assert len(_lines(out)) == 1


def test_without_a_path_the_plugin_is_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    host = _host(Settings())
    with berrymq.Bus(plugins=host) as bus:
        bus.twitter("x:y")
        assert plugin.writer_for(bus) is None
        assert host.status(bus).lines["jsonl"] == ["idle: no path set in [berrymq.jsonl]"]
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_key_names_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text('[berrymq.jsonl]\npath = "m.jsonl"\ncolour = "red"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        _host(load_settings(config))
    assert info.value.line == 3
    assert "colour" in str(info.value) and str(config) in str(info.value)


def test_a_wrong_type_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text("[berrymq.jsonl]\npath = 3\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"jsonl\.path must be a string"):
        _host(load_settings(config))


@pytest.mark.parametrize(("value", "problem"), [
    ('"job *"', "jsonl.pattern 'job *' is not a pattern: it contains whitespace"),
    ('["a:*", "te*:x"]', "jsonl.pattern 'te*:x' is not a pattern: the name 'te*' has a partial"),
    ("[1]", "jsonl.pattern must be a string or a list of strings, got 1 in the list"),
    ("[]", "jsonl.pattern must not be an empty list"),
])
def test_a_bad_pattern_is_an_error_naming_the_setting_and_line_when_plugins_load(
        tmp_path: Path, value: str, problem: str) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text(f'[berrymq.jsonl]\npath = "m.jsonl"\npattern = {value}\n', encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        _host(load_settings(config))  # what berrymq plugins does: no bus, no message yet
    assert str(info.value).startswith(f"{config}:3: {problem}"), str(info.value)
    assert not (tmp_path / "m.jsonl").exists()


def test_a_path_in_a_missing_folder_or_naming_a_folder_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text('[berrymq.jsonl]\npath = "logs/m.jsonl"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        _host(load_settings(config))
    assert str(info.value) == (f"{config}:2: jsonl.path is in a folder that does not exist: "
                               f"{tmp_path / 'logs'}")
    (tmp_path / "logs").mkdir()
    with berrymq.Bus(raise_errors=True, plugins=_host(load_settings(config))) as bus:
        bus.twitter("x:y")  # relative to the settings file's folder, as the check saw it
    assert [r["id"] for r in _lines(tmp_path / "logs" / "m.jsonl")] == ["x:y"]
    config.write_text('[berrymq.jsonl]\npath = "logs"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"berrymq.toml:2: jsonl.path names a folder"):
        _host(load_settings(config))


def test_lines_from_worker_threads_never_interleave(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    host = _host(Settings(tables={"jsonl": {"path": str(out)}}))
    with berrymq.Bus(raise_errors=True, plugins=host, multiplicity=4) as bus:
        def send(t: int) -> None:
            for n in range(100):
                bus.twitter("load:test", t, n, pad="x" * 500)

        senders = [threading.Thread(target=send, args=(t,)) for t in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        assert bus.join(30)
    records = _lines(out)  # json.loads fails on a torn line
    assert sorted(tuple(r["args"]) for r in records) == [  # type: ignore[arg-type]
        (t, n) for t in range(4) for n in range(100)
    ]


class _LinesKind:
    """A receiver kind of a user's plugin: what the public API would look up by name."""

    name = "lines"
    answers = False

    def follow(self, bus: berrymq.Bus, pattern: str, out: list[str]) -> berrymq.Subscription:
        return bus.subscribe(pattern, lambda m: out.append(m.id), weak=False, kind="lines")


class _LinesPlugin:
    def __init__(self, kind: str = "lines") -> None:
        self.kind = kind

    @hookimpl
    def berrymq_register_receivers(self, registry: ReceiverRegistry) -> None:
        registry.add(self.kind, _LinesKind(), plugin="lines")


def test_a_plugin_adds_a_receiver_kind_through_berrymq_register_receivers() -> None:
    host = PluginHost(Settings(), entry_points=False, extra_plugins=[("lines", _LinesPlugin())])
    kind = host.receiver("lines")
    assert isinstance(kind, _LinesKind) and host.receivers.plugin_for("lines") == "lines"
    out: list[str] = []
    with berrymq.Bus(raise_errors=True, plugins=host) as bus:
        kind.follow(bus, "a:*", out)
        bus.twitter("a:b")
    assert out == ["a:b"]


def test_a_disabled_receiver_kind_is_reported_by_name() -> None:
    host = PluginHost(Settings(disable=("lines",)), entry_points=False,
                      extra_plugins=[("lines", _LinesPlugin())])
    with pytest.raises(PluginNotAvailable, match=r"'lines' is installed but not active"):
        host.receiver("lines")


def test_two_plugins_claiming_one_receiver_kind_is_an_error_naming_both() -> None:
    with pytest.raises(SettingsError, match=r"'functions' is claimed by both plugin") as info:
        PluginHost(Settings(), entry_points=False,
                   extra_plugins=[("lines", _LinesPlugin("functions"))])
    assert "plugin 'lines'" in str(info.value) and "plugin 'functions'" in str(info.value)


# -- installed into a virtual environment --------------------------------------------------


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 120
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _see_the_packages_of_this_interpreter(python: Path) -> None:
    """Make what the interpreter under test has (pluggy, pip, ...) visible in the new venv,
    offline and whether or not this interpreter runs in a venv of its own, like
    ``--system-site-packages`` does for a base interpreter. ``site.addsitedir`` also runs
    the ``.pth`` files there (editable installs). The new venv's own packages come first."""
    site_packages = _ok(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             python.parent, dict(os.environ))).strip()
    dirs = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs)
    (Path(site_packages) / "_under_test.pth").write_text(lines, encoding="utf-8")


SEND = """
import berrymq
berrymq.twitter("job:done", 1, user="ada")
berrymq.twitter("other:thing", 2)
berrymq.twitter("job:failed", reason="disk full")
berrymq.get_bus().close()
print("sent")
"""


@pytest.mark.slow
def test_installed_plugin_is_discovered_activated_by_settings_and_receiving(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, dict(os.environ)))
    python = venv / "bin" / "python"
    _see_the_packages_of_this_interpreter(python)
    env = {k: v for k, v in os.environ.items()
           if k not in ("BERRYMQ_CONFIG", "BERRYMQ_BLOCK_PLUGINS", "PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    source = tmp_path / "berrymq-jsonl"  # a copy: building must not litter the checkout
    shutil.copytree(PLUGIN_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    # Offline: no index, no isolated build (setuptools comes from the interpreter under test).
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    _ok(_run([*pip, "-e", ROOT], tmp_path, env))
    _ok(_run([*pip, source], tmp_path, env))
    berrymq_cmd = venv / "bin" / "berrymq"
    work = tmp_path / "work"
    work.mkdir()

    # Installed and configured: discovered through the entry point, active, receiving.
    (work / "berrymq.toml").write_text(
        '[berrymq]\nplugins = ["local", "jsonl"]\n\n'
        '[berrymq.jsonl]\npath = "messages.jsonl"\npattern = "job:*"\n',
        encoding="utf-8",
    )
    listing = _ok(_run([berrymq_cmd, "plugins"], work, env))
    assert re.search(r"^jsonl\s+berrymq-jsonl\s+0\.1\.0\s+yes\s+listed in ", listing, re.M), listing
    assert "status: jsonl: will write job:* to messages.jsonl" in listing
    assert _ok(_run([python, "-c", SEND], work, env)).strip() == "sent"
    records = _lines(work / "messages.jsonl")
    assert [(r["id"], r["args"], r["kwargs"]) for r in records] == [
        ("job:done", [1], {"user": "ada"}),
        ("job:failed", [], {"reason": "disk full"}),
    ]

    # Disabled by the settings file: still listed, not active, writes nothing.
    (work / "messages.jsonl").unlink()
    (work / "berrymq.toml").write_text(
        '[berrymq]\ndisable = ["jsonl"]\n\n[berrymq.jsonl]\npath = "messages.jsonl"\n',
        encoding="utf-8",
    )
    listing = _ok(_run([berrymq_cmd, "plugins"], work, env))
    disabled = r"^jsonl\s+berrymq-jsonl\s+0\.1\.0\s+no\s+disabled in "
    assert re.search(disabled, listing, re.M), listing
    assert _ok(_run([python, "-c", SEND], work, env)).strip() == "sent"
    assert not (work / "messages.jsonl").exists()

    # A typo in its table is reported by the command with the file and the line.
    (work / "berrymq.toml").write_text(
        '[berrymq.jsonl]\npath = "messages.jsonl"\npatern = "job:*"\n', encoding="utf-8"
    )
    failed = _run([berrymq_cmd, "plugins"], work, env)
    assert failed.returncode == 2, failed
    assert "berrymq.toml:3:" in failed.stderr and "'patern'" in failed.stderr, failed.stderr

    # So is a value it could not use, before any message: the command checks it too.
    (work / "berrymq.toml").write_text(
        '[berrymq.jsonl]\npath = "messages.jsonl"\npattern = "job *"\n', encoding="utf-8"
    )
    failed = _run([berrymq_cmd, "plugins"], work, env)
    assert failed.returncode == 2, failed
    assert "berrymq.toml:3: jsonl.pattern 'job *' is not a pattern" in failed.stderr, failed.stderr

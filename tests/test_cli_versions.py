"""SPEC 9: ``berrymq --version`` (berrymq._cli_versions) names berryMQ's version and its
plugins' distributions, and marks each plugin that cannot load instead of failing."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import pytest
from helpers import plugin_site
from helpers import run_berrymq as run

import berrymq


@pytest.mark.parametrize("args", [(), ("--help",), ("plugins", "--help"), ("--version",)])
def test_help_and_version_work_when_the_plugins_cannot_load(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    env = plugin_site(tmp_path, "bad", "raise ImportError('no module named missing')\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "berrymq.toml").write_text('[berrymq]\nhop_limit = "x"\n')
    for cwd, cause in ((tmp_path, "plugin 'bad' (bmq-outside 0.1) failed to load"),
                       (tmp_path / "other",
                        f"{tmp_path / 'other' / 'berrymq.toml'}:2: hop_limit must be an integer")):
        result = run(*args, cwd=cwd, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr.startswith(f"berrymq: warning: plugins not loaded: {cause}")
        if args == ("--version",):
            assert result.stdout.startswith(f"berrymq {berrymq.__version__} (Python ")
            faulty = "bmq-outside 0.1" + (" (plugin 'bad' cannot load)" if cwd == tmp_path else "")
            assert faulty in result.stdout.splitlines(), result.stdout
        else:
            assert result.stdout.startswith("usage: berrymq"), result.stdout


def test_help_says_what_failed_when_the_plugins_loaded_but_a_command_hook_raised(
        tmp_path: Path) -> None:
    """It said "plugins not loaded", though they had loaded."""
    env = plugin_site(tmp_path, "bad", "from berrymq.hookspecs import hookimpl\n@hookimpl\n"
                      "def berrymq_register_commands(commands):\n    raise KeyError('x')\n")
    result = run("--help", cwd=tmp_path, env=env)
    assert result.returncode == 0 and result.stdout.startswith("usage: berrymq")
    assert result.stderr.startswith(
        "berrymq: warning: the plugins' commands not added (the help shows berryMQ's own): "
        "plugin 'bad' (bmq-outside 0.1) raised KeyError in its hook berrymq_register_commands"
    ), result.stderr


def test_version_marks_every_plugin_that_cannot_load(tmp_path: Path) -> None:
    """The load stops at the first faulty plugin: a second one (here a misspelled hook,
    which every other command refuses to run with) was listed as if it loaded."""
    plugin_site(tmp_path, "broken", "raise ImportError('no module named missing')\n",
          dist="bmq-broken")
    env = plugin_site(tmp_path, "typo", "from berrymq.hookspecs import hookimpl\n@hookimpl\n"
                "def berrymq_register_transport(registry):\n    pass\n", dist="bmq-typo")
    result = run("--version", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "bmq-broken 0.1 (plugin 'broken' cannot load)" in lines, lines
    assert "bmq-typo 0.1 (plugin 'typo' cannot load)" in lines, lines
    result = run("plugins", cwd=tmp_path, env={**env, "BERRYMQ_BLOCK_PLUGINS": "broken"})
    assert result.returncode == 2 and "plugin 'typo'" in result.stderr  # as --version says


def test_version_names_the_core_and_the_plugin_distributions(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"berrymq {berrymq.__version__} (Python ")
    for distribution in ("berrymq-jsonrpc", "berrymq-jsonrpc-tcp", "berrymq-jsonrpc-http"):
        assert f"{distribution} {metadata.version(distribution)}" in lines


@pytest.mark.parametrize("args", [("--version", "--json"), ("--json", "--version")])
def test_version_with_json_is_one_json_object(tmp_path: Path, args: tuple[str, ...]) -> None:
    """SPEC 9 lists ``--version`` and ``--json`` as options of ``berrymq``: together they
    printed the text (``--json`` after ``--version`` was not read)."""
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    assert (versions["berrymq"], versions["python"]) == (berrymq.__version__,
                                                         platform.python_version())
    assert versions["distributions"]["berrymq-jsonrpc"] == metadata.version("berrymq-jsonrpc")


def test_json_before_the_command_is_the_commands_own_json(tmp_path: Path) -> None:
    """``berrymq --json plugins`` was a usage error (only ``plugins --json`` was known)."""
    before, after = run("--json", "plugins", cwd=tmp_path), run("plugins", "--json", cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)

"""SPEC 9: the berrymq command (plugins, demo)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import berrymq


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "berrymq", *args], capture_output=True, text=True, timeout=60,
        cwd=cwd, env=env,
    )


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


def test_bad_settings_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text('[berrymq]\nplugins = ["ghost"]\n')
    result = run("plugins", cwd=tmp_path)
    assert result.returncode == 2
    assert "berrymq: error:" in result.stderr and "unknown plugin 'ghost'" in result.stderr
    assert "berrymq.toml:2:" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs(tmp_path: Path) -> None:
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "receive_log: do_something:log" in result.stdout
    assert "receive_result: processed report.txt" in result.stdout
    assert "queued: 3 first: (0,) then: (1,)" in result.stdout
    assert "ask('price:quote', 2) -> [19.0]" in result.stdout
    assert "got child:hello ('from process'" in result.stdout
    assert "its _secret:x never left it: True" in result.stdout


def test_no_command_shows_usage(tmp_path: Path) -> None:
    result = run(cwd=tmp_path)
    assert result.returncode == 2 and "usage: berrymq" in result.stderr

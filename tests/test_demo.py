"""``berrymq demo`` shows each feature's code, then what that code printed (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from berrymq.demo import SECTIONS, body_of


def _demo(tmp_path: Path, *args: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-m", "berrymq", "demo", *args], cwd=tmp_path,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout


def test_each_section_shows_its_code_then_what_it_printed(tmp_path: Path) -> None:
    out = _demo(tmp_path)
    position = 0
    for title, section in SECTIONS:
        heading = out.index(f"== {title}\n", position)
        code = out.index("\n".join("    " + line if line else "" for line in
                                   body_of(section).splitlines()), heading)
        printed = out.index("\n  printed:\n", code)
        position = printed
    blocks = {title: out.split(f"== {title}\n", 1)[1].split("\n== ", 1)[0] for title, _ in SECTIONS}
    def printed_lines(title: str) -> list[str]:
        return [line.removeprefix("    > ") for line in
                blocks[title].split("\n  printed:\n", 1)[1].splitlines() if line.startswith("    > ")]
    assert printed_lines("push: methods of Follower classes") == [
        "Logger got job:done user=ada", "Logger got *:done user=everyone"]
    assert printed_lines("pull: a queue stores what matches") == ["queued: 3 first: (0,) then: (1,)"]
    assert printed_lines("talk: replies come back as messages") == [
        "receive_result: processed report.txt"]
    assert printed_lines("ask: request/reply returns every receiver's answer") == [
        "ask('price:quote', 2) -> [19.0]"]
    between = printed_lines("between processes: JSON-RPC over TCP")
    assert between[1].startswith("got child:hello ('from process'")
    assert between[2] == "its _secret:x never left it: True"


def test_json_gives_each_section_as_an_object_of_its_own_line(tmp_path: Path) -> None:
    """``demo --json`` (issue 12: ``--json`` for every command's output; it was refused)."""
    sections = [json.loads(line) for line in _demo(tmp_path, "--json").splitlines()]
    assert [(s["title"], s["code"]) for s in sections] == [
        (title, body_of(section)) for title, section in SECTIONS]
    printed = {s["title"]: s["printed"] for s in sections}
    assert printed["ask: request/reply returns every receiver's answer"] == (
        "ask('price:quote', 2) -> [19.0]")
    assert printed["pull: a queue stores what matches"] == "queued: 3 first: (0,) then: (1,)"


def test_without_the_tcp_plugin_the_demo_says_what_to_install(tmp_path: Path) -> None:
    out = _demo(tmp_path, BERRYMQ_BLOCK_PLUGINS="jsonrpc-tcp")
    assert "> skipped: no transport for tcp:// addresses: plugin 'jsonrpc-tcp' is installed " \
           "but not active (blocked by BERRYMQ_BLOCK_PLUGINS)" in out
    # examples/ and docs/ ship in neither the wheel nor the sdist: the last line says where
    assert out.rstrip().splitlines()[-1] == (
        "done: examples/ and docs/ in berryMQ's source repository show more; "
        "`berrymq plugins` lists the installed plugins")


@pytest.mark.parametrize(("title", "section"), SECTIONS, ids=[t for t, _ in SECTIONS])
def test_a_section_body_is_code(title: str, section: object) -> None:
    body = body_of(section)  # type: ignore[arg-type]
    compile(body, title, "exec")
    assert not body.startswith("def ")

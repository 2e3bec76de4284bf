"""Every example under ``examples/`` runs, as a user would run it, and prints what its
docstring says under "Expected output:" (``...`` stands for a part that varies, such as
a time). Examples that need servers, brokers or other languages (between processes, NATS,
the network picture of a remote node) have tests of their own and are not run here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Owned and tested elsewhere: they need servers, brokers or other languages.
OTHERS = ("ipc_", "nats_", "network_")
MARKER = "Expected output:"


def _examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith(OTHERS))


def _expected(path: Path) -> list[str]:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    _, marker, tail = docstring.partition(MARKER)
    assert marker, f"{path.name}: the docstring has no {MARKER!r} section"
    lines = []
    for line in tail.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        if line:
            lines.append(line[4:])
    assert lines, f"{path.name}: the {MARKER!r} section is empty"
    return lines


def test_there_are_examples_of_every_seed_sample() -> None:
    names = {p.name for p in _examples()}
    assert {"push_functions.py", "push_follower.py", "pull_queue.py", "talk.py"} <= names


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_example_runs_and_prints_what_it_says(path: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = result.stdout.splitlines()
    expected = _expected(path)
    assert len(printed) == len(expected), "\n".join(printed)
    for got, want in zip(printed, expected, strict=True):
        pattern = ".*".join(re.escape(part) for part in want.split("..."))
        assert re.fullmatch(pattern, got), f"{path.name}: printed {got!r}, expected {want!r}"

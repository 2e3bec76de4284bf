"""SPEC 9: a ``berrymq`` command whose stdout is closed (``>&-``) or whose reader went
away (``| head -1``) stops printing and exits as it would have, without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env, run_berrymq_without_reader


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "no-reader"])
@pytest.mark.parametrize("args", [("demo",), ("graph",), ("graph", "--json"), ("plugins",),
                                  ("plugins", "--json"), ("--version",), ("--help",)])
def test_a_command_without_a_reader_of_its_output_exits_0_quietly(
        tmp_path: Path, args: tuple[str, ...], closed: bool) -> None:
    result = run_berrymq_without_reader(*args, closed=closed, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("args", [("--version",), ("plugins",)])
def test_a_command_whose_output_fails_says_so_in_one_line(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    """Writing to stdout fails for another reason than a reader gone (``> /dev/full``):
    one line naming the error and exit status 1; ``--version`` printed a traceback (found
    by a review)."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "berrymq", *args], cwd=tmp_path,
                                text=True, stdout=full, stderr=subprocess.PIPE, timeout=60,
                                env=clean_env())
    assert result.returncode == 1
    assert result.stderr.startswith("berrymq: error: "), result.stderr
    assert "No space left on device" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr

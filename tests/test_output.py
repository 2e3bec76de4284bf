"""SPEC 9: a ``berrymq`` command whose stdout is closed (``>&-``) or whose reader went
away (``| head -1``) stops printing and exits as it would have, without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_berrymq_without_reader


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "no-reader"])
@pytest.mark.parametrize("args", [("demo",), ("graph",), ("graph", "--json"), ("plugins",),
                                  ("plugins", "--json"), ("--version",), ("--help",)])
def test_a_command_without_a_reader_of_its_output_exits_0_quietly(
        tmp_path: Path, args: tuple[str, ...], closed: bool) -> None:
    result = run_berrymq_without_reader(*args, closed=closed, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")

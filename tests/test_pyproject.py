"""berrymq._pyproject: whether a pyproject.toml holds berryMQ's table, valid or not (the
search that uses it, find_settings, is tested in test_settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from berrymq._pyproject import holds_our_table


@pytest.mark.parametrize(("text", "ours"), [
    ('[tool.berrymq]\nhop_limit = 3\n', True),
    ('[berrymq]\nhop_limit = 3\n', True),  # in the wrong place: refused when loaded
    ('[tool.black]\nline = 1\n', False),
    ('[tool]\nberrymq = { hop_limit = 3 }\nbroken = [\n', True),
    ('[ "tool" . "berrymq" ]\nbroken = [\n', True),
    ('[project]\ndependencies = ["berrymq==0.4"]\nbroken = [\n', False),
    ('[project]\ndependencies = [\n  "berrymq >= 0.4",\n]\nbroken = [\n', False),
    # Poetry's dependency tables name the package as a key: it was taken for our table,
    # and the broken file stopped every berrymq command and the library
    ('[tool.poetry.dependencies]\nberrymq = "^0.4"\nbroken = [\n', False),
    ('[tool.poetry.group.dev.dependencies]\nberrymq = { version = "^0.4" }\nbroken = [\n',
     False),
    ('tool.berrymq.hop_limit = 3\nbroken = [\n', True),  # dotted keys before any header
    ('[tool]\nberrymq.hop_limit = 3\nbroken = [\n', True),
    ('[tool.berrymq.nats]\nbroken = [\n', True),
    ('[tool.poetry.dependencies.berrymq]\nversion = "^0.4"\nbroken = [\n', False),
    ('[project.optional-dependencies]\nberrymq = ["berrymq[nats]"]\nbroken = [\n', False),
    # a comment after a header, a line of an array that starts with "[", a BOM: each was
    # taken for no table of ours, and the allow-list was dropped in silence
    ('[tool.berrymq]  # ours\nbroken = [\n', True),
    ('[tool] # berryMQ settings\nberrymq.plugins = ["jsonrpc-tcp"]\n[project]\ndeps = [\n', True),
    ('[tool]\nmatrix = [\n  ["a", "b"],\n]\nberrymq = { plugins = [] }\nbroken = [\n', True),
    ('\ufeff[tool.berrymq]\nhop_limit = 3\n', True),
])
def test_the_table_however_written_and_never_a_requirement(tmp_path: Path, text: str,
                                                            ours: bool) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    assert holds_our_table(path) is ours

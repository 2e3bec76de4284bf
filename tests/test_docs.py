"""The documentation keeps up with the code (in the manner of datasette's
``test_docs.py``): every hook is documented and tested, every public name is in the API
reference, and every example plugin hook the docs promise exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import hook_names

import berrymq
from berrymq.settings import CORE_KEYS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
THIS = Path(__file__).resolve()


def _docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))


def _tests_text() -> str:
    files = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py")]
    return "\n".join(
        p.read_text(encoding="utf-8") for p in sorted(files) if p.resolve() != THIS
    )


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_documented(hook: str) -> None:
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    assert re.search(rf"^#+ {hook}\s*$", text, re.M), (
        f"docs/plugins.md has no heading for the hook {hook}"
    )
    assert f"autofunction:: berrymq.hookspecs.{hook}" in text


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_tested(hook: str) -> None:
    assert re.search(rf"\b{hook}\b", _tests_text()), f"no test under tests/ mentions {hook}"


@pytest.mark.parametrize("name", berrymq.__all__)
def test_public_name_is_in_the_api_reference(name: str) -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    assert re.search(rf"berrymq\.{re.escape(name)}\b", text), (
        f"berrymq.{name} is public (in __all__) but not in docs/api.md"
    )


def test_every_page_is_in_the_toctree() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    toctree = re.search(r"```\{toctree\}\n(.*?)```", index, re.S)
    assert toctree is not None
    assert ":glob:" in toctree.group(1) and re.search(r"^\*$", toctree.group(1), re.M), (
        "the index's toctree must glob every page"
    )


def test_the_docs_mention_the_settings_keys_of_the_core() -> None:
    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    for key in CORE_KEYS:
        assert f"`{key}`" in text, f"docs/settings.md does not describe [berrymq] {key}"


def test_the_performance_page_has_the_benchmark_table() -> None:
    text = (DOCS / "performance.md").read_text(encoding="utf-8")
    assert "| berrymq twitter, 1 receiver " in text
    assert "pyee EventEmitter.emit" in text

"""The newcomer's pages (issue 12, point 4): the index's sample does what its comments
say, the CLI reference is generated from the parser (every command, also ones added
later), and each language page walks through the three connection styles."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from berrymq.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _cli_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("berrymq_cli_ext", DOCS / "_ext" / "berrymq_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_index_sample_prints_what_its_comments_say(tmp_path: Path) -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    sample = re.search(r"```python\n(.*?)```", index, re.S)
    assert sample is not None
    code = sample.group(1)
    expected = [m.group(1) for m in re.finditer(r"#\s+(\S.*\S)\s*$", code, re.M)
                if not m.group(1).startswith("a queue")]
    (tmp_path / "sample.py").write_text(code, encoding="utf-8")
    out = subprocess.run([sys.executable, "sample.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.splitlines() == expected
    assert "overview.svg" in index and (DOCS / "overview.svg").read_text().startswith("<?xml")


def test_the_cli_reference_has_every_command_and_option() -> None:
    commands = {c.path: c for c in _cli_extension().walk(build_parser())}
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands) == {"berrymq"} | {f"berrymq {name}" for name in sub.choices}
    for name, command_parser in sub.choices.items():
        documented = " ".join(a.names for a in commands[f"berrymq {name}"].arguments)
        for action in command_parser._actions:
            for option in action.option_strings:
                assert option in documented or option in ("-h", "--help"), (name, option)
    graph = commands["berrymq graph"]
    assert graph.usage.startswith("usage: berrymq graph")
    assert any(a.names == "--format {dot,mermaid}" and "default: dot" in a.help
               for a in graph.arguments)


def test_a_command_added_later_appears_with_its_subcommands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    added = sub.add_parser("inspect", help="what a node is doing")
    added.add_argument("url", metavar="URL", help="the node")
    nested = added.add_subparsers(dest="what").add_parser("queues", help="its queues")
    nested.add_argument("--top", type=int, default=5, help="how many")
    commands = {c.path: c for c in _cli_extension().walk(parser)}
    assert commands["berrymq inspect"].help == "what a node is doing"
    assert [a.names for a in commands["berrymq inspect"].arguments] == ["URL"]
    top = commands["berrymq inspect queues"].arguments
    assert [(a.names, a.help) for a in top] == [("--top TOP", "how many; default: 5")]


@pytest.mark.parametrize("page", ["python", "curl"])
def test_a_language_page_walks_through_the_three_styles(page: str) -> None:
    text = (DOCS / "clients" / f"{page}.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.*)$", text, re.M)
    for style in ("Style 01: interconnect", "Style 02: one way", "Style 03: via a queue"):
        assert style in headings, (page, style)
    assert len(re.findall(r"[Tt]erminal [12]", text)) >= 6, "two terminals in each style"


def test_the_toctree_includes_the_client_pages_by_a_glob() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    assert re.search(r"^clients/\*$", index, re.M)


def test_the_uninstall_command_names_every_distribution_of_the_install() -> None:
    """What install.md installs (the core and each distribution under plugins/, the
    JSON-RPC library among them), its uninstall command removes."""
    install = (DOCS / "install.md").read_text(encoding="utf-8")
    command = re.search(r"^pip uninstall (.*)$", install, re.M)
    assert command is not None
    names = set(command.group(1).split()) - {"-y"}
    plugins = {path.name for path in (ROOT / "plugins").iterdir() if (path / "pyproject.toml").is_file()}
    assert names == {"berrymq", *plugins}

"""Every distribution in the repository is complete and publishable (issue 12, point 5):
MIT under an SPDX expression with its LICENSE, an author, classifiers, a long description;
``twine check`` accepts its sdist and wheel, and the sdist ships no tests (they need the
repository's docs/, examples/ and the other plugins)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))
DISTRIBUTIONS = [ROOT, *PLUGINS, ROOT / "examples" / "berrymq-jsonl"]


def _ids(paths: list[Path]) -> list[str]:
    return [p.name if p != ROOT else "berrymq" for p in paths]


def _metadata(dist: Path) -> dict[str, Any]:
    """The fields this test checks, from pyproject's [project] or setup.cfg's [metadata]."""
    project = tomllib.loads((dist / "pyproject.toml").read_text(encoding="utf-8")).get("project")
    if project is not None:
        return {"license": project.get("license"), "license_files": project.get("license-files"),
                "authors": project.get("authors"), "classifiers": project.get("classifiers", []),
                "readme": project.get("readme")}
    cfg = configparser.ConfigParser()
    cfg.read(dist / "setup.cfg", encoding="utf-8")
    meta = cfg["metadata"]
    return {"license": meta.get("license_expression"),
            "license_files": meta.get("license_files", "").split(),
            "authors": meta.get("author"), "classifiers": meta.get("classifiers", "").split("\n"),
            "readme": meta.get("long_description", "").removeprefix("file: ")}


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=_ids(DISTRIBUTIONS))
def test_metadata_is_complete(dist: Path) -> None:
    meta = _metadata(dist)
    assert meta["license"] == "MIT", "an SPDX expression: license = \"MIT\""
    assert meta["license_files"] == ["LICENSE"]
    assert (dist / "LICENSE").read_text() == (ROOT / "LICENSE").read_text(), "a copy of ../LICENSE"
    assert meta["authors"], "no author"
    classifiers = [c.strip() for c in meta["classifiers"] if c.strip()]
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert "Intended Audience :: Developers" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], (
        "setuptools refuses a license classifier beside an SPDX expression")
    assert meta["readme"] == "README.md" and (dist / "README.md").is_file()
    build = tomllib.loads((dist / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    assert "setuptools>=77" in build["requires"], "77 is the first setuptools with SPDX licenses"
    assert "prune tests" in (dist / "MANIFEST.in").read_text(encoding="utf-8").splitlines()


@pytest.mark.slow
@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=_ids(DISTRIBUTIONS))
def test_sdist_and_wheel_pass_twine_check_and_ship_no_tests(dist: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building must not litter the checkout
    shutil.copytree(dist, source, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", "docs", "examples", "plugins", "bench",
        ".*"))
    out = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", out, source],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    # setuptools warns of a data directory missing from `packages`, then still ships it:
    # the status page's files came with that warning, until a setuptools that drops them
    assert "would be ignored" not in built.stdout + built.stderr, built.stdout + built.stderr
    files = sorted(out.iterdir(), key=lambda f: f.suffix)
    assert [f.suffix for f in files] == [".gz", ".whl"], files
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files],
                             capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with tarfile.open(files[0]) as sdist:
        names = sdist.getnames()
        pkg_info = sdist.extractfile(f"{names[0].split('/')[0]}/PKG-INFO")
        assert pkg_info is not None
        info = pkg_info.read().decode()
    assert not [n for n in names if "/tests/" in n], "the sdist ships tests"
    assert "License-Expression: MIT" in info and "License-File: LICENSE" in info


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def test_the_readme_opens_with_two_commands_and_ci_runs_the_second_word_for_word() -> None:
    install, test = _readme_commands()
    assert install.startswith('pip install ".[watchdog]" ./plugins/') and install.endswith(
        "&& berrymq demo")
    assert test.startswith("python3 -m venv .venv && ")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"\n{test} || status=$?\n" in ci
    assert ".venv/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_the_readme_installs_every_transport_plugin() -> None:
    install = _readme_commands()[0]
    for plugin in PLUGINS:
        assert f"./plugins/{plugin.name}" in install.split(), plugin

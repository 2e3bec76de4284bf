"""Sphinx configuration for berryMQ's documentation (pages in MyST Markdown)."""

from __future__ import annotations

import sys
from pathlib import Path

# Document the berryMQ of this checkout, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import berrymq  # noqa: E402

project = "berryMQ"
author = "the berryMQ developers"
copyright = "berryMQ developers"  # noqa: A001 - the name Sphinx reads
release = berrymq.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Links to the standard library without the network: the inventory is not fetched, and
# an unresolved reference to a standard name is not a warning.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
nitpicky = False

html_theme = "alabaster"
html_title = f"berryMQ {release}"

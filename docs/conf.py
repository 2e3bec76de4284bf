"""Sphinx configuration for berryMQ's documentation (pages in MyST Markdown)."""

from __future__ import annotations

import sys
from pathlib import Path

# Document the berryMQ of this checkout, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Extensions of this documentation (the generated CLI reference).
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import berrymq

project = "berryMQ"
author = "the berryMQ contributors"
# The name Sphinx reads:
copyright = "2009 SHIBUKAWA Yoshiki (the original berryMQ), 2026 the berryMQ contributors"
release = berrymq.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "berrymq_cli",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "README.md"]

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

"""Fixtures shared by every test module under ``tests/``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CHILD_NODE, Child

import berrymq


def required_program(name: str, package: str) -> str:
    """The path of the program ``name``; skips the test where it is absent, except under
    ``BERRYMQ_REQUIRE_BROKERS=1`` (CI installs it) where its absence fails the test."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package {package})"
        if os.environ.get("BERRYMQ_REQUIRE_BROKERS") == "1":
            pytest.fail(f"{reason}, and BERRYMQ_REQUIRE_BROKERS=1 requires it")
        pytest.skip(reason)
    return path


@pytest.fixture
def graphviz_dot() -> str:
    """Graphviz's ``dot``, to check that what berryMQ draws is accepted by it."""
    return required_program("dot", "graphviz")


@pytest.fixture(params=["tcp", "http"])
def node(request: pytest.FixtureRequest, tmp_path: Path,
         berrymq_bus: berrymq.Bus) -> Iterator[tuple[str, Child]]:
    """A child node over the parametrised transport, interconnected with this bus."""
    scheme = request.param
    script = tmp_path / "child_node.py"
    script.write_text(CHILD_NODE)
    child = Child(script, scheme, cwd=tmp_path)
    try:
        if scheme == "http":  # over HTTP each side calls the other's server
            berrymq.init_connection("http://127.0.0.1:0")
        berrymq.interconnect(child.url, ttl=60)
        yield scheme, child
    finally:
        berrymq.close_connection()
        child.stop()

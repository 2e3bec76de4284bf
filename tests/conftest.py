"""Fixtures shared by every test module under ``tests/``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import helpers
import pytest
from helpers import CHILD_NODE, Child, LoopThread, required_program

import berrymq

#: The fixture ``buses`` (isolated buses, all closed after the test), defined once in
#: helpers.py for every suite that uses it.
buses = helpers.buses


@pytest.fixture
def bus(berrymq_bus: berrymq.Bus) -> berrymq.Bus:
    """The test's own bus (``berrymq_bus`` of :mod:`berrymq.testing`), by a short name."""
    return berrymq_bus


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


@pytest.fixture
def loops() -> Iterator[Callable[[str], LoopThread]]:
    """Event loops running forever, each in a thread of its own, closed after the test."""
    made: list[LoopThread] = []

    def make(name: str) -> LoopThread:
        lt = LoopThread(name)
        made.append(lt)
        return lt

    yield make
    for lt in made:
        lt.close()

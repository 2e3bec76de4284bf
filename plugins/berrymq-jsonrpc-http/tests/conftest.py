"""Fixtures of the HTTP plugin's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import Buses


@pytest.fixture
def buses() -> Iterator[Buses]:
    """Make isolated buses (``buses(**tables)``: helpers.make_bus); all closed after the
    test."""
    made = Buses()
    yield made
    made.close_all()

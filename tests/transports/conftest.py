"""Fixtures of the transport tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from berrymq.transports.ioloop import IOLoop


@pytest.fixture
def io() -> Iterator[IOLoop]:
    """An I/O loop of the test's own (not the process's), stopped after it."""
    loop = IOLoop(name="test-io")
    yield loop
    loop.stop()

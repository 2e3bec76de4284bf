"""Every source test leaves no adapter running on its bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from berrymq import Bus
from berrymq.sources import running_adapters


@pytest.fixture(autouse=True)
def no_leftover_adapters(berrymq_bus: Bus) -> Iterator[None]:
    yield
    assert running_adapters(berrymq_bus) == []

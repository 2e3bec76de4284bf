"""Fixtures shared by every test directory under ``tests/``."""

from __future__ import annotations

import os
import shutil

import pytest


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

"""berrymq.timeouts: one rule for the seconds every wait of the API is given."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from berrymq.timeouts import check_block, wait_limit


def test_seconds_come_back_as_floats_and_no_limit_as_none() -> None:
    assert wait_limit("timeout", 2) == 2.0
    assert wait_limit("timeout", 0.5) == 0.5
    assert wait_limit("timeout", None) is None
    assert wait_limit("timeout", float("inf")) is None
    assert wait_limit("timeout", threading.TIMEOUT_MAX * 2) is None  # would overflow a wait


@pytest.mark.parametrize(("value", "error"), [
    (float("nan"), ValueError), (-0.1, ValueError), ("5", TypeError), (True, TypeError),
    ([1], TypeError),
])
def test_a_bad_value_is_refused_naming_the_parameter(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="^pool_queue_wait must be"):
        wait_limit("pool_queue_wait", value)


def test_none_may_be_refused() -> None:
    with pytest.raises(TypeError, match="put_timeout must be a number of seconds, got None"):
        wait_limit("put_timeout", None, none=False)


@pytest.mark.parametrize("block", [True, False, 1, 0])
def test_a_block_flag_passes_as_the_standard_library_takes_it(block: object) -> None:
    check_block("Queue.get", block)


@pytest.mark.parametrize("block", [2, 0.5, "yes", None])
def test_any_other_block_is_refused_naming_the_method(block: object) -> None:
    with pytest.raises(TypeError, match=r"^block for Queue.get must be True or False, got "):
        check_block("Queue.get", block)

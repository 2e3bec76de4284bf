"""berrymq.subscription: the handle a registration returns."""

from __future__ import annotations

from berrymq import (
    Bus,
    regist_function,
    twitter,
)


def test_subscription_as_context_manager(berrymq_bus: Bus) -> None:
    got: list[str] = []
    with regist_function("ctx:*", lambda m: got.append(m.id), weak=False):
        twitter("ctx:in")
    twitter("ctx:out")
    assert got == ["ctx:in"]

"""The process's default bus, which the module-level API of :mod:`berrymq` works on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from berrymq.bus import Bus, send

__all__ = ["get_bus", "set_bus", "use_bus"]


class _Holder:
    """Holds the default bus; ``holder.twitter`` is :func:`berrymq.twitter`."""

    __slots__ = ("bus",)
    twitter = send

    def __init__(self, bus: Bus) -> None:
        self.bus = bus


# Read on every module-level call; one attribute look-up, no lock.
holder = _Holder(Bus(name="default"))


def get_bus() -> Bus:
    """The bus that ``twitter``, ``following_function``, ``Queue``... use by default."""
    return holder.bus


def set_bus(bus: Bus) -> Bus:
    """Make ``bus`` the default bus; returns the previous one (which stays open)."""
    if not isinstance(bus, Bus):
        raise TypeError(f"expected a berrymq.Bus, got {bus!r}")
    old, holder.bus = holder.bus, bus
    return old


@contextmanager
def use_bus(bus: Bus) -> Iterator[Bus]:
    """Make ``bus`` the default bus inside a ``with`` block (tests use this)."""
    old = set_bus(bus)
    try:
        yield bus
    finally:
        set_bus(old)

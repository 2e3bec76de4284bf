"""Per-bus state: the typed extension slot every bus carries (``bus.state(key)``).

The core and plugins keep what belongs to one bus here instead of in module globals keyed
by the bus: the value is made on first use by the key's factory, lives as long as the bus,
and is closed (the key's ``close``) when the bus closes, after the plugins' close hooks::

    from berrymq.state import StateKey

    WRITERS: StateKey[list[Writer]] = StateKey("jsonl writers", lambda bus: [])

    def berrymq_start_bus(bus):
        bus.state(WRITERS).append(Writer(...))

Keys compare by identity: two plugins never see each other's state by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from berrymq.errors import BusClosed
from berrymq.fork_safe import ForkSafeLock

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["BusState", "StateKey"]

T = TypeVar("T")


class StateKey(Generic[T]):
    """Names one piece of per-bus state and says how to make and close it.

    :param name: shown in errors and reprs.
    :param factory: ``factory(bus)`` makes the value the first time it is asked for.
    :param close: called with the value when the bus closes (if it was made). Once the
        bus is closed, a value with a ``close`` is made no more (:class:`~berrymq.BusClosed`:
        nothing would close it), unless ``after_close``.
    :param after_close: made after the bus closed too: what it starts ends by itself (the
        bus's losses, which are counted and told whenever they happen). Closed after the
        other values, which may still add to it as they close.
    :param stop: for a value that runs threads using the bus's other state (the running
        adapters, which may be blocked putting on a full queue): called when the bus
        starts closing, before any value is closed, to tell those threads to end without
        waiting for them. Its ``close``, which waits for them, is then called after the
        other values' (but those of ``after_close`` keys) were closed: a thread blocked in
        one of them (a put on a full queue) is let go by that close.
    """

    __slots__ = ("after_close", "close", "factory", "name", "stop")

    def __init__(self, name: str, factory: Callable[[Bus], T],
                 close: Callable[[T], object] | None = None, *, after_close: bool = False,
                 stop: Callable[[T], object] | None = None) -> None:
        self.name = name
        self.factory = factory
        self.close = close
        self.after_close = after_close
        self.stop = stop

    def __repr__(self) -> str:
        return f"<StateKey {self.name}>"


_MISSING: Any = object()  # the mark of a value not made yet (a factory may make None)


class BusState:
    """The values of one bus, by key; stored under a lock, read without one.

    A factory runs outside the lock, so it may itself ask for other state of the same bus
    (``Queue(..., shared=True)`` made inside a factory asks for the shared stores): holding
    the lock across it deadlocked. Two threads may then both make a value; the first one
    stored wins and the other is closed with the key's ``close`` (when it has one).
    """

    __slots__ = ("_bus", "_closed", "_lock", "_values")

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._values: dict[StateKey[Any], Any] = {}
        self._lock = ForkSafeLock()
        self._closed = False

    def get(self, key: StateKey[T]) -> T:
        """The value for ``key``, made by its factory on first use (see :class:`StateKey`
        for after the bus closed)."""
        value: T = self._values.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if self._closed and key.close is not None and not key.after_close:
            raise BusClosed(f"bus {self._bus.name!r} is closed; cannot make its {key.name}")
        # made outside any except clause: a factory's own error is raised as itself, not
        # chained to a KeyError of this look-up
        made = key.factory(self._bus)
        with self._lock:
            value = self._values.setdefault(key, made)
        if value is not made and key.close is not None:
            key.close(made)  # lost the race: the first value stored is the one
        return value

    def peek(self, key: StateKey[T]) -> T | None:
        """The value for ``key`` if it was made, else None (never makes it)."""
        return self._values.get(key)

    def close(self) -> None:
        """Close every value whose key says how, and forget them all but those of
        ``after_close`` keys (the bus's losses stay readable after it closed).

        First every key's ``stop`` is called (the adapters are told to end); then the
        values are closed newest first, those of keys with a ``stop`` after the others
        (an adapter blocked putting on a full queue made before it is let go by the
        queue's close, rather than waited for while the queue stays open: 5 s), and those
        of ``after_close`` keys last."""
        with self._lock:
            self._closed = True
            items = list(self._values.items())
            self._values = {key: value for key, value in items if key.after_close}
        items.reverse()  # newest first
        for key, value in items:
            if key.stop is not None:
                key.stop(value)
        items.sort(key=lambda item: (item[0].after_close, item[0].stop is not None))  # stable
        for key, value in items:
            if key.close is not None:
                key.close(value)

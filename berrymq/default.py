"""The process's default bus, which the module-level API of :mod:`berrymq` works on.

The default bus is made when it is first needed, not when ``berrymq`` is imported
(importing reads no settings file and loads no plugin), and it starts (its plugins join)
on the first use of the module-level API (``twitter``, ``following_function``,
``Queue``, ...). :func:`get_bus` returns it without starting it, so that ``berrymq
plugins`` reports on plugins without starting them; call its ``start()`` to start it
sooner. The core settings that are values of the bus (``raise_errors``, ``hop_limit``,
``route_cache_size``) are applied when it is made, before its start
(:func:`_apply_core_settings`).

A start that fails (a plugin's hook raises) leaves the slot empty: the use that started it
raises the cause, and every later one raises again from :meth:`Bus.start
<berrymq.Bus.start>` (a :class:`RuntimeError` naming the failed start), rather than
going on without the plugin that did not join. :func:`set_bus` puts a working bus in its
place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from berrymq.bus import Bus, send
from berrymq.errors import SettingsError
from berrymq.fork_safe import ForkSafeLock
from berrymq.plugins import loaded_plugin_host
from berrymq.settings import load_settings

__all__ = ["bus_or_default", "get_bus", "holder", "set_bus", "use_bus"]

_lock = ForkSafeLock()
_waiting: list[Bus] = []  # the default bus while it is not started yet (at most one)


class _Holder:
    """Holds the default bus; ``holder.twitter`` is :func:`berrymq.twitter`.

    ``bus`` is a slot read on every module-level call (one attribute look-up, no lock).
    While the slot is empty the holder is an :class:`_EmptyHolder`, whose reading of it
    starts the default bus and fills the slot. The two classes are swapped (``__class__``)
    rather than merged because a class with ``__getattr__`` makes every attribute read on
    its instances take the slow, unspecialised way: about a tenth of a send.
    """

    __slots__ = ("bus",)
    bus: Bus
    twitter = send


class _EmptyHolder(_Holder):
    """The holder while no default bus is in its slot (see :class:`_Holder`)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Bus:
        # Only called while the slot is empty: the first use of the default bus.
        if name != "bus":
            raise AttributeError(name)
        with _lock:
            bus = _filled()
            if bus is not None:
                return bus
            bus = _unstarted()
        # Started before it fills the slot, so that no sender finds it there before its
        # plugins joined; outside the lock, as plugins' hooks may use the default bus (and
        # come back here: start() lets the starting thread through). A start that failed
        # raises here, now and on every later use: the slot stays empty.
        bus.start()
        with _lock:
            if bus.started and _filled() is None and _waiting and _waiting[0] is bus:
                _waiting.clear()
                _fill(bus)
        return bus


# Read on every module-level call.
holder: _Holder = _EmptyHolder()


def _filled() -> Bus | None:
    try:
        return object.__getattribute__(holder, "bus")  # type: ignore[no-any-return]
    except AttributeError:
        return None


def _fill(bus: Bus) -> None:
    # Caller holds _lock. The slot is filled before the class loses __getattr__, and
    # emptied after it gains it, so a sender without the lock always finds one of them.
    holder.bus = bus
    holder.__class__ = _Holder


def _empty() -> None:
    # Caller holds _lock.
    holder.__class__ = _EmptyHolder
    del holder.bus


def _unstarted() -> Bus:
    # Caller holds _lock.
    if not _waiting:
        bus = Bus(name="default", start=False)
        _apply_core_settings(bus)
        _waiting.append(bus)
    return _waiting[0]


def get_bus() -> Bus:
    """The bus that ``twitter``, ``following_function``, ``Queue``... use by default
    (made if need be; started by the first use of the module-level API).

    Not started yet, it has the settings file's ``raise_errors``, ``hop_limit`` and
    ``route_cache_size`` all the same: its attributes show them, and a send on the bus
    itself runs with them.
    """
    with _lock:
        bus = _filled()
        return bus if bus is not None else _unstarted()


def _apply_core_settings(bus: Bus) -> None:
    """Give ``bus``, just made and waiting for its start, the core settings it will run
    with, as its start applies them (the value given to ``Bus(...)``, else the settings
    file's): once, not at every :func:`get_bus` (each read the file again).

    The default bus is made with ``start=False`` and only starts at the module-level API's
    first use, while ``Bus.__init__`` takes just its arguments: ``get_bus().raise_errors``
    and ``.hop_limit`` showed the defaults until the first send, and a send on the bus
    itself ran with them. The file is read here without the plugin host when that is not
    loaded yet: loading it imports the plugins, and a plugin whose import uses the default
    bus (from this thread, or from one it waits for) waited for that loading for ever. A
    file that does not load leaves the bus as it is, so that ``get_bus()`` still hands it
    out (to ``berrymq plugins``, to the ``berrymq_bus`` test fixture): its start raises
    the error. Settings that start something (``multiplicity``, the plugins' taps) wait
    for the start too.
    """
    with suppress(SettingsError):
        bus.apply_core_settings(None if loaded_plugin_host() is not None
                                else load_settings().core)


def bus_or_default(bus: object, who: str) -> Bus:
    """The ``bus=`` argument of ``who`` (a class that sends or receives on a bus): the bus
    given, checked, or the default bus when it is None."""
    if bus is None:
        return holder.bus
    if not isinstance(bus, Bus):
        raise TypeError(f"{who} bus must be a berrymq.Bus, got {bus!r}")
    return bus


def _refuse_non_bus(bus: object, who: str) -> None:
    """Refuse what is no :class:`Bus`, before anything changes: ``use_bus`` of a string
    had emptied the default's slot first, and every later send went to a new, empty bus."""
    if not isinstance(bus, Bus):
        raise TypeError(f"{who}() expected a berrymq.Bus, got {bus!r}")


def set_bus(bus: Bus) -> Bus:
    """Make ``bus`` the default bus; returns the previous one (which stays open)."""
    _refuse_non_bus(bus, "set_bus")
    old = get_bus()
    _swap(bus)
    return old


def _swap(bus: Bus | None) -> Bus | None:
    """Make ``bus`` the default bus (None: none yet); returns the previous one, or None
    when none was made yet. A bus that is not started waits for the API's first use."""
    with _lock:
        old = _filled()
        if old is None and _waiting:
            old = _waiting[0]
        _waiting.clear()
        if old is not None and _filled() is not None:
            _empty()
        if bus is not None:
            if bus.started:
                _fill(bus)
            else:
                _waiting.append(bus)
    return old


#: The ``use_bus`` blocks open, in the order they began: each a one-element list holding
#: the default to go back to when it ends.
_uses: list[list[Bus | None]] = []
_uses_lock = ForkSafeLock()


@contextmanager
def use_bus(bus: Bus) -> Iterator[Bus]:
    """Make ``bus`` the default bus inside a ``with`` block (tests use this).

    Blocks of several threads may overlap: the end of each leaves the default as it would
    be had the block never begun (the bus of a block begun later and still open, else
    the default from before them all).
    """
    _refuse_non_bus(bus, "use_bus")
    entry: list[Bus | None] = [None]
    with _uses_lock:
        entry[0] = _swap(bus)
        _uses.append(entry)
    try:
        yield bus
    finally:
        with _uses_lock:
            index = next(i for i, open_ in enumerate(_uses) if open_ is entry)
            del _uses[index]
            if index == len(_uses):  # the last begun: the default goes back
                _swap(entry[0])
            else:  # a later block is open: its end goes back to what was before this one
                _uses[index][0] = entry[0]

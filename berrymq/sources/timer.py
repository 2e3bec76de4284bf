"""The ``timer`` adapter plugin: :class:`IntervalTimer` sends ``name:tick`` periodically."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier
from berrymq.registries import SourceRegistry
from berrymq.sources import Adapter, identifier_for

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["IntervalTimer"]

KIND = "timer"


class IntervalTimer(Adapter):
    """Sends ``id_name:tick`` every ``interval`` seconds, from its own thread, until
    :meth:`stop`.

    ::

        with IntervalTimer("heartbeat", 1.0):
            ...   # receivers of "heartbeat:tick" get a message every second

    Ticks keep to the schedule of the start time (no drift); when receivers are so slow
    that ticks were missed, one tick is sent at once and the missed ones are skipped.
    Each message carries ``tick`` (1, 2, ...) and ``time`` (``time.time()``) as keyword
    arguments (``message.tick``, ``message.time``). A receiver's error is logged and the timer keeps going.

    :param id_name: the name to send as, e.g. ``"heartbeat"`` or ``"heartbeat@ops"``.
    :param interval: seconds between ticks, a positive number.
    :param bus: the bus to send on; the default bus when omitted.
    :raises berrymq.PluginNotAvailable: when the ``timer`` plugin is disabled.
    """

    kind = KIND

    def __init__(self, id_name: str, interval: float, *, bus: Bus | None = None) -> None:
        self.identifier = identifier_for(id_name, "tick", "IntervalTimer")
        super().__init__(interval, bus=bus)
        self.count = 0
        # Tick n of the schedule is due n intervals after the start, computed from n each
        # time (no sum of intervals to gather rounding errors): the grid it keeps to.
        self._started = time.monotonic()
        self._due = 1
        self._start()

    def _next_wait(self) -> float:
        return max(0.0, self._started + self._due * self.interval - time.monotonic())

    def poll(self) -> None:
        now = time.monotonic()
        self._due += 1
        if self._started + self._due * self.interval < now:
            # fell behind: skip the missed ticks, to the first one still ahead on the grid
            # (from now plus an interval, the ticks after a late one all came late)
            self._due = int((now - self._started) // self.interval) + 1
        self.count += 1
        self.bus.twitter(self.identifier, tick=self.count, time=time.time())

    def sends(self) -> list[Identifier]:
        return [self.identifier]

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"IntervalTimer({self.identifier.name!r}, {self.interval:g}) {state}"


@hookimpl
def berrymq_register_sources(registry: SourceRegistry) -> None:
    registry.add(KIND, IntervalTimer, plugin=KIND)

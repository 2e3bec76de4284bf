"""Sources: adapters that turn the world outside the bus into messages (from berryMQ 0.3).

- :class:`~berrymq.sources.timer.IntervalTimer` (plugin ``timer``) sends ``name:tick``
  every ``interval`` seconds;
- :class:`~berrymq.sources.files.FileObserver` (plugin ``fileobserver``) sends
  ``name:created``, ``name:modified`` and ``name:removed`` for files matching a glob.

Each adapter is a built-in plugin of the core (``timer``, ``fileobserver``) that registers
its class as a source under the same name (:func:`~berrymq.hookspecs.berrymq_register_sources`),
so that a settings file can turn it off; constructing a disabled adapter raises
:class:`berrymq.PluginNotAvailable` naming the plugin. An adapter runs one daemon thread,
is stopped with :meth:`Adapter.stop` (or by leaving a ``with`` block), and is stopped when
its bus closes (the running adapters are the bus's state, :data:`RUNNING`). Running
adapters appear as senders in :func:`berrymq.show_network`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from berrymq._losses import SOURCE_REFUSED, count_refusals
from berrymq.bus import Bus
from berrymq.default import bus_or_default
from berrymq.identifier import Identifier, parse
from berrymq.state import StateKey

__all__ = ["RUNNING", "SHORTEST_INTERVAL", "Adapter", "running_adapters", "stop_adapters"]

logger = logging.getLogger("berrymq")


class _Running:
    """The adapters sending on one bus, in the order they were started."""

    def __init__(self, bus: Bus) -> None:
        self.lock = threading.Lock()
        self.adapters: list[Adapter] = []

    def tell_all(self) -> None:
        """Tell every adapter to stop, without waiting for its thread (see :data:`RUNNING`)."""
        with self.lock:
            adapters = list(self.adapters)
        for adapter in adapters:
            adapter._tell_stop()

    def stop_all(self) -> None:
        with self.lock:
            adapters = list(self.adapters)
        for adapter in adapters:
            adapter.stop()


#: A bus's running adapters; stopped when the bus closes: told to first, then waited for
#: once the bus's other state (its queues, which a tick may be blocked putting on) closed.
RUNNING: StateKey[_Running] = StateKey("running adapters", _Running, _Running.stop_all,
                                       stop=_Running.tell_all)


def running_adapters(bus: Bus) -> list[Adapter]:
    """The adapters sending on ``bus`` now, in the order they were started."""
    running = bus.extensions.peek(RUNNING)
    if running is None:
        return []
    with running.lock:
        return list(running.adapters)


def stop_adapters(bus: Bus, kind: str | None = None) -> None:
    """Stop the adapters (of one ``kind``, or all) sending on ``bus``."""
    for adapter in running_adapters(bus):
        if kind is None or adapter.kind == kind:
            adapter.stop()


#: What a subclass of :class:`Adapter` implements, and what for (named when it does not).
_TO_IMPLEMENT = (("poll", "one round of work, called every interval in the adapter's thread"),
                 ("sends", "the identifiers it sends, for the network picture"))


#: The shortest interval an adapter takes: a microsecond. (5e-324 was taken: the elapsed
#: time divided by it is infinite, and a timer sent nothing and logged an OverflowError
#: some 5,600 times a second.)
SHORTEST_INTERVAL = 1e-6


class Adapter:
    """The base of adapters: a thread that calls :meth:`poll` every ``interval`` seconds.

    :param interval: seconds between polls; a positive number, from
        :data:`SHORTEST_INTERVAL` (a microsecond) to ``threading.TIMEOUT_MAX``.
    :param bus: the bus to send on; the default bus when omitted.
    """

    #: the plugin and source name, also shown in the network picture
    kind = "adapter"

    def __init__(self, interval: float, *, bus: Bus | None = None) -> None:
        missing = [f"{name}() ({what})" for name, what in _TO_IMPLEMENT
                   if getattr(type(self), name) is getattr(Adapter, name)]
        if missing:
            raise TypeError(f"{type(self).__name__} is an Adapter that does not implement "
                            f"{' nor '.join(missing)}")
        if (isinstance(interval, bool) or not isinstance(interval, (int, float))
                or not SHORTEST_INTERVAL <= interval <= threading.TIMEOUT_MAX):
            raise ValueError(f"{type(self).__name__} interval must be a positive number of "
                             f"seconds, from {SHORTEST_INTERVAL:g} to {threading.TIMEOUT_MAX:g} "
                             f"(threading.TIMEOUT_MAX), got {interval!r}")
        bus = bus_or_default(bus, type(self).__name__)
        # before a subclass starts anything of its own (FileObserver's watchdog thread)
        bus.refuse_if_closed(f"start {type(self).__name__}")
        bus.plugins.source(self.kind, type(self))  # PluginNotAvailable naming the plugin
        self.bus = bus
        self.interval = float(interval)
        # Set to stop the thread, or to make it poll at once (FileObserver with watchdog).
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name=f"berrymq-{self.kind}", daemon=True
        )

    def _start(self) -> None:
        """Start the thread; subclasses call it at the end of ``__init__``."""
        running = self.bus.state(RUNNING)
        with running.lock:
            running.adapters.append(self)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._next_wait())
            if self._stopped:
                return
            self._wake.clear()
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - one failed poll must not end the adapter
                self._failed(exc)
            except BaseException as exc:  # sys.exit() in a receiver: logged, as above
                logger.error("%r: %s raised in its thread, where it cannot end the process; "
                             "it keeps running", self, type(exc).__name__, exc_info=exc)

    def _failed(self, exc: Exception) -> None:
        """A poll raised: a refusal of what it sent (a full queue) is a lost message,
        counted in ``bus.losses`` and logged once per burst, as in a worker thread; any
        other failure (a receiver's, with ``raise_errors``; the poll's own) is logged.
        Refusals are looked for at every depth: a send that met two full queues raises
        them as a group, which :meth:`FileObserver.check
        <berrymq.sources.files.FileObserver.check>` groups again with the other events'."""
        rest = count_refusals(self.bus, exc, SOURCE_REFUSED, repr(self))
        if rest is not None:
            logger.error("%r failed; it keeps running", self, exc_info=rest)

    def _next_wait(self) -> float:
        return self.interval

    def poll(self) -> None:
        """One round of work: look at the world and send what changed. A subclass
        implements it (and :meth:`sends`): the constructor refuses one that does not."""
        raise NotImplementedError(f"{type(self).__name__} does not implement poll()")

    def sends(self) -> list[Identifier]:
        """The identifiers this adapter sends."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sends()")

    @property
    def running(self) -> bool:
        return not self._stopped

    def _tell_stop(self) -> None:
        """Make the thread end at its next look (a round under way sends no more
        messages, see :meth:`FileObserver.check <berrymq.sources.files.FileObserver.check>`)."""
        self._stopped = True
        self._wake.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop sending; waits (up to ``timeout`` seconds) for the thread to end, unless
        called from a receiver running in that very thread. Idempotent."""
        self._tell_stop()
        running = self.bus.extensions.peek(RUNNING)
        if running is not None:
            with running.lock:
                if self in running.adapters:
                    running.adapters.remove(self)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> Adapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """This adapter as a sender in :func:`berrymq.network.describe`."""
        return {"kind": self.kind, "name": repr(self), "sends": [str(i) for i in self.sends()]}


def identifier_for(id_name: str, action: str, what: str) -> Identifier:
    """``id_name:action``, checked: ``id_name`` is a plain name (optionally ``@namespace``)."""
    if not isinstance(id_name, str):
        raise TypeError(f"{what} id_name must be a str, got {id_name!r}")
    if ":" in id_name:
        raise ValueError(f"{what} id_name {id_name!r} must be a name without ':action'; "
                         f"it sends {id_name.split(':', 1)[0]}:{action}")
    ident = parse(f"{id_name}:{action}")
    if ident.name == "*":
        raise ValueError(f"{what} id_name must not be the wildcard '*'")
    return ident

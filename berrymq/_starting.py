"""How a :class:`~berrymq.Bus` starts: its settings applied and its plugins joined.

:class:`Starting` is a base class of the bus, as :class:`~berrymq._pooling.Pooling` is.
A bus starts when it is created, or, made with ``start=False``, when :meth:`Starting.start`
is called; never on the way of a message, and never under the bus's lock. A start that
fails is not tried again, and the bus is closed, so that the plugins that joined before
the failure let go of what they hold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from berrymq.errors import SettingsError
from berrymq.plugins import PluginHost, get_plugin_host

if TYPE_CHECKING:
    from berrymq._index import Index
    from berrymq.bus import Bus
    from berrymq.fork_safe import ForkSafeLock

__all__ = ["START_WAIT", "Starting"]

logger = logging.getLogger("berrymq")

#: How long :meth:`Starting.start` waits for another thread that is starting the same bus.
START_WAIT = 10.0


class Starting:
    """The start of a :class:`~berrymq.Bus`: :meth:`start`, :attr:`started`, the plugin
    host and the core settings it applies."""

    if TYPE_CHECKING:  # kept by Bus
        bus: Bus  # the bus itself
        name: str
        raise_errors: bool
        hop_limit: int
        index: Index
        taps: tuple[Callable[..., Any], ...]
        _plugins: PluginHost | None
        _explicit: dict[str, Any]
        _lock: ForkSafeLock
        _starter: int | None
        _ready: threading.Event
        _start_failure: BaseException | None
        _closed: bool

        def close(self) -> None: ...

        def set_multiplicity(self, n: int) -> None: ...

        def _update_direct(self) -> None: ...

    @property
    def plugins(self) -> PluginHost:
        """The plugin host this bus takes its plugins and settings from."""
        if self._plugins is None:
            self._plugins = get_plugin_host()
        return self._plugins

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run (a bus made with ``start=False`` has not, until
        then: the default bus waits for the module-level API's first use). False for good
        once a start failed (see :meth:`start`)."""
        return self._ready.is_set() and self._start_failure is None

    def core_setting(self, name: str, default: Any = None,
                     read: Mapping[str, Any] | None = None) -> Any:
        """The core setting ``name`` for this bus: the value given to ``Bus(...)``, else
        the settings file's (``[berrymq]``; ``read`` when given, else the plugin host's),
        else ``default``."""
        given = self._explicit.get(name)
        if given is not None:
            return given
        return (self.plugins.core_settings if read is None else read).get(name, default)

    def apply_core_settings(self, read: Mapping[str, Any] | None = None) -> None:
        """Take the core settings that are values of the bus (``raise_errors``,
        ``hop_limit``, ``route_cache_size``): each as given to ``Bus(...)``, else the
        settings file's. Done at the start, and by :func:`berrymq.get_bus` for the
        default bus it hands out before its start, which gives the file's values
        ``read`` without the plugin host (that would import the plugins).

        :raises berrymq.SettingsError: the settings file does not load."""
        setting = self.core_setting
        self.raise_errors = bool(setting("raise_errors", self.raise_errors, read))
        self.hop_limit = int(setting("hop_limit", self.hop_limit, read))
        self.index.limit = int(setting("route_cache_size", self.index.limit, read))

    def start(self) -> None:
        """Apply the settings and let the active plugins join (idempotent).

        Done when the bus is created unless it was made with ``start=False``. The plugins'
        hooks run in the calling thread, outside the bus's lock; another thread calling
        ``start`` meanwhile returns when they are done. A closed bus stays closed.

        A start that raised (a plugin's hook, the settings file's ``multiplicity``) is not
        tried again, nor is the bus taken for started, which would have it run without the
        plugins that did not join: this call raised the cause, and every later one raises
        :class:`RuntimeError` naming the failed start, with the cause as ``__cause__``
        (so does the module-level API on a default bus whose start failed). The bus is
        closed then: the plugins that joined before the failure let go of what they hold.
        """
        self._raise_if_failed()
        if self._closed:
            return
        host = self.plugins  # the first bus of a process loads the plugins: not under the lock
        taps = tuple(host.message_taps())
        with self._lock:
            starter = self._starter
            if starter is None:
                self._starter = threading.get_ident()
                self.apply_core_settings()
                self.taps = taps
        if starter is not None:
            # another thread starting it: wait until its plugins joined (a hook of this
            # thread's own start that uses the bus goes on at once; a hook that waits for
            # this thread would deadlock, hence the bound)
            if starter != threading.get_ident() and not self._ready.wait(START_WAIT):
                logger.warning("bus %s: its plugins have not finished starting in another "
                               "thread after %gs (does a start hook wait for this thread?); "
                               "going on without waiting", self.name, START_WAIT)
            self._raise_if_failed()
            return
        try:
            self._set_multiplicity_from(host)
            self._update_direct()
            host.start_bus(self.bus)
        except BaseException as exc:
            self._start_failure = exc
            self._ready.set()
            self._close_after_failed_start()
            raise
        finally:
            self._ready.set()  # threads waiting in start() go on (and raise, if it failed)

    def _close_after_failed_start(self) -> None:
        """Let go of what the plugins that did join hold (a server's port, a broker's
        connection): nobody else would, a bus made with ``Bus()`` is never even handed
        to its caller. A failure of that closing is logged, and the start's is raised."""
        try:
            self.close()
        except Exception:
            logger.exception("bus %s: closing it after its failed start failed too", self.name)

    def _raise_if_failed(self) -> None:
        """The :class:`RuntimeError` of a start that failed before (see :meth:`start`)."""
        failure = self._start_failure
        if failure is not None:
            raise RuntimeError(
                f"bus {self.name!r} did not start: its start raised "
                f"{type(failure).__name__}: {failure}; it is not used without what failed "
                f"(fix the cause, then use a new bus)") from failure

    def _set_multiplicity_from(self, host: PluginHost) -> None:
        """The settings file's ``multiplicity`` (unless ``Bus(multiplicity=...)`` was
        given); a value the pool refuses is a :class:`SettingsError` naming its line."""
        n = host.core_settings.get("multiplicity")
        if self._explicit["multiplicity"] is not None or not n:
            return
        try:
            self.set_multiplicity(int(n))
        except ValueError as exc:
            settings = host.settings
            raise SettingsError(str(exc), settings.path, settings.line_of("multiplicity")
                                ) from exc

"""The plugin host: entry points, activation by settings, and one typed facade for hooks.

Every hook call of berryMQ goes through :class:`PluginHost`, so they can all be found
here. Plugins come from the entry point group ``berrymq``, the core's own among them:
the core distribution declares them there once (setup.cfg), and they are loaded from its
metadata with or without the entry points of other distributions
(:func:`builtin_plugins`), through the same hooks as an outside plugin. Finding them is
:mod:`berrymq._discovery`'s; which of them load, and in what state, is
:mod:`berrymq._activation`'s; loading the active ones is done here.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

import berrymq.hookspecs
from berrymq._activation import CORE_RECEIVERS, PluginInfo, activation, how_to_get, pass_over
from berrymq._discovery import (
    BLOCK_ENV_VAR,
    CORE_DISTRIBUTION,
    ENTRY_POINT_GROUP,
    KNOWN_COMMANDS,
    KNOWN_OPTIONS,
    KNOWN_SCHEMES,
    Candidate,
    blocked_plugins,
    builtin_plugins,
    check_named_plugins,
    distribution_of,
    find_candidates,
)
from berrymq._hook_calls import call_each, one_line, taps
from berrymq._hook_checks import hook_wrapper, misspelled_hook, unmarked_function
from berrymq.errors import BerryMQError, PluginError, PluginNotAvailable, SettingsError
from berrymq.fork_safe import ForkSafeLock
from berrymq.registries import (
    ReceiverKind,
    ReceiverRegistry,
    SettingsSchema,
    SourceRegistry,
    StatusReport,
    TransportRegistry,
)
from berrymq.settings import Settings, check_table, load_settings

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.cli import Commands
    from berrymq.transports.base import Transport

__all__ = [
    "BLOCK_ENV_VAR",
    "CORE_DISTRIBUTION",
    "CORE_RECEIVERS",
    "ENTRY_POINT_GROUP",
    "KNOWN_COMMANDS",
    "KNOWN_OPTIONS",
    "KNOWN_SCHEMES",
    "PluginHost",
    "PluginInfo",
    "builtin_plugins",
    "get_plugin_host",
    "loaded_plugin_host",
    "reset_plugin_host",
]

logger = logging.getLogger("berrymq")


class PluginHost:
    """Loads the active plugins once and is the only caller of their hooks.

    :param settings: the settings to apply; by default the settings file is searched for.
    :param entry_points: load plugins from the ``berrymq`` entry point group; when false
        only the built-in plugins and ``extra_plugins`` are available.
    :param extra_plugins: ``(name, plugin)`` pairs registered as if installed (for tests
        and for programs that embed a plugin).
    :param blocked: plugin names not to load, beside those of ``BERRYMQ_BLOCK_PLUGINS``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        entry_points: bool = True,
        extra_plugins: Iterable[tuple[str, object]] = (),
        blocked: Iterable[str] = (),
    ) -> None:
        self._blocked = frozenset(blocked)
        self.settings = settings if settings is not None else load_settings()
        self.pm = pluggy.PluginManager(berrymq.hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(berrymq.hookspecs)
        self.transports = TransportRegistry()
        self.receivers = ReceiverRegistry()
        self.sources = SourceRegistry()
        self.schema = SettingsSchema()
        self._infos: list[PluginInfo] = []
        self._candidates: dict[str, Candidate] = {}  # the active ones, by name
        candidates, passed_over = find_candidates(entry_points)
        for name, plugin in extra_plugins:
            candidates.append(
                Candidate(name, "(registered in code)", "", repr(plugin), itertools.repeat(plugin).__next__)
            )
        self._load(candidates)
        pass_over(self._infos, passed_over, {c.name for c in candidates} if entry_points else None)

    # -- loading -------------------------------------------------------------------------

    def _load(self, candidates: list[Candidate]) -> None:
        settings = self.settings
        check_named_plugins(settings, {c.name for c in candidates})
        blocked = blocked_plugins() | self._blocked
        active_names: list[str] = []
        for candidate in candidates:
            active, reason = activation(candidate.name, settings, blocked)
            if active:
                self._candidates[candidate.name] = candidate
                try:
                    plugin = candidate.load()
                except Exception as exc:
                    raise self._faulty(candidate.name,
                                       f"failed to load from {candidate.module}: {exc}") from exc
                unmarked = unmarked_function(self.pm, plugin)
                if unmarked is not None:
                    raise self._faulty(candidate.name, unmarked)
                try:
                    self.pm.register(plugin, name=candidate.name)
                except pluggy.PluginValidationError as exc:  # a parameter no hookspec has
                    # (pluggy's first line, "Plugin 'x' for hook 'y'", the next repeats)
                    problem = "; ".join(str(exc).splitlines()[1:]) or str(exc)
                    raise self._faulty(candidate.name,
                                       f"cannot be registered: {one_line(problem)}") from exc
                except ValueError as exc:
                    # pluggy refuses one object under two names: two entry points (of one
                    # distribution or two) naming one module
                    other = self.pm.get_name(plugin)
                    problem = (f"its module {candidate.module} is plugin {other!r} already "
                               "(two entry points name one module)") if other else one_line(exc)
                    raise self._faulty(candidate.name,
                                       f"cannot be registered: {problem}") from exc
                active_names.append(candidate.name)
            self._infos.append(
                PluginInfo(candidate.name, candidate.distribution, candidate.version,
                           candidate.module, active, reason)
            )
        self._check_hooks()
        try:  # each plugin's keys its own (see SettingsSchema.caller)
            self._call_each("berrymq_declare_settings",
                            lambda name: setattr(self.schema, "caller", name), schema=self.schema)
        finally:
            self.schema.caller = None
        for name in active_names:
            if name in settings.tables:
                check_table(settings, name, self.schema.tables.get(name, {}),
                            self.schema.checks.get(name), self.schema.paths.get(name, ()),
                            blame=functools.partial(self._faulty, name))
        self._fill("berrymq_register_transports", self.transports)
        self._fill("berrymq_register_receivers", self.receivers)
        self._fill("berrymq_register_sources", self.sources)

    def _fill(self, hook: str, registry: TransportRegistry | ReceiverRegistry | SourceRegistry
              ) -> None:
        """Call the registry hook ``hook`` of each plugin, the registry told whose turn it
        is (each name is the calling plugin's, whatever ``plugin=`` says), then close it."""
        try:
            self._call_each(hook, lambda name: setattr(registry, "caller", name),
                            registry=registry)
        finally:
            registry.caller = None
            registry.closed = True

    def origin(self, name: str) -> str:
        """Where the active plugin ``name`` comes from, for an error that names it:
        `` (distribution version)``, `` (registered in code)``, or ``""`` when unknown."""
        candidate = self._candidates.get(name)
        origin = f"{candidate.distribution} {candidate.version}".strip() if candidate else ""
        if origin and not origin.startswith("("):  # "(registered in code)" has its own
            origin = f"({origin})"
        return f" {origin}" if origin else ""

    def provider(self, scheme: str) -> str:
        """The plugin whose transport serves ``scheme`` (the scheme itself when no plugin
        claims it), as errors and status lines name it."""
        return self.transports.plugin_for(scheme) or scheme

    def _faulty(self, name: str, problem: str, hook: str | None = None) -> PluginError:
        """The error for the active plugin ``name`` that cannot be loaded: it, its
        distribution and version, ``problem``, and the ways to keep it from loading."""
        return PluginError(
            f"plugin {name!r}{self.origin(name)} {problem}; uninstall it, disable it in the "
            f"settings file (disable = [{name!r}]) or set {BLOCK_ENV_VAR}={name}", name, hook)

    def _call_each(self, hook: str, announce: Callable[[str], None] | None = None,
                   failed: Callable[[str, BaseException], None] | None = None,
                   **kwargs: Any) -> None:
        """:func:`~berrymq._hook_calls.call_each` on this host's plugins: a failure is the
        :class:`PluginError` of :meth:`_faulty`."""
        call_each(self.pm, hook, self._hook_failure, announce, failed, **kwargs)

    def _hook_failure(self, name: str, hook: str, exc: BaseException) -> PluginError:
        return self._faulty(name, f"raised {type(exc).__name__} in its hook {hook}: "
                                  f"{one_line(exc)}", hook)

    def _check_hooks(self) -> None:
        """The checks of :mod:`berrymq._hook_checks` over every plugin loaded: a misspelled
        hook or a hook wrapper is the :class:`PluginError` of :meth:`_faulty`."""
        for problem in (misspelled_hook(self.pm), hook_wrapper(self.pm)):
            if problem is not None:
                raise self._faulty(problem.plugin, problem.text, problem.hook) from problem.cause

    # -- the facade: every hook call and registry look-up ---------------------------------

    @property
    def core_settings(self) -> dict[str, Any]:
        """The ``[berrymq]`` settings other than ``plugins`` and ``disable``."""
        return dict(self.settings.core)

    def settings_for(self, plugin: str) -> dict[str, Any]:
        """The plugin's table from the settings file (empty when there is none)."""
        return dict(self.settings.table(plugin))

    def infos(self) -> list[PluginInfo]:
        """Every installed plugin, active or not, sorted by name."""
        return list(self._infos)

    def inactive(self) -> list[str]:
        """The names of the installed plugins that are not active, sorted."""
        return [info.name for info in self._infos if not info.active]

    def is_active(self, name: str) -> bool:
        return self.pm.get_plugin(name) is not None

    def how_to_get(self, plugin: str, distribution: str | None) -> str:
        """What to do to have ``plugin`` (of ``distribution``) active: install it, enable
        it where the settings file turned it off, or unblock it where the environment
        variable blocks it (whatever the settings file says: editing it cannot help)."""
        return how_to_get(self._infos, self.settings, plugin, distribution)

    def _unavailable(self, what: str, plugin: str, distribution: str | None) -> PluginNotAvailable:
        return PluginNotAvailable(what, plugin, self.how_to_get(plugin, distribution))

    def create_transport(self, scheme: str, bus: Bus) -> Transport:
        """Make the transport for ``scheme`` on ``bus``, or say which plugin is missing.

        :raises PluginError: the factory raised (not a berryMQ error, which is raised as it
            is): the error names the plugin and the scheme; the exception is its cause.
        """
        factory = self.transports.factory(scheme)
        if factory is None:
            if scheme not in KNOWN_SCHEMES:
                known = sorted({*KNOWN_SCHEMES, *self.transports.names()})
                inactive = self.inactive()
                maybe = (f"; installed plugins that are not active may: "
                         f"{', '.join(map(repr, inactive))} (see berrymq plugins)"
                         if inactive else "")  # (one disabled or blocked: "not installed" was wrong)
                raise PluginNotAvailable(
                    f"no transport for {scheme}:// addresses", scheme,
                    f"no active plugin claims the scheme {scheme!r} (berryMQ's plugins "
                    f"handle {', '.join(s + '://' for s in known)}){maybe}",
                )
            plugin, distribution = KNOWN_SCHEMES[scheme]
            raise self._unavailable(f"no transport for {scheme}:// addresses", plugin, distribution)
        plugin = self.provider(scheme)
        try:
            return factory(bus, self.settings_for(plugin))
        except BerryMQError:  # a wrong setting, a plugin missing: says what to do already
            raise
        except Exception as exc:  # the plugin's fault, named with the scheme
            raise self._faulty(plugin, f"raised {type(exc).__name__} making its transport "
                                       f"for {scheme}:// addresses: {one_line(exc)}") from exc

    def receiver(self, name: str) -> ReceiverKind:
        """The receiver kind ``name``, or an error naming the plugin to enable."""
        kind = self.receivers.get(name)
        if kind is None:
            raise self._unavailable(f"receiver kind {name!r} is not available", name, "berrymq")
        return kind

    def register_commands(self, commands: Commands) -> None:
        """Let the active plugins add ``berrymq`` commands (or options of existing ones);
        ``commands.plugin`` names the plugin adding, for the error of a name taken twice."""
        try:
            self._call_each("berrymq_register_commands",
                            lambda name: setattr(commands, "plugin", name), commands=commands)
        finally:
            commands.plugin = None

    def source(self, name: str, provider: type | None = None) -> type:
        """The source class ``name``, or an error naming the plugin to enable, or to
        install from the distribution of ``provider`` (the adapter class asking)."""
        source = self.sources.get(name)
        if source is None:
            raise self._unavailable(f"source {name!r} is not available", name,
                                    distribution_of(provider))
        return source

    def start_bus(self, bus: Bus) -> None:
        """Call ``berrymq_start_bus`` of one plugin after another; the first that raises
        fails the start with a :class:`PluginError` naming it and the hook."""
        self._call_each("berrymq_start_bus", bus=bus)

    def close_bus(self, bus: Bus) -> None:
        """Call ``berrymq_close_bus`` of every plugin, even after one raised: the others
        still let go of what they hold, and the bus's own close goes on. A failure is
        logged (error, on the ``berrymq`` logger) as the :class:`PluginError` naming the
        plugin and the hook; it is not raised, as closing cannot be undone."""
        self._call_each("berrymq_close_bus", bus=bus, failed=lambda name, error: logger.error(
            "bus %s: %s", bus.name, error))

    def message_taps(self) -> list[Callable[..., Any]]:
        """The per-message hook callers, only those some active plugin implements (none:
        no cost per message); one per plugin, so that an exception is a
        :class:`PluginError` naming the plugin and the hook, raised to the sender."""
        return taps(self.pm, "berrymq_observe_message", self._hook_failure)

    def status(self, bus: Bus) -> StatusReport:
        """The plugins' lines (:func:`~berrymq.hookspecs.berrymq_report_status`), then one
        line per transport of ``bus`` whose plugin reported nothing itself. A plugin whose
        hook (or whose transport's ``status()``) raised has, as its line, ``error:`` and
        the :class:`PluginError` naming it and the hook; the other plugins still report.
        An error that already says what to do (a wrong setting the hook came upon) is
        raised, as the other hooks raise it."""
        report = StatusReport()

        def failed(name: str, error: BaseException) -> None:
            if isinstance(error, (SettingsError, PluginNotAvailable)):
                raise error
            report.add(name, f"error: {error}")

        self._call_each("berrymq_report_status", bus=bus, report=report, failed=failed)
        for scheme, transport in bus.transports().items():
            plugin = self.provider(scheme)
            if plugin in report.lines:
                continue
            try:
                text = f"{scheme}: {transport.status()}"
            except (SettingsError, PluginNotAvailable):
                raise
            except Exception as exc:  # noqa: BLE001 - the plugin's line; the others report
                error = self._faulty(plugin, f"raised {type(exc).__name__} in status() of "
                                             f"its transport for {scheme}://: {one_line(exc)}")
                text = f"error: {error}"
            report.add(plugin, text)
        return report


_host: PluginHost | None = None
_host_lock = ForkSafeLock()  # (a thread of the parent may have been loading the host)
_loading = threading.local()  # .on: this thread loads the plugin host


def get_plugin_host() -> PluginHost:
    """The process's plugin host, loaded from the settings file on first use.

    :raises RuntimeError: called by a plugin's module as it is imported in that loading
        (it sends, subscribes or starts a bus at import): it would wait for the loading
        for ever. The loading reports it as that plugin's failure, naming the plugin."""
    global _host
    if _host is None:
        if getattr(_loading, "on", False):
            raise RuntimeError("berryMQ was used while its plugins were being loaded, in "
                               "the thread loading them: by a plugin's module as it was "
                               "imported (a twitter, a receiver, a bus started at import; "
                               "do it in a hook, such as berrymq_start_bus), or by a signal "
                               "handler or a finalizer (__del__) run in the middle of that "
                               "loading: it would wait for that loading for ever")
        with _host_lock:
            if _host is None:
                _loading.on = True
                try:
                    _host = PluginHost()
                finally:
                    _loading.on = False
    return _host


def loaded_plugin_host() -> PluginHost | None:
    """The process's plugin host if it was loaded, without loading it (None)."""
    return _host


def reset_plugin_host(host: PluginHost | None = None) -> PluginHost | None:
    """Replace the process's plugin host (None: load again on next use); returns the old."""
    global _host
    with _host_lock:
        old, _host = _host, host
    return old


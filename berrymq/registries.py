"""The typed registries that registry hooks fill, one per kind of extension."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from berrymq.errors import SettingsError
from berrymq.subscription import Kind, ReceiverKind

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.transports.base import Transport

__all__ = [
    "Kind",
    "ReceiverKind",
    "ReceiverRegistry",
    "SettingCheck",
    "SettingsSchema",
    "SourceRegistry",
    "StatusReport",
    "TransportFactory",
    "TransportRegistry",
]

TransportFactory = Callable[["Bus", Mapping[str, Any]], "Transport"]
#: A check of a setting's value beyond its type: the problem (``"must be a positive
#: number, got 0"``, read after ``plugin.key``), or None when the value is good.
SettingCheck = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class _Entry:
    plugin: str
    value: Any


class _NamedRegistry:
    """Names claimed by plugins; claiming a name twice is a
    :class:`~berrymq.errors.SettingsError` naming both plugins.

    A name is the plugin's whose hook is calling: while the plugins load, the plugin host
    sets :attr:`caller` before each plugin's turn, and a ``plugin=`` that names another
    plugin is refused (a plugin could otherwise take over ``tcp://`` or the core's
    ``queues``, and the settings of the plugin it named, by naming that plugin). Once the
    plugins have loaded, the host closes the registry (:attr:`closed`): a name added
    later, from another hook, could not be told whose it is, and is refused.
    """

    what = "name"

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        #: The plugin whose registry hook is running (set by the plugin host), or None
        #: outside the hooks, where ``plugin=`` must say whose a name is.
        self.caller: str | None = None
        #: Set by the plugin host once the registry hooks have run: nothing more is added.
        self.closed = False

    def _add(self, name: str, value: Any, plugin: str | None) -> None:
        caller = self.caller
        if self.closed:
            raise ValueError(f"the {self.what} {name!r} is registered after the plugins "
                             "loaded; register it in the registry hook")
        if caller is not None:
            if plugin is not None and plugin != caller:
                # a ValueError, made a PluginError naming the caller and its hook
                raise ValueError(
                    f"it registers the {self.what} {name!r} with plugin={plugin!r}, another "
                    f"plugin's name; a plugin registers names as its own ({caller!r}): "
                    "leave out plugin=")
            plugin = caller
        elif plugin is None:
            raise ValueError(f"the {self.what} {name!r} is registered outside a registry "
                             "hook: give plugin=")
        if not isinstance(name, str) or not name:
            raise ValueError(f"plugin {plugin!r} registered an empty or non-str {self.what}")
        existing = self._entries.get(name)
        if existing is not None and existing.plugin != plugin:
            # A SettingsError: the plugins are sound, their combination is what the
            # settings file must resolve (``berrymq`` prints one line, exit status 2).
            raise SettingsError(
                f"{self.what} {name!r} is claimed by both plugin {existing.plugin!r} and "
                f"plugin {plugin!r}; disable one of them in the settings file"
            )
        self._entries[name] = _Entry(plugin, value)

    def plugin_for(self, name: str) -> str | None:
        """The plugin that registered ``name``, or None."""
        entry = self._entries.get(name)
        return entry.plugin if entry else None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


class TransportRegistry(_NamedRegistry):
    """URL schemes and the transport factories of the plugins that claim them."""

    what = "URL scheme"

    def add(self, scheme: str, factory: TransportFactory, *, plugin: str | None = None) -> None:
        """Let ``factory(bus, settings)`` make the calling plugin's transport for
        ``scheme``. ``plugin`` may be left out; given, it must be the calling plugin's
        name (it is needed only outside a registry hook)."""
        self._add(scheme.lower() if isinstance(scheme, str) else scheme, factory, plugin)

    def factory(self, scheme: str) -> TransportFactory | None:
        entry = self._entries.get(scheme)
        return entry.value if entry else None


class ReceiverRegistry(_NamedRegistry):
    """Receiver kinds (``functions``, ``followers``, ``queues``, ...) by name.

    A kind is a :class:`ReceiverKind`: it subscribes its receivers with
    ``bus.subscribe(..., kind=self)``, so that each subscription carries what the kind
    can do. The public API asks the registry whether a kind is active before using it.
    """

    what = "receiver kind"

    def add(self, name: str, kind: ReceiverKind, *, plugin: str | None = None) -> None:
        """Make ``kind`` the calling plugin's receiver kind called ``name`` (``plugin``:
        as for :meth:`TransportRegistry.add`).

        :raises TypeError: ``kind`` has no ``name`` (a non-empty str) or no ``answers``:
            refused here, not by an AttributeError where the kind is first used.
        """
        kind_name = getattr(kind, "name", None)
        lacks = [what for what, ok in (("name", isinstance(kind_name, str) and kind_name),
                                       ("answers", hasattr(kind, "answers"))) if not ok]
        if lacks:
            raise TypeError(f"it registers as the receiver kind {name!r} {kind!r}, which has "
                            f"no {' and no '.join(lacks)} (a ReceiverKind has a name, a str, "
                            "and answers; berrymq.registries.Kind(name, answers=...) is one)")
        self._add(name, kind, plugin)

    def get(self, name: str) -> ReceiverKind | None:
        entry = self._entries.get(name)
        return entry.value if entry else None


class SourceRegistry(_NamedRegistry):
    """Sources by name: things that send on a bus by themselves (the ``timer`` and
    ``fileobserver`` adapters), each registered with the class that makes them."""

    what = "source"

    def add(self, name: str, source: type, *, plugin: str | None = None) -> None:
        """Make ``source`` (a class) the calling plugin's source called ``name``
        (``plugin``: as for :meth:`TransportRegistry.add`)."""
        self._add(name, source, plugin)

    def get(self, name: str) -> type | None:
        entry = self._entries.get(name)
        return entry.value if entry else None


@dataclass
class SettingsSchema:
    """The keys each plugin accepts in its table of the settings file, with their types
    and the checks of their values: a plugin's table is checked whole when the plugins
    load, so that ``berrymq plugins`` and the first use of the plugin agree."""

    tables: dict[str, dict[str, type | tuple[type, ...]]] = field(default_factory=dict)
    checks: dict[str, dict[str, SettingCheck]] = field(default_factory=dict)
    #: per plugin, the keys whose value names a file (see :meth:`add_check`)
    paths: dict[str, set[str]] = field(default_factory=dict)
    #: The plugin whose ``berrymq_declare_settings`` is running (set by the plugin host):
    #: a plugin declares the keys of its own table only (another's would change what that
    #: plugin's table accepts, and blame the file for it). None outside the hook.
    caller: str | None = None

    def _own(self, plugin: str, what: str) -> None:
        if self.caller is not None and plugin != self.caller:
            # a ValueError, made a PluginError naming the caller and its hook
            raise ValueError(f"it declares {what} of plugin {plugin!r}, another plugin's "
                             f"table; a plugin declares the settings of its own "
                             f"([berrymq.{self.caller}])")

    def add(self, plugin: str, **keys: type | tuple[type, ...]) -> None:
        """Declare ``key=type`` pairs for ``[berrymq.<plugin>]``; a type is a class or a
        tuple of classes (``(int, float)``).

        :raises TypeError: for anything else (``level="int"``): a fault of the declaring
            plugin, named when the plugins load, rather than an error at the first table
            that sets the key.
        """
        self._own(plugin, f"the setting(s) {', '.join(keys)}")
        for key, expected in keys.items():
            kinds = expected if isinstance(expected, tuple) else (expected,)
            if not kinds or not all(isinstance(kind, type) for kind in kinds):
                raise TypeError(f"it declares the setting {plugin}.{key} as {expected!r}, "
                                "which is not a type (int, str, (int, float), ...)")
        self.tables.setdefault(plugin, {}).update(keys)

    def add_check(self, plugin: str, key: str, check: SettingCheck, *, path: bool = False) -> None:
        """Check the value of ``key`` (once its type is right) with ``check``, which
        returns the problem or None; a problem is an error naming the file and line.

        With ``path``, the value (a string) names a file: ``check`` gets it as the plugin
        will use it, relative to the settings file's folder (see
        :meth:`Settings.file_path <berrymq.settings.Settings.file_path>`), so that a file
        that is missing is reported when the plugins load, not at its first use.
        """
        self._own(plugin, f"a check of the setting {key}")
        if not callable(check):
            raise TypeError(f"it declares as the check of the setting {plugin}.{key} "
                            f"{check!r}, which cannot be called")
        self.checks.setdefault(plugin, {})[key] = check
        if path:
            self.paths.setdefault(plugin, set()).add(key)


@dataclass
class StatusReport:
    """Lines of state, one or more per plugin, for ``berrymq plugins``."""

    lines: dict[str, list[str]] = field(default_factory=dict)

    def add(self, plugin: str, text: str) -> None:
        self.lines.setdefault(plugin, []).append(text)

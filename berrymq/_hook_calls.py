"""Calling a hook plugin by plugin, so that what one plugin raises is blamed on it.

pluggy calls every implementation of a hook in one go and lets a bare exception through;
:class:`~berrymq.plugins.PluginHost` calls each plugin's own implementations in turn
instead (pluggy's order), and turns an exception into the :class:`~berrymq.PluginError`
naming the plugin and the hook that ``blame`` makes. Errors that already say what to do
(:data:`PASSED_ON`) go through as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq.errors import PluginError, PluginNotAvailable, SettingsError

if TYPE_CHECKING:
    import pluggy

    from berrymq.bus import Bus

__all__ = ["PASSED_ON", "Blame", "call_each", "callers", "one_line", "taps"]

#: Errors a hook raises that already say what to do: passed on as they are.
PASSED_ON = (SettingsError, PluginNotAvailable, PluginError)

#: ``blame(plugin name, hook, exception)``: the error that names them.
Blame = Callable[[str, str, BaseException], PluginError]


def callers(pm: pluggy.PluginManager, hook: str) -> list[tuple[str, Callable[..., Any]]]:
    """The plugins implementing ``hook``, in pluggy's order, each with a caller of its
    own implementations alone: what a failure is then blamed on."""
    caller = getattr(pm.hook, hook)
    plugins = list(dict.fromkeys(impl.plugin for impl in reversed(caller.get_hookimpls())))
    return [(pm.get_name(plugin) or "?", pm.subset_hook_caller(
        hook, [other for other in pm.get_plugins() if other is not plugin]))
        for plugin in plugins]


def call_each(pm: pluggy.PluginManager, hook: str, blame: Blame,
              announce: Callable[[str], None] | None = None,
              failed: Callable[[str, BaseException], None] | None = None,
              **kwargs: Any) -> None:
    """Call ``hook`` of one plugin after another; an exception raised by one is
    ``blame``'s error for it. ``announce(name)`` is called before each plugin's turn;
    with ``failed``, the error is handed to ``failed(name, error)`` instead of raised,
    and the next plugin has its turn."""
    for name, call in callers(pm, hook):
        if announce is not None:
            announce(name)
        try:
            call(**kwargs)
        except PASSED_ON as exc:
            if failed is None:
                raise
            failed(name, exc)
        except Exception as exc:
            if failed is None:
                raise blame(name, hook, exc) from exc
            failed(name, blame(name, hook, exc))


def taps(pm: pluggy.PluginManager, hook: str, blame: Blame) -> list[Callable[..., Any]]:
    """One caller of a per-message ``hook`` per plugin that implements it (none: no cost
    per message), each raising ``blame``'s error for what its plugin raised. With one such
    plugin, the hook's own caller: a subset's filters its plugins at every call."""
    found = callers(pm, hook)
    if len(found) == 1:
        found = [(found[0][0], getattr(pm.hook, hook))]

    def tap(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def observe(bus: Bus, message: Any) -> None:
            try:
                call(bus=bus, message=message)
            except PASSED_ON:
                raise
            except Exception as exc:
                raise blame(name, hook, exc) from exc
        return observe

    return [tap(name, call) for name, call in found]


def one_line(problem: object) -> str:
    """An exception's message (or a text) on one line (pluggy's span several)."""
    return "; ".join(line.strip() for line in str(problem).splitlines() if line.strip())

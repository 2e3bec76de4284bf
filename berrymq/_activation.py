"""Which installed plugins load, and in what state; and what to do to make one active.

:mod:`berrymq._discovery` finds the plugins that may be loaded; this module decides, from
the settings file and ``BERRYMQ_BLOCK_PLUGINS``, which of them are active and says why
(the reason ``berrymq plugins`` lists), warns of those passed over, and tells a user what
to do for a plugin that is not active. :class:`~berrymq.plugins.PluginHost` loads the
active ones and calls their hooks; these decisions are apart from it because they read
only names and settings, never a plugin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from berrymq._discovery import BLOCK_ENV_VAR, Candidate, blocked_plugins, install_hint
from berrymq.settings import Settings

__all__ = ["CORE_RECEIVERS", "PluginInfo", "activation", "how_to_get", "pass_over"]

#: The receiver plugins that make up the local API that ``import berrymq`` promises. An
#: allow-list (``plugins = [...]``) need not name them; only ``disable`` turns them off.
CORE_RECEIVERS = frozenset({"functions", "followers", "queues"})

logger = logging.getLogger("berrymq")


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as ``berrymq plugins`` lists it."""

    name: str
    distribution: str
    version: str
    module: str
    active: bool
    reason: str


def activation(name: str, settings: Settings, blocked: set[str]) -> tuple[bool, str]:
    """Whether the plugin ``name`` is active under ``settings`` with the plugin names
    ``blocked``, and why (the reason ``berrymq plugins`` lists)."""
    where = f" in {settings.path}" if settings.path else ""
    if name in blocked:
        return False, f"blocked by {BLOCK_ENV_VAR}"
    if name in settings.disable:
        return False, f"disabled{where}"
    if settings.plugins is not None and name not in settings.plugins:
        if name in CORE_RECEIVERS:
            return True, "core receiver (active unless disabled)"
        return False, f"not in the plugins list{where}"
    if settings.plugins is not None:
        return True, f"listed{where}"
    return True, "installed" if settings.path is None else f"not disabled{where}"


def pass_over(infos: list[PluginInfo], passed_over: list[tuple[Candidate, str]],
              installed: set[str] | None) -> None:
    """Warn of what was not loaded though a user may expect it: an entry point whose
    name was taken (added to ``infos``, inactive, with the reason; ``infos`` is then
    sorted) and, when every installed plugin is known (``installed``), a blocked name that
    is no installed plugin. Warnings, not errors: no setting could resolve the first (the
    name is the other plugin's too), and the variable may outlive the plugin it blocked."""
    for candidate, reason in passed_over:
        logger.warning("plugin %r of %s %s (%s) is %s; ask its authors to rename its "
                       "entry point, or uninstall it", candidate.name,
                       candidate.distribution, candidate.version, candidate.module, reason)
        infos.append(PluginInfo(candidate.name, candidate.distribution,
                                candidate.version, candidate.module, False, reason))
    infos.sort(key=lambda info: info.name)  # stable: the loaded one first
    unknown = sorted(blocked_plugins() - installed) if installed is not None else []
    for name in unknown:
        logger.warning("%s names %r, which is no installed plugin: it blocks nothing "
                       "(installed plugins: %s)", BLOCK_ENV_VAR, name,
                       ", ".join(sorted(installed or ())))


def how_to_get(infos: list[PluginInfo], settings: Settings, plugin: str,
               distribution: str | None) -> str:
    """What to do to have ``plugin`` (of ``distribution``) active, given the installed
    plugins ``infos``: install it, enable it where the settings file turned it off, or
    unblock it where the environment variable blocks it (whatever the settings file says:
    editing it cannot help)."""
    info = next((i for i in infos if i.name == plugin), None)
    if info is None:
        return install_hint(plugin, distribution)
    hint = f"plugin {plugin!r} is installed but not active ({info.reason})"
    if plugin in blocked_plugins():
        return f"{hint}; remove {plugin!r} from the environment variable {BLOCK_ENV_VAR}"
    if info.reason.startswith(("disabled", "not in the plugins list")):
        hint += "; enable it"
        if settings.path is not None:
            hint += f" in {settings.path}"
    return hint

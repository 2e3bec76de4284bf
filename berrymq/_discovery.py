"""Finding the plugins that may be loaded: the core's own, read from its distribution's
metadata, and (unless a plugin host is told otherwise) the entry points of the group
``berrymq`` of every installed distribution; and the names ``BERRYMQ_BLOCK_PLUGINS``
keeps from loading; and where to get the plugins distributed with berryMQ, so that an
error about one that is missing says what to install. :mod:`berrymq._activation` decides
which of them load, and :mod:`berrymq.plugins` loads them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from berrymq._version import __version__
from berrymq.errors import BerryMQError
from berrymq.settings import Settings

__all__ = ["BLOCK_ENV_VAR", "CORE_DISTRIBUTION", "ENTRY_POINT_GROUP", "KNOWN_COMMANDS",
           "KNOWN_OPTIONS", "KNOWN_SCHEMES", "Candidate", "blocked_plugins", "builtin", "builtin_plugins",
           "check_named_plugins", "distribution_of", "find_candidates", "install_hint"]

ENTRY_POINT_GROUP = "berrymq"

#: The distribution that declares the core's own plugins.
CORE_DISTRIBUTION = "berrymq"


def builtin_plugins() -> dict[str, str]:
    """The core's own plugins, name -> module: the entry points of the group ``berrymq``
    that the core distribution declares (its setup.cfg, the one list of them), read from
    its metadata, so that they load with or without the entry points of other
    distributions (``PluginHost(entry_points=False)``)."""
    try:
        dist = importlib.metadata.distribution(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise BerryMQError(
            "berryMQ's own plugins (local://, functions, queues...) are entry points of its "
            "distribution, which is not installed here: install it (pip install .) rather "
            "than importing berrymq from a source tree"
        ) from None
    found = {ep.name: ep.value for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP}
    if "local" not in found:
        raise BerryMQError(
            f"the installed metadata of berryMQ {dist.version} declares none of its own "
            "plugins (an install older than its entry points): install it again (pip "
            "install .)"
        )
    return found

#: Comma-separated plugin names that are never loaded, whatever the settings say.
BLOCK_ENV_VAR = "BERRYMQ_BLOCK_PLUGINS"


@dataclass(frozen=True)
class Candidate:
    """A plugin that may be loaded: its entry point name, where it comes from, and the
    call that imports it."""

    name: str
    distribution: str
    version: str
    module: str
    load: Callable[[], Any]


def builtin(name: str, module: str) -> Candidate:
    """The core's plugin ``name``, imported from ``module``."""
    return Candidate(name, CORE_DISTRIBUTION, __version__, module,
                     functools.partial(importlib.import_module, module))


def find_candidates(entry_points: bool) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """The built-in plugins, then (with ``entry_points``) the installed ones, by name; and
    the entry points passed over because their name was taken first (by a built-in
    plugin, or by another distribution's earlier on ``sys.path``), each with its reason."""
    found = {name: builtin(name, module) for name, module in builtin_plugins().items()}
    passed_over: list[tuple[Candidate, str]] = []
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            candidate = Candidate(ep.name, dist.metadata["Name"] if dist is not None else "?",
                                  dist.version if dist is not None else "?", ep.value, ep.load)
            first = found.get(ep.name)
            if first is None:
                found[ep.name] = candidate
            elif (first.distribution.lower() != candidate.distribution.lower()
                  and first.module != candidate.module):  # not one seen twice on sys.path
                owner = ("berryMQ's built-in plugin" if first.distribution == CORE_DISTRIBUTION
                         else f"the plugin of {first.distribution} {first.version}")
                passed_over.append((candidate, f"not loaded: {owner} has this name"))
    return sorted(found.values(), key=lambda c: c.name), passed_over


def blocked_plugins() -> set[str]:
    """The plugin names in ``BERRYMQ_BLOCK_PLUGINS``."""
    return {n.strip() for n in os.environ.get(BLOCK_ENV_VAR, "").split(",") if n.strip()}


#: Where to get the plugin for a well-known URL scheme: (entry point, distribution).
KNOWN_SCHEMES: dict[str, tuple[str, str]] = {
    "local": ("local", "berrymq"),
    "http": ("jsonrpc-http", "berrymq-jsonrpc-http"),
    "tcp": ("jsonrpc-tcp", "berrymq-jsonrpc-tcp"),
    "nats": ("nats", "berrymq-nats"),
}

#: The commands of ``berrymq`` that plugins distributed with berryMQ add, and the plugins
#: (entry point, distribution) that add them: named when none of them is active.
#: (``graph`` is the core's: what the plugins add to it is its ``URL``.)
KNOWN_COMMANDS: dict[str, tuple[tuple[str, str], ...]] = dict.fromkeys(
    ("serve", "send", "ask", "listen", "status", "graph"),
    (("jsonrpc-tcp", "berrymq-jsonrpc-tcp"), ("jsonrpc-http", "berrymq-jsonrpc-http")),
)

#: The options of ``serve`` that plugins distributed with berryMQ add (``--tcp``,
#: ``--monitor``...), and the plugin (entry point, distribution) that adds each.
KNOWN_OPTIONS: dict[str, tuple[str, str]] = {
    **KNOWN_SCHEMES, "monitor": ("jsonrpc-http", "berrymq-jsonrpc-http")}

#: berryMQ's own plugins by name, and their distributions.
PROJECT_PLUGINS: dict[str, str] = dict(KNOWN_SCHEMES.values())


def distribution_of(provider: object) -> str | None:
    """The installed distribution of the module that defines ``provider`` (an adapter's
    class), or None (no provider, or a module of no installed distribution)."""
    module = getattr(provider, "__module__", None)
    if not isinstance(module, str):
        return None
    found = importlib.metadata.packages_distributions().get(module.partition(".")[0])
    return found[0] if found else None


def install_hint(plugin: str, distribution: str | None) -> str:
    """How to install ``plugin`` of ``distribution``: no package index serves berryMQ's
    plugins, so a pip install from a checkout (with the JSON-RPC library a JSON-RPC
    transport needs beside it); another distribution's, a pip install of it; of an
    unknown distribution, what declares a plugin."""
    if distribution is None:
        return (f"install the plugin {plugin!r}: no installed distribution declares it (an "
                f"entry point {plugin!r} of the group {ENTRY_POINT_GROUP!r})")
    if distribution != CORE_DISTRIBUTION and not distribution.startswith("berrymq-"):
        return (f"install the plugin {plugin!r} of {distribution} (pip install {distribution}, "
                f"a version that declares it: the entry point {plugin!r} of the group "
                f"{ENTRY_POINT_GROUP!r})")
    source = "." if distribution == CORE_DISTRIBUTION else f"./plugins/{distribution}"
    if distribution.startswith("berrymq-jsonrpc-"):
        source = f"./plugins/berrymq-jsonrpc {source}"
    return f"install the plugin {plugin!r} (in a berryMQ checkout: pip install {source})"


def check_named_plugins(settings: Settings, installed: set[str]) -> None:
    """A :class:`~berrymq.errors.SettingsError` for a plugin that the settings name
    (``plugins``, ``disable``, a table) and is not installed: it lists the installed ones
    and, for one of berryMQ's own plugins, says what to install."""
    def problem(what: str, name: str) -> str:
        text = f"{what} {name!r}; installed plugins: {', '.join(sorted(installed))}"
        if name in PROJECT_PLUGINS:
            text += f"; to have it, {install_hint(name, PROJECT_PLUGINS[name])}"
        return text

    for key, names in (("plugins", settings.plugins or ()), ("disable", settings.disable)):
        for name in names:
            if name not in installed:
                raise settings.error(problem(f"{key} names unknown plugin", name), key)
    for name in settings.tables:
        if name not in installed:
            raise settings.error(problem("settings table for unknown plugin", name), None, name)

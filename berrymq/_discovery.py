"""Finding the plugins that may be loaded: the core's own, read from its distribution's
metadata, and (unless a plugin host is told otherwise) the entry points of the group
``berrymq`` of every installed distribution; and the names ``BERRYMQ_BLOCK_PLUGINS``
keeps from loading. :mod:`berrymq.plugins` decides which of them load.
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

__all__ = ["BLOCK_ENV_VAR", "CORE_DISTRIBUTION", "ENTRY_POINT_GROUP", "Candidate",
           "blocked_plugins", "builtin", "builtin_plugins", "find_candidates"]

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

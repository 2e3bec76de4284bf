"""What ``berrymq --version`` prints: berryMQ's version and those of the distributions its
plugins come from, also when the plugins cannot load (then every faulty one is marked)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import sys

from berrymq._discovery import find_candidates
from berrymq._output import discard_output, write_output
from berrymq._version import __version__
from berrymq.errors import BerryMQError, PluginError
from berrymq.plugins import PluginHost, get_plugin_host

__all__ = ["print_versions", "versions"]


def versions(as_json: bool = False) -> str:
    """``berrymq X`` and the version of every distribution an installed plugin comes from;
    when the plugins cannot load (a wrong settings file, a faulty plugin), those found
    installed, the faulty one marked. ``as_json``: one JSON object, ``{"berrymq",
    "python", "distributions": {name: version}}``."""
    versions: dict[str, str] = {}
    try:
        versions.update((i.distribution, i.version) for i in get_plugin_host().infos())
    except BerryMQError as exc:  # the rest still says what is installed
        faulty = _faulty_plugins(exc)
        with contextlib.suppress(BerryMQError):
            found, passed_over = find_candidates(True)
            for c in [*found, *(candidate for candidate, _ in passed_over)]:
                mark = f" (plugin {c.name!r} cannot load)" if c.name in faulty else ""
                versions[c.distribution] = versions.get(c.distribution, c.version) + mark
    for dist in importlib.metadata.distributions():  # libraries of plugins too (berrymq-jsonrpc)
        name = dist.metadata["Name"] or ""
        if name.lower().startswith("berrymq-"):
            versions.setdefault(name, dist.version)
    versions.pop("berrymq", None)
    python = sys.version.split()[0]
    if as_json:
        return json.dumps({"berrymq": __version__, "python": python,
                           "distributions": dict(sorted(versions.items()))}, ensure_ascii=False)
    lines = [f"berrymq {__version__} (Python {python})"]
    lines += [f"{name} {version}" for name, version in sorted(versions.items())]
    return "\n".join(lines)


def _faulty_plugins(error: BerryMQError) -> set[str]:
    """Every plugin that cannot load, from the first one's ``error``: the load stops at
    the first, so it is tried again without those found so far, until it loads or fails
    for another reason (a settings file, a name two plugins claim)."""
    faulty: set[str] = set()
    while isinstance(error, PluginError) and error.plugin and error.plugin not in faulty:
        faulty.add(error.plugin)
        try:
            PluginHost(blocked=faulty)
        except BerryMQError as again:
            error = again
        else:
            break
    return faulty


def print_versions(as_json: bool) -> int:
    """Print :func:`versions` (the exit status: 0, or 1 when stdout fails)."""
    try:
        write_output(versions(as_json) + "\n")  # (quietly, if its reader went away: | head -1)
    except OSError as exc:  # stdout fails otherwise (a full disk): a line, as a command's
        discard_output()
        print(f"berrymq: error: --version failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0

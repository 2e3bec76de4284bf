"""The ``jsonl`` plugin: append every message matching a pattern to a JSON-lines file.

Configured in the settings file (``berrymq.toml``)::

    [berrymq.jsonl]
    path = "messages.jsonl"    # relative to the settings file's folder
    pattern = "*:*"            # or a list of patterns; "*:*" when omitted

Without ``path`` the plugin stays idle, so installing it changes nothing until it is
configured. Each message becomes one line::

    {"id": "job:done", "namespace": null, "args": [1], "kwargs": {"user": "ada"},
     "time": 1700000000.0}

Values JSON cannot represent are written as their ``repr()``: the line is always written.

How it is made, the parts a receiver plugin has:

- a receiver kind, :data:`KIND` (the :class:`~berrymq.registries.ReceiverKind` protocol:
  a ``name`` and whether its receivers ``answer`` requests; a writer does not), registered
  with :func:`~berrymq.hookspecs.berrymq_register_receivers` and passed to
  ``bus.subscribe(..., kind=KIND)``;
- its per-bus state, the writer, kept in the bus's extension slot under :data:`WRITER`
  (``bus.state(WRITER)``): made when the bus starts, closed when the bus closes;
- :func:`~berrymq.hookspecs.berrymq_declare_settings` to declare its keys (so a typo in
  the settings file is an error naming the line), :func:`~berrymq.hookspecs.berrymq_start_bus`
  to open the file and subscribe, and :func:`~berrymq.hookspecs.berrymq_report_status`
  for ``berrymq plugins``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from berrymq import Bus, Message, Subscription
from berrymq.hookspecs import hookimpl
from berrymq.registries import Kind, ReceiverRegistry, SettingsSchema, StatusReport
from berrymq.state import StateKey

__all__ = ["KIND", "NAME", "WRITER", "JsonLinesWriter", "writer_for"]

#: The entry point name, which is also the name of the plugin's settings table.
NAME = "jsonl"

#: The receiver kind: its receivers write messages down, answer no request and never
#: refuse a message (so a node may answer a remote send_message before they run).
KIND = Kind(NAME, answers=False, refuses=False)


class JsonLinesWriter:
    """The receiver: one line of JSON per message, appended to ``path``.

    The file is opened with ``O_APPEND`` and each line is written with one ``os.write``
    call, unbuffered: lines from several threads (or processes) never interleave, and a
    line is in the file as soon as the receiver returns.
    """

    def __init__(self, path: Path, patterns: list[str]) -> None:
        self.path = path
        self.patterns = patterns
        self.count = 0
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.subscriptions: list[Subscription] = []

    def __call__(self, message: Message) -> None:
        fd = self._fd
        if fd is None:
            return  # closed while a worker thread still held the message
        record = {
            "id": message.id,
            "namespace": message.namespace,
            "args": list(message.args),
            "kwargs": message.kwargs,
            "time": time.time(),
        }
        line = json.dumps(record, default=repr, ensure_ascii=False) + "\n"
        os.write(fd, line.encode("utf-8"))
        self.count += 1

    def close(self) -> None:
        """Unsubscribe and close the file (idempotent)."""
        for subscription in self.subscriptions:
            subscription.cancel()
        self.subscriptions.clear()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def describe(self) -> str:
        state = "open" if self._fd is not None else "closed"
        return f"{', '.join(self.patterns)} -> {self.path} ({self.count} written, {state})"


def _make_writer(bus: Bus) -> JsonLinesWriter | None:
    """The writer for ``bus``, following its pattern(s), or None without a path."""
    host = bus.plugins
    settings = host.settings_for(NAME)
    if "path" not in settings:
        return None
    path = Path(settings["path"]).expanduser()
    if not path.is_absolute() and host.settings.path is not None:
        path = Path(host.settings.path).resolve().parent / path
    writer = JsonLinesWriter(path, _patterns(settings))
    for pattern in writer.patterns:
        # weak=False: nothing else holds the writer; closing the bus closes it.
        writer.subscriptions.append(bus.subscribe(pattern, writer, weak=False, kind=KIND))
    return writer


def _close_writer(writer: JsonLinesWriter | None) -> None:
    if writer is not None:
        writer.close()


#: This plugin's state on a bus: its writer (None while idle), closed with the bus.
WRITER: StateKey[JsonLinesWriter | None] = StateKey("jsonl writer", _make_writer, _close_writer)


def writer_for(bus: Bus) -> JsonLinesWriter | None:
    """The writer this plugin attached to ``bus``, or None when it is idle there."""
    return bus.extensions.peek(WRITER)


def _patterns(settings: Mapping[str, Any]) -> list[str]:
    pattern = settings.get("pattern", "*:*")
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"[berrymq.{NAME}] pattern must be a string or a list of strings")
    return patterns


@hookimpl
def berrymq_declare_settings(schema: SettingsSchema) -> None:
    """Declare ``path`` and ``pattern``: any other key in ``[berrymq.jsonl]`` is an error."""
    schema.add(NAME, path=str, pattern=(str, list))


@hookimpl
def berrymq_register_receivers(registry: ReceiverRegistry) -> None:
    """Register the receiver kind, so that ``disable = ["jsonl"]`` is reported by name."""
    registry.add(NAME, KIND, plugin=NAME)


@hookimpl
def berrymq_start_bus(bus: Bus) -> None:
    """Open the file and follow the pattern(s) on this bus, if a path is set."""
    bus.state(WRITER)


@hookimpl
def berrymq_report_status(bus: Bus, report: StatusReport) -> None:
    """One line for ``berrymq plugins``: where messages go, or why the plugin is idle."""
    writer = writer_for(bus)
    if writer is not None:
        report.add(NAME, writer.describe())
        return
    settings = bus.plugins.settings_for(NAME)
    if "path" in settings:
        report.add(NAME, f"will write {', '.join(_patterns(settings))} to {settings['path']}")
    else:
        report.add(NAME, f"idle: no path set in [berrymq.{NAME}]")

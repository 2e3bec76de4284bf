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
- :func:`~berrymq.hookspecs.berrymq_declare_settings` to declare its keys and check their
  values (so a typo, a pattern that is no identifier or a path in a folder that does not
  exist is an error naming the line, from ``berrymq plugins`` as from the first use),
  :func:`~berrymq.hookspecs.berrymq_start_bus`
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

from berrymq import Bus, Identifier, InvalidIdentifier, Message, Subscription
from berrymq.hookspecs import hookimpl
from berrymq.registries import Kind, ReceiverRegistry, SettingsSchema, StatusReport
from berrymq.state import StateKey

__all__ = ["KIND", "NAME", "WRITER", "JsonLinesWriter", "path_problem", "pattern_problem",
           "writer_for"]

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
    # as the check saw it: relative to the settings file's folder, ~ expanded
    path = Path(host.settings.file_path(settings["path"])).resolve()
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
    """The pattern(s) of the table, as a list (checked when the plugins loaded)."""
    pattern = settings.get("pattern", "*:*")
    return [pattern] if isinstance(pattern, str) else list(pattern)


def pattern_problem(value: str | list[Any]) -> str | None:
    """What is wrong with the ``pattern`` setting (its type, str or list, is checked
    first): each pattern must be an identifier, as ``bus.subscribe`` would require."""
    patterns = [value] if isinstance(value, str) else value
    if not patterns:
        return "must not be an empty list"
    for pattern in patterns:
        if not isinstance(pattern, str):
            return f"must be a string or a list of strings, got {pattern!r} in the list"
        try:
            Identifier(pattern)
        except InvalidIdentifier as exc:
            return f"{pattern!r} is not a pattern: {exc.reason}"
    return None


def path_problem(path: str) -> str | None:
    """What is wrong with the ``path`` setting, given as the plugin will open it
    (relative to the settings file's folder): its folder must exist (the plugin creates
    the file, not folders), and it must not be a folder itself."""
    if not path:
        return "must not be empty"
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f"is in a folder that does not exist: {folder}"
    if os.path.isdir(path):
        return f"names a folder, not a file: {path}"
    return None


@hookimpl
def berrymq_declare_settings(schema: SettingsSchema) -> None:
    """Declare ``path`` and ``pattern`` and check their values: any other key in
    ``[berrymq.jsonl]``, or a value the plugin could not use, is an error naming the line
    when the plugins load (so ``berrymq plugins`` reports it), not at the first message."""
    schema.add(NAME, path=str, pattern=(str, list))
    schema.add_check(NAME, "path", path_problem, path=True)
    schema.add_check(NAME, "pattern", pattern_problem)


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

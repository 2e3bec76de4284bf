"""Adapters: ``FileObserver(glob, id_name, interval)`` sends ``id_name:created``,
``id_name:modified`` and ``id_name:removed`` with the path for files matching ``glob``.

Expected output:
    logfile:created app.log
    logfile:modified app.log
    logfile:removed app.log
"""

from __future__ import annotations

import os
import tempfile

import berrymq


@berrymq.following_function("logfile:*")
def on_change(message: berrymq.Message) -> None:
    print(message.id, os.path.basename(message.args[0]))


with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "app.log")
    events = berrymq.Queue("logfile:*")
    # watchdog=True looks at once when the folder changes; the polling every
    # `interval` seconds decides what changed, so the messages are the same without it.
    with berrymq.FileObserver(os.path.join(folder, "*.log"), "logfile", interval=0.1,
                              watchdog=True):
        # Written beside the watched name and renamed into place, so that no round sees
        # a half-written file (which would be reported as created, then modified).
        with open(path + ".partial", "w") as handle:
            handle.write("started\n")
        os.replace(path + ".partial", path)
        events.get(timeout=5)
        with open(path, "a") as handle:
            handle.write("a second, longer line\n")
        while events.get(timeout=5).action != "modified":
            pass
        os.remove(path)
        while events.get(timeout=5).action != "removed":
            pass

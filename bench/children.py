"""The child processes of a benchmark script: the same script run again with ``--role``.

A child says ``ready ...`` (and later its results) on its stdout and takes lines on its
stdin; :class:`Child` queues what it says, so the parent waits for each line with a
deadline. :func:`kill_all` ends whatever is left when the parent stops early.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from contextlib import suppress

_made: list[Child] = []


class Child:
    """``python SCRIPT --role ROLE ARGS...``; :meth:`expect` waits at most ``timeout`` s."""

    def __init__(self, script: str, role: str, *args: str, timeout: float) -> None:
        self.role = role
        self.timeout = timeout
        self.process = subprocess.Popen(
            [sys.executable, script, "--role", role, *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()
        _made.append(self)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float | None = None) -> str:
        """Wait for a stdout line starting with ``prefix`` and return the rest of it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"child {self.role!r} did not say {prefix!r}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"child {self.role!r} exited "
                                   f"(code {self.process.wait()}) before saying {prefix!r}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        """Close its stdin (the sign to end) and wait for it, killing it after 10 s."""
        if self.process.stdin is not None:
            with suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def kill_all() -> None:
    """Kill every child still running (the parent is stopping)."""
    for child in _made:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()

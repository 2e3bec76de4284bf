"""The ``berrymq`` command as a subprocess, for the CLI tests: its output lines queued
and read with deadlines (conftest.py puts this directory on ``sys.path``)."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import clean_env

DEADLINE = 30.0


class Proc:
    """A ``python -m berrymq`` subprocess whose stdout and stderr lines are queued."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None,
                 stdin: bool = False) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-m", "berrymq", *args], cwd=cwd, text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(**(env or {})),
        )
        self.out: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.err: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.err_lines: list[str] = []
        self.pumps = [
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for pump in self.pumps:
            pump.start()

    @staticmethod
    def _pump(stream: object, lines: queue.SimpleQueue[str | None]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def line(self, stream: str = "out", timeout: float = DEADLINE) -> str:
        lines = self.out if stream == "out" else self.err
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"berrymq {' '.join(self.args)}: no {stream} line within "
                                 f"{timeout}s") from None
        if line is None:
            lines.put(None)
            rest = "".join(self.err_lines)
            raise AssertionError(f"berrymq {' '.join(self.args)}: {stream} ended "
                                 f"(exit {self.process.wait()}) {rest}")
        if stream == "err":
            self.err_lines.append(line)
        return line

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=DEADLINE)

    def rest_of(self, stream: str) -> list[str]:
        """Every remaining line of a stream (the process must have ended)."""
        lines = self.out if stream == "out" else self.err
        result: list[str] = []
        while True:
            line = lines.get(timeout=DEADLINE)
            if line is None:
                lines.put(None)
                return result
            result.append(line)

    def close(self) -> None:
        """Kill the process if it still runs, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pump in self.pumps:
            pump.join(DEADLINE)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def listen(tmp_path: Path, procs: list[Proc], url: str, pattern: str, *more: str) -> Proc:
    proc = Proc("listen", url, pattern, *more, cwd=tmp_path)
    procs.append(proc)
    # printed once the node holds the queue: everything sent from now on is seen
    assert proc.line("err") == f"listening to {pattern} at {url}"
    return proc


def one_error_line(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The one ``berrymq: error:`` line of a command that failed with exit ``status``
    (2: usage error, nothing done; 1: the run failed)."""
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("berrymq: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def scripted_node(answer: Callable[[dict[str, Any]], object]) -> str:
    """A node of one TCP connection that answers each request with ``answer(request)``'s
    result (:data:`GONE`: closes the connection, unanswered); returns its URL."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError), server:
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as lines:
                while line := lines.readline():
                    request = json.loads(line)
                    result = answer(request)
                    if result is GONE:
                        return
                    if "id" in request:
                        conn.sendall(json.dumps({"jsonrpc": "2.0", "result": result,
                                                 "id": request["id"]}).encode() + b"\n")

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}"


#: What :func:`scripted_node`'s ``answer`` returns to end the connection without answering.
GONE = object()

#: A token as a node gives one.
TOKEN = "t" * 43

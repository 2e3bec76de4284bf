"""Helpers for tests of code that uses the NATS bridge (and for this plugin's own tests).

- :class:`NatsServer` starts a real ``nats-server`` on free loopback ports (never the
  standard 4222; :func:`berrymq.testing.free_port`), restartable on the same ports.
- :class:`Recorder` is a receiver that keeps what it gets, with a bounded wait.
- :func:`bridge_of` joins a bus to NATS; :func:`settle` flushes bridges;
  :func:`wait_until` polls a condition with a deadline.

Without ``nats-server`` the test is skipped, unless ``BERRYMQ_REQUIRE_BROKERS=1``, where
its absence fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from berrymq.message import Message
from berrymq.testing import free_port
from berrymq.transports.ioloop import io_loop
from berrymq_nats.transport import NatsTransport

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq_nats.bridge import NatsBridge

__all__ = ["NatsServer", "Recorder", "bridge_of", "held_io_loop", "require_nats_server",
           "send_frames", "settle", "wait_until"]

START_DEADLINE = 15.0


def require_nats_server() -> str:
    """The program's path; skips the test without it, unless BERRYMQ_REQUIRE_BROKERS=1."""
    program = shutil.which("nats-server")
    if program is None:
        reason = "nats-server is not installed (Debian package nats-server)"
        if os.environ.get("BERRYMQ_REQUIRE_BROKERS") == "1":
            pytest.fail(f"{reason}, and BERRYMQ_REQUIRE_BROKERS=1 requires it")
        pytest.skip(reason)
    return program


class PortTaken(RuntimeError):
    """Another program took a port between the choice and the server's start."""


class NatsServer:
    """One ``nats-server`` process on loopback; ``stop()`` (SIGKILL) and ``start()`` again
    keep the same ports.

    :param cluster_port: join a cluster, listening for routes on this port.
    :param routes: the cluster ports of the other nodes.
    :param monitor: serve the monitoring endpoint too (see :meth:`monitor_json`).
    :param args: more arguments of ``nats-server``: ``("--auth", token)``,
        ``("--user", u, "--pass", p)``, ``("-c", config_file)``.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, cluster_port: int | None = None,
                 routes: tuple[int, ...] = (), name: str = "n1", monitor: bool = False,
                 args: tuple[str, ...] = ()) -> None:
        self.program = require_nats_server()
        self._fixed = port is not None or cluster_port is not None
        self.port = port or free_port()
        self.monitor = free_port() if monitor else None
        self.cluster_port = cluster_port
        self.routes = routes
        self.name = name
        self.args = args
        self.workdir = workdir
        self.started = False
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"nats-{self.name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start the server; the first time, ports another program took meanwhile are
        replaced by others (a restart keeps them: clients reconnect to them)."""
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                if self._fixed or self.started or attempt == 2:
                    raise
                self.port = free_port()
                self.monitor = self.monitor and free_port()
        raise AssertionError("unreachable")

    def _start(self) -> NatsServer:
        args = [self.program, *self.args, "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name]
        if self.monitor:
            args += ["-m", str(self.monitor)]
        if self.cluster_port is not None:
            args += ["--cluster_name", "berrymq-test",
                     "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        self.started = True
        return self

    def wait_ready(self) -> None:
        """Until the server greets a client with ``INFO`` (bounded by a deadline)."""
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                if "address already in use" in self.log.read_text():
                    self.log.unlink()
                    raise PortTaken(self.port)
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}: {self.log.read_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server on port {self.port} not ready in time")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGKILL the server (what a crash does) and wait for it to end."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP the server: its connections stay open and nothing is read or answered
        (a stalled host, a long GC pause of a VM) until :meth:`resume`. Returns once every
        thread of it has stopped (a signal takes effect a little later)."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGSTOP)
        self._wait_state(stopped=True)

    def resume(self) -> None:
        """SIGCONT a server that :meth:`pause` stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self._wait_state(stopped=False)

    def _wait_state(self, stopped: bool) -> None:
        """Until every thread of the server is (or none is) in the stopped state ``T``
        of ``/proc`` (bounded by a deadline)."""
        assert self.process is not None
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + START_DEADLINE
        while True:
            states = []
            for task in tasks.iterdir():
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            if states and all((state == "T") == stopped for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not {'stop' if stopped else 'go on'}: "
                                   f"thread states {states}")
            time.sleep(0.005)

    def monitor_json(self, path: str) -> dict[str, Any]:
        """A page of the server's monitoring endpoint (``/connz?subs=1``, ``/routez``)."""
        assert self.monitor, "start the server with monitor=True"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}{path}", timeout=2) as r:
            return dict(json.loads(r.read()))

    def subjects_of(self) -> list[list[str]]:
        """The subscriptions of every client connection, one list per connection."""
        data = self.monitor_json("/connz?subs=1")
        return [sorted(c.get("subscriptions_list", [])) for c in data.get("connections", [])]


class Recorder:
    """A receiver that keeps the messages it gets; ``wait(n)`` waits for n (bounded)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.cond = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 20.0) -> list[Message]:
        """The messages, once there are ``count`` or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return list(self.messages)

    @property
    def args(self) -> list[Any]:
        """The first argument of each message."""
        with self.cond:
            return [m.args[0] for m in self.messages]

    @property
    def ids(self) -> list[str]:
        with self.cond:
            return [str(m.identifier) for m in self.messages]


def bridge_of(bus: Bus, url: str, **options: Any) -> NatsBridge:
    """Join ``bus`` to NATS at ``url`` (waiting for the connection) and return the bridge."""
    transport = bus.transport("nats")
    assert isinstance(transport, NatsTransport)
    return transport.connect_broker(url, **options)


def send_frames(url: str, *frames: bytes) -> None:
    """Send NATS protocol frames as they are (bytes no client library sends), then wait
    for the server's PONG: it has routed them by then."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.recv(65536)  # INFO
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
                     + b"".join(frames) + b"PING\r\n")
        seen = b""
        while b"PONG" not in seen and (chunk := sock.recv(65536)):
            seen += chunk
    assert b"PONG" in seen and b"-ERR" not in seen, seen


@contextlib.contextmanager
def held_io_loop(timeout: float = 20.0) -> Iterator[None]:
    """Hold the process's I/O thread busy inside the block (at most ``timeout``): nothing
    is published, as when the server stops reading, and the outgoing queue fills."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(timeout)

    io_loop.call_soon(hold)
    try:
        assert entered.wait(10), "the I/O thread did not come to the hold"
        yield
    finally:
        release.set()


def settle(*bridges: NatsBridge) -> None:
    """Every subscription and message so far has reached the server (PING/PONG)."""
    for bridge in bridges:
        assert bridge.flush(10.0)


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` until true, at most ``timeout`` seconds, else fail naming it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what or condition}")
        time.sleep(0.02)

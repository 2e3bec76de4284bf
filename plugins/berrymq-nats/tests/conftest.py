"""Fixtures of the NATS plugin's tests: real ``nats-server`` processes on free loopback
ports (never the server on the standard port 4222), isolated buses, berryMQ worker
processes, and a TCP relay that can cut one client's link. The helpers themselves are in
:mod:`berrymq_nats.testing`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from berrymq_nats import NatsBridge
from berrymq_nats import plugin as nats_plugin
from berrymq_nats.testing import NatsServer, bridge_of, wait_until

from berrymq.bus import Bus
from berrymq.default import use_bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings
from berrymq.testing import free_port

WORKER = Path(__file__).with_name("worker.py")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def nats_factory(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    """Make (not start) NatsServer objects; every one is stopped after the test."""
    made: list[NatsServer] = []

    def make(**kwargs: object) -> NatsServer:
        server = NatsServer(tmp_path, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def nats_server(nats_factory: Callable[..., NatsServer]) -> NatsServer:
    """A started nats-server on a free loopback port, with its monitoring endpoint."""
    return nats_factory(monitor=True).start()


_host: PluginHost | None = None


def isolated_host() -> PluginHost:
    """The core's plugins and this one only, without a settings file: the tests do not
    depend on other installed plugins or on a berrymq.toml in the working directory."""
    return PluginHost(Settings(), entry_points=False, extra_plugins=[("nats", nats_plugin)])


@pytest.fixture
def nats_host() -> PluginHost:
    global _host
    if _host is None:
        _host = isolated_host()
    return _host


@pytest.fixture
def nats_cluster(nats_factory: Callable[..., NatsServer]) -> tuple[NatsServer, NatsServer]:
    """Two nats-server nodes routed to each other on loopback (started)."""
    c1, c2 = free_port(), free_port()
    n1 = nats_factory(cluster_port=c1, routes=(c2,), name="n1")
    n2 = nats_factory(cluster_port=c2, routes=(c1,), name="n2")
    return n1.start(), n2.start()


@pytest.fixture
def make_bus(nats_host: PluginHost) -> Iterator[Callable[..., Bus]]:
    """Make isolated buses (raising receivers' errors); all are closed after the test."""
    buses: list[Bus] = []

    def make(name: str = "bus") -> Bus:
        bus = Bus(raise_errors=True, plugins=nats_host, name=name)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


@pytest.fixture
def pair(nats_server: NatsServer, make_bus: Callable[..., Bus]) -> tuple[Bus, NatsBridge, Bus, NatsBridge]:
    """Two buses, each joined to the test's server by its own bridge."""
    a, b = make_bus("a"), make_bus("b")
    return a, bridge_of(a, nats_server.url), b, bridge_of(b, nats_server.url)


@pytest.fixture
def default_bus(make_bus: Callable[..., Bus]) -> Iterator[Bus]:
    """An isolated bus that is the default bus (the module-level API) for the test."""
    bus = make_bus("default")
    with use_bus(bus):
        yield bus


class Worker:
    """A berryMQ process (tests/worker.py) driven by lines on stdin, answering on stdout."""

    def __init__(self, url: str, *args: str, config: Path | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), url, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "BERRYMQ_CONFIG": str(config or "")},
        )

    def call(self, *command: object, timeout: float = 30.0) -> str:
        """Send one command line; return the worker's answer line (or raise its error)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(" ".join(str(c) for c in command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout)
            assert self.process.stderr is not None
            raise RuntimeError(f"worker died: {self.process.stderr.read()}")
        if line.startswith("error "):
            raise RuntimeError(line[6:].strip())
        return line.strip()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("exit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Start berryMQ worker processes; all end after the test."""
    started: list[Worker] = []

    def start(url: str, *args: str, config: Path | None = None) -> Worker:
        """``url`` "settings": join NATS as the settings file ``config`` says."""
        worker = Worker(url, *args, config=config)
        started.append(worker)
        assert worker.call("ping") == "pong"
        return worker

    yield start
    for worker in started:
        worker.close()


class Proxy:
    """A TCP relay on a loopback port to a server: ``cut()`` drops every connection and
    refuses new ones, ``restore()`` accepts again on the same port. It lets a test take
    one client's link down while the server and the other clients stay up.
    :attr:`accepted_at` has the monotonic time of each connection it accepted (a client's
    attempts to connect; with the server down, each is closed at once)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.accepted_at: list[float] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        return len(self.accepted_at)

    def restore(self) -> None:
        listener = socket.socket()
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted_at.append(time.monotonic())
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pipe, args=(src, dst), daemon=True)
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.cut()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], Proxy]]:
    made: list[Proxy] = []

    def make(target_port: int) -> Proxy:
        proxy = Proxy(target_port)
        proxy.restore()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture
def poll() -> Callable[..., None]:
    """``poll(condition, timeout, what)``: wait for a condition with a deadline."""
    return wait_until

"""Fixtures for the inter-process tests: nodes in subprocesses, isolated buses."""

from __future__ import annotations

import functools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # berrymq_cli_procs, shared by the CLI tests

import helpers
from berrymq_cli_procs import Proc
from helpers import Buses, serve
from helpers import wait_for as poll_until
from probe_tools import OPEN_SOCKETS

from berrymq.bus import Bus

NODE_SCRIPT = Path(__file__).with_name("node_script.py")
TIMEOUT = 20.0

#: The fixture ``buses`` (isolated buses, all closed after the test), defined once in
#: helpers.py for every suite that uses it.
buses = helpers.buses


class Node:
    """A berryMQ node in a subprocess (plugins/berrymq-jsonrpc/tests/node_script.py), driven by commands."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("BERRYMQ_CONFIG", None)
        self.process = subprocess.Popen(
            [sys.executable, str(NODE_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=cwd, env=full_env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        assert self._answer(TIMEOUT) == "ready"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def _answer(self, timeout: float) -> Any:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node gave no answer in {timeout}s; stderr:\n"
                                 + "".join(self.stderr)) from None
        if line is None:
            raise AssertionError("node exited; stderr:\n" + "".join(self.stderr))
        answer = json.loads(line)
        if "error" in answer:
            raise NodeError(answer["error"])
        return answer["ok"]

    def __call__(self, op: str, timeout: float = TIMEOUT, **params: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **params}) + "\n")
        self.process.stdin.flush()
        return self._answer(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self("exit", timeout=10)
            except (AssertionError, OSError, NodeError):
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class NodeError(Exception):
    """The node answered a command with an error."""


@pytest.fixture(autouse=True)
def _close_open_sockets() -> Iterator[None]:
    """Close what a test opened with ``probe_tools.open_socket``."""
    yield
    while OPEN_SOCKETS:
        OPEN_SOCKETS.pop().close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Start nodes in subprocesses; every one is stopped after the test."""
    nodes: list[Node] = []

    def start(env: dict[str, str] | None = None) -> Node:
        node = Node(tmp_path, env)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def server(bus_factory: Buses) -> Callable[..., tuple[Bus, int]]:
    """``server(scheme, **settings)``: a node listening on a free loopback port, as
    (bus, port)."""
    return functools.partial(serve, bus_factory)


@pytest.fixture
def bus_factory(buses: Buses) -> Buses:
    """This suite's name for ``buses`` (helpers.py): isolated buses
    (``bus_factory(**tables)``: helpers.make_bus), all closed after the test."""
    return buses


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(condition, timeout, what)``: poll until true, fail at the deadline
    (:func:`helpers.wait_for`, with this suite's longer default deadline)."""

    def poll(condition: Callable[[], Any], timeout: float = TIMEOUT,
             what: str = "condition") -> Any:
        return poll_until(condition, timeout, what)

    return poll


class ServeNode:
    """``python -m berrymq serve ARGS`` in a subprocess; :attr:`urls` maps what it printed
    (``http``, ``tcp``, ``monitor``) to the URL it serves."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("BERRYMQ_CONFIG", "BERRYMQ_SECRET")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "berrymq", "serve", *args], cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**full_env, **(env or {})},
        )
        self.urls: dict[str, str] = {}
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        wanted = {a.lstrip("-") for a in args if a in ("--http", "--tcp", "--monitor")}
        while not wanted <= self.urls.keys():
            try:
                line = lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"serve printed no address in {TIMEOUT}s") from None
            if line is None:
                raise AssertionError("serve exited: " + (self.process.stderr.read()
                                                         if self.process.stderr else ""))
            word, _, url = line.strip().partition(" ")
            if word == "serving":
                self.urls[url.split("://")[0]] = url
            elif word == "monitor":
                self.urls["monitor"] = url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def serve_node(tmp_path: Path) -> Iterator[Callable[..., ServeNode]]:
    """``serve_node(*args, env=None, settings="")``: a ``berrymq serve`` subprocess in
    ``tmp_path`` (``settings``: the text of its berrymq.toml); stopped after the test."""
    nodes: list[ServeNode] = []

    def start(*args: str, env: dict[str, str] | None = None, settings: str = "") -> ServeNode:
        if settings:
            (tmp_path / "berrymq.toml").write_text(settings)
        node = ServeNode(tmp_path, list(args), env)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.close()


@pytest.fixture
def node(tmp_path: Path, procs: list[Proc]) -> tuple[Proc, str, str]:
    """A ``berrymq serve`` on free ports: (process, tcp URL, http URL)."""
    proc = Proc("serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", cwd=tmp_path)
    procs.append(proc)
    tcp = proc.line().removeprefix("serving ")
    http = proc.line().removeprefix("serving ")
    assert tcp.startswith("tcp://127.0.0.1:") and http.startswith("http://127.0.0.1:")
    return proc, tcp, http


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figures(**measured)``: record what a probe measured, as one JSON line (with the
    test's name) appended to the file named by ``BERRYMQ_FIGURES``; nothing when it is
    unset. ``bench/figures.py`` runs the probes with it set and prints the table."""

    def record(**measured: Any) -> None:
        path = os.environ.get("BERRYMQ_FIGURES")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"test": request.node.name, **measured}) + "\n")

    return record

"""Helpers shared by the test modules (imported as ``helpers``: tests/ is on the path)."""

from __future__ import annotations

import asyncio
import gc
import http.server
import importlib.metadata
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import berrymq
from berrymq import Empty, Follower, Message, Queue, QueueFull, following, hookspecs, regist_function
from berrymq.bus import Bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings

__all__ = ["CHILD_NODE", "WAIT", "Buses", "Child", "HeldReceiver", "Lines", "Logger", "LoopThread", "buses", "bytes_held", "capture", "child_env", "drain",
           "FullLink", "held_async_receiver", "forking_script", "installed", "send_body", "is_urgent", "json_values", "make_bus", "on_job",
           "on_log", "plugin_site", "populate", "publish_raw", "serve", "tcp_call"]

WAIT = 10.0  # generous deadline for anything that should happen "soon"

# The property tests (hypothesis) draw the same examples on every run, and a loaded
# machine that makes drawing them slow is no failure: the suite stays deterministic.
# Loaded here, as tests/conftest.py and the plugins' conftests import this module.
settings.register_profile("berrymq", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("berrymq")

# The suite starts hundreds of Python processes (nodes, the command line, examples). Where
# PYTHONDONTWRITEBYTECODE is set, as on this project's machines, each of them compiled every
# berryMQ module afresh: about 0.3 s a process, a third of the suite's time. They keep their
# bytecode in a cache of their own instead, outside the checkout, so the tree stays clean.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    os.environ.setdefault("PYTHONPYCACHEPREFIX",
                          os.path.join(tempfile.gettempdir(), f"berrymq-tests-bytecode-{os.getuid()}"))


def send_body(handler: http.server.BaseHTTPRequestHandler, body: bytes,
              content_type: str | None = "application/json") -> None:
    """Answer a stub HTTP server's request with 200 and ``body`` (and ``content_type``,
    none when None, as some servers send)."""
    handler.send_response(200)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def wait_for(condition: Callable[[], Any], timeout: float = WAIT,
             what: str = "condition") -> Any:
    """Poll ``condition`` until it is true (returned), failing at the deadline: for what
    no event or queue tells (a count of threads, a state of another process)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def bytes_held(action: Callable[[], object]) -> int:
    """The bytes still allocated after ``action`` ran, with Python's cyclic garbage
    collector held off meanwhile: what a reference cycle keeps stays counted, as it does
    in a process where the collector seldom runs (few, large messages)."""
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        return int(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
        gc.enable()


class FullLink:
    """A forwarder (a peer's link) whose outgoing buffer stays full."""

    def forward(self, message: Message, reply_to: object) -> None:
        raise QueueFull("the outbox to the peer is full")


@contextmanager
def held_async_receiver(bus: Bus, pattern: str) -> Iterator[tuple[list[Any], Callable[[], None]]]:
    """An ``async def`` receiver of ``pattern`` on ``bus``, on an event loop running in a
    thread of its own, that holds every message until ``release()`` is called. Yields
    ``(got, release)``: ``got`` lists the first argument of each message it finished.
    Released, and its loop stopped and closed, at the end of the block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="held-receiver-loop", daemon=True)
    thread.start()
    released = asyncio.Event()
    got: list[Any] = []
    holding: set[asyncio.Task[Any]] = set()

    async def held(message: Message) -> None:
        task = asyncio.current_task()
        assert task is not None
        holding.add(task)
        await released.wait()
        got.append(message.args[0])
        holding.discard(task)

    async def register() -> None:
        bus.subscribe(pattern, held, weak=False)

    async def finish() -> None:  # what it held ends before the loop stops
        released.set()
        await asyncio.gather(*holding)

    def release() -> None:
        loop.call_soon_threadsafe(released.set)

    try:
        asyncio.run_coroutine_threadsafe(register(), loop).result(WAIT)
        yield got, release
    finally:
        asyncio.run_coroutine_threadsafe(finish(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()


def installed(dist: str) -> bool:
    """Whether the distribution ``dist`` is installed."""
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def capture(pattern: str) -> list[Message]:
    """The messages of ``pattern`` on the default bus, as they come (a strong receiver)."""
    got: list[Message] = []
    regist_function(pattern, got.append, weak=False)
    return got


def child_env() -> dict[str, str]:
    """This process's environment without a settings file of its own."""
    env = dict(os.environ)
    env.pop("BERRYMQ_CONFIG", None)
    return env


def required_program(name: str, package: str) -> str:
    """The path of the program ``name``; skips the test where it is absent, except under
    ``BERRYMQ_REQUIRE_BROKERS=1`` (CI installs it) where its absence fails the test."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package {package})"
        if os.environ.get("BERRYMQ_REQUIRE_BROKERS") == "1":
            pytest.fail(f"{reason}, and BERRYMQ_REQUIRE_BROKERS=1 requires it")
        pytest.skip(f"{reason}; set BERRYMQ_REQUIRE_BROKERS=1 to fail instead")
    return path


def hook_names() -> list[str]:
    """The hook specifications of berryMQ: the functions pluggy's marker flagged."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, value in vars(hookspecs).items()
                  if callable(value) and hasattr(value, marker))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``BERRYMQ_*`` variable, warnings made
    errors, plus ``extra``: a child that runs as a user's program would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERRYMQ_")}
    env["PYTHONWARNINGS"] = "error"
    env.update(extra)
    return env


def plugin_site(tmp_path: Path, name: str, source: str, dist: str = "bmq-outside") -> dict[str, str]:
    """An environment in which the distribution ``dist`` declares the plugin ``name`` (a
    module of ``source``) in the entry point group ``berrymq``, as pip would install it;
    called again, another distribution beside it."""
    site = tmp_path / "site"
    module = f"{dist}_{name}".replace("-", "_")
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[berrymq]\n{name} = {module}\n")
    (site / f"{module}.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def run_berrymq(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                input: str | None = None, timeout: float = 60
                ) -> subprocess.CompletedProcess[str]:
    """``berrymq ARGS`` (``python -m berrymq``) run to its end, in :func:`clean_env` plus
    ``env``."""
    return subprocess.run([sys.executable, "-m", "berrymq", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env=clean_env(**(env or {})),
                          input=input)


def run_berrymq_without_reader(*args: str, closed: bool, cwd: Path,
                               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``berrymq ARGS`` (as :func:`run_berrymq`) whose stdout is ``closed`` (``>&-``: no
    file descriptor 1), or else a pipe whose reader is already gone (as ``| head -0``:
    every write fails with EPIPE); its stdout is then empty."""
    command = [sys.executable, "-m", "berrymq", *args]
    if closed:
        return subprocess.run(["sh", "-c", 'exec "$0" "$@" >&-', *command], cwd=cwd,
                              text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout, env=clean_env())
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(command, cwd=cwd, text=True, stdout=write,
                              stderr=subprocess.PIPE, timeout=timeout, env=clean_env())
    finally:
        os.close(write)


class LoopThread:
    """An event loop running forever in a thread of its own, as a program's receivers' loop."""

    def __init__(self, name: str = "receiver-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def stop(self) -> None:
        """Stop the loop and its thread, leaving the loop open (a test may close it)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()

    def close(self) -> None:
        """Stop the loop if it runs and close it if it is open: whatever the test left."""
        if self.thread.is_alive():
            self.stop()
        if not self.loop.is_closed():
            self.loop.close()


class HeldReceiver:
    """A receiver (:meth:`slow`, named so in an ask's entries) that holds its thread until
    ``release`` is set (at most :data:`WAIT` seconds), then returns ``"slow"``; ``done``
    is set once it has returned: what an ask's deadline is tried against."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.release = release if release is not None else threading.Event()
        self.done = threading.Event()

    def slow(self, message: Message) -> str:
        try:
            self.release.wait(WAIT)
            return "slow"
        finally:
            self.done.set()


def take_all(queue: Queue) -> list[Message]:
    """Every message stored in ``queue`` now, without waiting."""
    out = []
    while True:
        try:
            out.append(queue.get_nowait())
        except Empty:
            return out


def drain(q: Queue, n: int, timeout: float = WAIT) -> list[Message]:
    """The next ``n`` messages of ``q``, within ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < n:
        got.append(q.get(timeout=max(0.01, deadline - time.monotonic())))
    return got


#: For a script that reports on calls (it imports time): ``timed(call)`` is ``[repr of the
#: result or "Type: text", seconds]``; put where the script says ``TIMED_CALLS``.
TIMED_CALLS = textwrap.dedent("""
    def timed(call):
        started = time.monotonic()
        try:
            outcome = repr(call())
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        return [outcome, time.monotonic() - started]
""")


#: A child node: serves its bus over the scheme given as argv[1] and prints its URL.
def forking_script(connect: str) -> str:
    """A script that runs ``connect`` (a line of Python joining the default bus to the
    node or broker at ``sys.argv[1]``), sends job:before and forks. The child prints, as
    one JSON object, what each call did there: ``[repr of the result or "Type: text",
    seconds]`` for twitter, ask, close_connection and a new init_connection, with the
    bus's losses after the twitter and the parent's pid. The parent then sends job:after
    and closes."""
    return textwrap.dedent("""
        import json, os, sys, time
        import berrymq

        TIMED_CALLS
        CONNECT
        berrymq.twitter("job:before", 1)
        assert berrymq.flush(10)
        pid = os.fork()
        if pid == 0:
            try:
                report = {
                    "twitter": timed(lambda: berrymq.twitter("job:child", 2)),
                    "losses": dict(berrymq.get_bus().losses.counts),
                    "ask": timed(lambda: berrymq.ask("job:question", timeout=5)),
                    "close": timed(berrymq.close_connection),
                    "serve": timed(lambda: berrymq.init_connection("tcp://127.0.0.1:0")),
                    "parent": os.getppid(),
                }
                print(json.dumps(report), flush=True)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        berrymq.twitter("job:after", 3)
        berrymq.flush(10)
        berrymq.close_connection()
    """).replace("TIMED_CALLS", TIMED_CALLS).replace("CONNECT", connect)


CHILD_NODE = textwrap.dedent(
    """
    import sys, time
    import berrymq

    scheme = sys.argv[1]

    @berrymq.following_function("calc:add")
    def add(message):
        return message.args[0] + message.args[1]

    def second(message):
        return "second"

    berrymq.regist_function("calc:add", second)

    @berrymq.following_function("calc:fail")
    def fail(message):
        raise ValueError("boom from child")

    @berrymq.following_function("calc:slow")
    def slow(message):
        time.sleep(float(message.args[0]))
        return "late"

    @berrymq.following_function("job:run")
    def job(message):
        return "done " + str(message.args[0])

    @berrymq.following_function("job:quiet")
    def quiet(message):
        return None

    url = berrymq.init_connection(scheme + "://127.0.0.1:0")
    print("READY", url, flush=True)
    sys.stdin.readline()
    """
)



class Child:
    """A child node process serving its bus; stopped by closing its stdin."""

    def __init__(self, script: Path, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=cwd, env=child_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise AssertionError(f"child did not start: {line!r} {self.stderr}")
        self.url = line.split()[1]
        self.stderr = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()



class Lines:
    """A subprocess (another language's client, say) whose stdout lines are queued as they
    come, so a test can wait for each with a deadline.

    :param deadline: the most seconds :meth:`line` waits, and :meth:`close` waits to end it.
    :param stdin: give it a pipe to write to (else it reads nothing).
    :param env: its environment (else this process's).
    """

    def __init__(self, argv: list[str], cwd: Path, *, deadline: float,
                 stdin: bool = False, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.deadline = deadline
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, text=True, encoding="utf-8", stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self) -> str:
        """The next line; fails the test when none comes in time or the process ended."""
        try:
            line = self.lines.get(timeout=self.deadline)
        except queue.Empty:
            raise AssertionError(f"{self.argv}: no line within {self.deadline}s") from None
        if line is None:
            self.lines.put(None)
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"{self.argv} ended (exit {self.process.wait()}): {stderr}")
        return line

    def close(self) -> None:
        """SIGTERM (SIGKILL if it does not end in time), then close the pipes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=self.deadline)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.pump.join(self.deadline)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


# -- a bus with one of everything, for the network picture (describe, graph, network) ----------


def nothing(message: Message) -> None:
    """A receiver that does nothing."""


def on_log(message: Message) -> None:
    pass


def is_urgent(message: Message) -> bool:
    return bool(message.kwargs.get("urgent"))


def on_job(message: Message) -> None:
    pass


class Logger(metaclass=Follower):
    @following("*:log")
    def write(self, message: Message) -> None:
        pass


@contextmanager
def populate() -> Iterator[dict[str, Any]]:
    """Fill the default bus with functions (one guarded, one in a namespace), two Logger
    followers, a standalone and a shared queue (holding two messages) and a timer."""
    berrymq.regist_function("*:log", on_log)
    berrymq.regist_function("job:*", on_job, is_urgent)
    berrymq.regist_function("job@ops:done", on_job)
    loggers = [Logger(), Logger()]
    queue = berrymq.Queue("task:*")
    shared = berrymq.Queue("work:*", shared=True, maxsize=5)
    berrymq.twitter("task:one")
    berrymq.twitter("task:two")
    timer = berrymq.IntervalTimer("beat", 3600)
    try:
        yield {"loggers": loggers, "queues": (queue, shared), "timer": timer}
    finally:
        timer.stop()


# -- buses with the installed plugins, serving on loopback (the plugins' tests) ----------------


def make_bus(**tables: dict[str, Any]) -> Bus:
    """A bus that raises its receivers' errors, with every installed plugin, no settings
    file and these plugin settings tables (``jsonrpc_tcp={...}``: ``[berrymq.jsonrpc-tcp]``)."""
    host = PluginHost(Settings(tables={k.replace("_", "-"): v for k, v in tables.items()}))
    return Bus(raise_errors=True, plugins=host, name="remote-test")


class Buses:
    """The buses of one test, all closed by :meth:`close_all` (a fixture's teardown):
    ``buses(**tables)`` makes one with :func:`make_bus`; :meth:`keep` adds one made otherwise."""

    def __init__(self) -> None:
        self.made: list[Bus] = []

    def __call__(self, **tables: dict[str, Any]) -> Bus:
        return self.keep(make_bus(**tables))

    def keep(self, bus: Bus) -> Bus:
        self.made.append(bus)
        return bus

    def close_all(self) -> None:
        for bus in self.made:
            bus.close()


@pytest.fixture
def buses() -> Iterator[Buses]:
    """The buses a test makes (``buses(**tables)``: :func:`make_bus`), every one closed
    after it. Defined once, here: the conftest.py of each suite that uses it imports it
    (tests/, and the JSON-RPC plugins')."""
    made = Buses()
    yield made
    made.close_all()


def serve(make: Callable[..., Bus], scheme: str, **settings: Any) -> tuple[Bus, int]:
    """A bus from ``make`` (``settings``, if any, its ``[berrymq.jsonrpc-SCHEME]`` table)
    listening for ``scheme`` on a free loopback port: (the bus, the port)."""
    bus = make(**{f"jsonrpc_{scheme}": settings}) if settings else make()
    url = bus.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    return bus, int(url.rsplit(":", 1)[1])


#: Any JSON value, small (hypothesis): for properties of codecs and request checks.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=10,
)


def tcp_call(sock: socket.socket, obj: Any) -> Any:
    """Send one JSON-RPC text as a line on ``sock`` and read the answer line, parsed."""
    sock.sendall(json.dumps(obj).encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, "closed without an answer"
        data += chunk
    return json.loads(data)


def publish_raw(url: str, subject: str, payloads: Iterable[Any]) -> None:
    """Publish ``payloads`` on ``subject`` as a plain NATS client (a socket speaking the
    protocol: no berryMQ, no NATS library) of the server at ``url`` (nats://host:port),
    each payload as it is when bytes, else as its JSON; return once the server has routed
    them (its PONG)."""
    host, port = url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock, \
            sock.makefile("rb") as reader:
        assert reader.readline().startswith(b"INFO ")
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        for payload in payloads:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            sock.sendall(f"PUB {subject} {len(data)}\r\n".encode() + data + b"\r\n")
        sock.sendall(b"PING\r\n")
        assert reader.readline() == b"PONG\r\n"


def interrupted_at_exit(child: subprocess.Popen[str], waiting: str) -> str:
    """Everything ``child`` writes on stderr, sending it Ctrl-C (SIGINT) once a line
    holding ``waiting`` says its wait at exit began; after that it must end, with 0."""
    assert child.stderr is not None
    said = []
    for line in child.stderr:  # until the wait at exit has begun
        said.append(line)
        if waiting in line:
            child.send_signal(signal.SIGINT)
            break
    said += child.stderr.readlines()
    assert child.wait(30) == 0, "".join(said)
    stderr = "".join(said)
    assert "Exception ignored" not in stderr and "Traceback" not in stderr, stderr
    return stderr

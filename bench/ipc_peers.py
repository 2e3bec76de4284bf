"""Between two processes: berryMQ over TCP and HTTP beside pyzmq, redis-py and raw NDJSON.

Run it as a script (it is not a test)::

    python bench/ipc_peers.py            # everything, about a minute
    python bench/ipc_peers.py --quick    # smaller budgets, for a smoke run

For every system the script (the *parent*) starts its peer as a subprocess (the *child*,
this same file with ``--role``) and measures two things between them:

- **one-way**: the child sends small messages as fast as it can for a time budget, then an
  end marker carrying the count; the parent receives them all (a missing one is an error)
  and divides the count by the time from its "go" to the end marker. Three rounds, taken
  in turn for every system (so that load from elsewhere weighs on all alike); the table
  shows the median and each round;
- **round trip**: the parent sends a message, the child answers with another, one at a
  time; the table shows the median and 99th percentile in microseconds.

The message is the same everywhere: identifier ``bench:tick``, args ``[i]``, no kwargs,
encoded as JSON with the standard library and decoded on the other side. The peers:

- ``pyzmq PUB/SUB``: an XPUB socket (so the sender knows the subscriber is there) and a
  SUB socket, high-water marks off so nothing is dropped;
- ``redis-py pub/sub``: ``publish`` per message through a ``redis-server`` this script
  starts on a free port (without persistence), read with ``pubsub().listen()``; a second
  row publishes through a pipeline of 100, the fastest way redis-py offers;
- ``raw NDJSON``: the same JSON-RPC notification text berryMQ's TCP transport carries,
  written to a buffered socket file and read line by line with ``json.loads``: the floor
  of what any Python implementation of the protocol can reach;
- ``berryMQ TCP`` / ``berryMQ HTTP``: style 02 (``connect_oneway`` + ``send_message``) for
  one-way, style 01 (``interconnect``; a receiver of ``bench:ping`` twitters
  ``bench:pong`` back) for the round trip; the row "one request -> ok" times a single
  ``send_message`` request answered over TCP (a raw-socket client: the node's share of a
  round trip); and for HTTP the number of ``send_message`` calls per second answered on
  one keep-alive connection (one request at a time, from a bare HTTP/1.1 client on a
  socket, as the NDJSON floor is written: ``http.client`` parsing headers with
  ``email.parser`` cost the client more than the node spent answering).

pyzmq and redis-py are optional: without one, its rows show ``-`` and a note saying why.
Every child, whatever it measures, imports them and berryMQ with this file; importing
berryMQ starts no thread, reads no settings file and loads no plugin.

Absolute numbers drift on a shared machine; compare the ratios printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from children import Child

import berrymq

# The peer libraries are optional: without one, its rows show "-" and a note saying why.
MISSING: dict[str, str] = {}  # the library's module -> the error importing it gave
try:
    import redis
except ImportError as exc:
    redis = None  # type: ignore[assignment]
    MISSING["redis"] = f"{type(exc).__name__}: {exc}"
try:
    import zmq
except ImportError as exc:
    zmq = None  # type: ignore[assignment]
    MISSING["zmq"] = f"{type(exc).__name__}: {exc}"

HERE = os.path.abspath(__file__)
ENDPOINT_TIMEOUT = 20.0  # seconds a handshake or a whole measurement may take at most


# -- helpers shared by both roles ------------------------------------------------------------


def tick(i: int) -> list[Any]:
    """The message every system carries: identifier, args, kwargs."""
    return ["bench:tick", [i], {}]


def rpc_notification(i: int, token: str = "t") -> bytes:
    """The JSON-RPC notification of ``send_message`` for message ``i`` (raw NDJSON floor)."""
    return json.dumps({"jsonrpc": "2.0", "method": "send_message",
                       "params": {"token": token, "identifier": "bench:tick",
                                  "args": [i], "kwargs": {}}}).encode() + b"\n"


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value at ``fraction`` of a sorted list (nearest rank)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def child(role: str, *args: str) -> Iterator[Child]:
    c = Child(HERE, role, *args, timeout=ENDPOINT_TIMEOUT)
    try:
        yield c
    finally:
        c.close()


def wait_go() -> None:
    """Child side: announce readiness and wait for the parent's ``go``."""
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"expected 'go', got {line!r}")


@dataclass
class Budget:
    """How long a sender sends and how many round trips are timed."""

    seconds: float = 2.0
    max_messages: int = 400_000
    round_trips: int = 2_000
    warmup: int = 200
    repeat: int = 3


def sender_loop(budget: Budget, send_one: Callable[[int], None]) -> int:
    """Call ``send_one(i)`` until the budget is spent; return how many were sent."""
    deadline = time.perf_counter() + budget.seconds
    i = 0
    limit = budget.max_messages
    while i < limit:
        send_one(i)
        i += 1
        if not i & 1023 and time.perf_counter() > deadline:
            break
    return i


@dataclass
class Result:
    name: str
    one_way: float | None = None  # messages per second (the median of the rounds)
    rates: list[float] = field(default_factory=list)  # each round's
    p50: float | None = None  # microseconds
    p99: float | None = None
    notes: list[str] = field(default_factory=list)


def time_round_trips(budget: Budget, round_trip: Callable[[int], None]) -> tuple[float, float]:
    """Time ``round_trip(i)`` after a warm-up; return (p50, p99) in microseconds."""
    for i in range(budget.warmup):
        round_trip(-1 - i)
    samples: list[float] = []
    deadline = time.perf_counter() + 2 * budget.seconds
    clock = time.perf_counter_ns
    for i in range(budget.round_trips):
        start = clock()
        round_trip(i)
        samples.append((clock() - start) / 1000)
        if time.perf_counter() > deadline:
            break
    samples.sort()
    return percentile(samples, 0.50), percentile(samples, 0.99)


class Tally:
    """What the parent's receiver saw: a count, the end marker, or the error that stopped it."""

    def __init__(self) -> None:
        self.count = 0
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run_receiver(self, receive: Callable[[], int]) -> None:
        """Run ``receive()`` (which returns the count at the end marker) in a thread."""

        def run() -> None:
            try:
                self.count = receive()
            except BaseException as exc:
                self.error = exc
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()


def one_way_rate(c: Child, tally: Tally) -> float:
    """Parent side: say ``go``, wait for the receiver to see the end marker; messages/s."""
    start = time.perf_counter()
    c.say("go")
    if not tally.done.wait(ENDPOINT_TIMEOUT + 60):
        raise TimeoutError("the end marker never arrived")
    elapsed = time.perf_counter() - start
    if tally.error is not None:
        raise RuntimeError(f"the receiver failed: {tally.error!r}")
    sent = int(c.expect("sent"))
    if tally.count != sent:
        raise RuntimeError(f"sent {sent} messages but {tally.count} arrived")
    return sent / elapsed


# -- raw NDJSON over a socket ----------------------------------------------------------------


def raw_one_way(budget: Budget) -> float:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server, child("raw-send", str(port), *budget_args(budget)) as c:
        conn, _ = server.accept()
        tally = Tally()

        def receive() -> int:
            with conn, conn.makefile("rb", buffering=1 << 16) as f:
                loads = json.loads
                for n, line in enumerate(f):
                    if loads(line)["params"]["identifier"] == "bench:end":
                        return n
                raise ConnectionError("the stream ended before the end marker")

        tally.run_receiver(receive)
        c.expect("ready")
        return one_way_rate(c, tally)


def role_raw_send(port: int, budget: Budget) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    with sock, sock.makefile("wb", buffering=1 << 16) as f:
        wait_go()
        write = f.write
        sent = sender_loop(budget, lambda i: write(rpc_notification(i)))
        f.write(json.dumps({"jsonrpc": "2.0", "method": "send_message", "params": {
            "token": "t", "identifier": "bench:end", "args": [sent], "kwargs": {}}}).encode()
            + b"\n")
        f.flush()
    print("sent", sent, flush=True)


def raw_latency(budget: Budget) -> tuple[float, float]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server, child("raw-echo", str(port)) as c:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as rf, conn.makefile("wb") as wf:
            c.expect("ready")

            def round_trip(i: int) -> None:
                wf.write(rpc_notification(i))
                wf.flush()
                reply = json.loads(rf.readline())
                assert reply["params"]["args"] == [i], reply

            result = time_round_trips(budget, round_trip)
            conn.shutdown(socket.SHUT_WR)
        return result


def role_raw_echo(port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock, sock.makefile("rb") as rf, sock.makefile("wb") as wf:
        print("ready", flush=True)
        for line in rf:
            request = json.loads(line)
            wf.write(json.dumps(request).encode() + b"\n")
            wf.flush()


# -- pyzmq PUB/SUB ---------------------------------------------------------------------------


def zmq_one_way(budget: Budget) -> float:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"bench:")
    sub.bind("tcp://127.0.0.1:*")
    endpoint = sub.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        with child("zmq-send", endpoint, *budget_args(budget)) as c:
            tally = Tally()

            def receive() -> int:
                n = 0
                loads = json.loads
                while True:
                    topic, payload = sub.recv_multipart()
                    data = loads(payload)
                    if topic == b"bench:end":
                        return n
                    assert data[0] == "bench:tick"
                    n += 1

            tally.run_receiver(receive)
            c.expect("ready")
            return one_way_rate(c, tally)
    finally:
        sub.close(linger=0)
        ctx.term()


def role_zmq_send(endpoint: str, budget: Budget) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(endpoint)
    pub.recv()  # the subscription: the subscriber is connected, nothing will be lost
    wait_go()
    send = pub.send_multipart
    topic = b"bench:tick"

    def send_one(i: int) -> None:
        send([topic, json.dumps(tick(i)).encode()])

    sent = sender_loop(budget, send_one)
    pub.send_multipart([b"bench:end", json.dumps(["bench:end", [sent], {}]).encode()])
    print("sent", sent, flush=True)
    pub.close(linger=10_000)
    ctx.term()


def zmq_latency(budget: Budget) -> tuple[float, float]:
    # libzmq attaches a connection to a *bound* socket only when that socket's owner calls
    # into it, so each side binds the XPUB it blocks on (recv() waits for the peer's
    # subscription) and connects its SUB.
    ctx = zmq.Context()
    ping = ctx.socket(zmq.XPUB)
    ping.bind("tcp://127.0.0.1:*")
    pong = ctx.socket(zmq.SUB)
    pong.setsockopt(zmq.SUBSCRIBE, b"bench:")
    try:
        with child("zmq-echo", ping.getsockopt_string(zmq.LAST_ENDPOINT)) as c:
            pong.connect(c.expect("endpoint"))
            ping.recv()  # the child subscribed
            c.expect("ready")  # and saw our subscription

            def round_trip(i: int) -> None:
                ping.send_multipart([b"bench:ping", json.dumps(["bench:ping", [i], {}]).encode()])
                _, payload = pong.recv_multipart()
                assert json.loads(payload)[1] == [i]

            result = time_round_trips(budget, round_trip)
            ping.send_multipart([b"bench:stop", b"[]"])
            return result
    finally:
        ping.close(linger=0)
        pong.close(linger=0)
        ctx.term()


def role_zmq_echo(ping_endpoint: str) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"bench:")
    sub.connect(ping_endpoint)
    pub = ctx.socket(zmq.XPUB)
    pub.bind("tcp://127.0.0.1:*")
    print("endpoint", pub.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    pub.recv()  # the parent's pong subscription arrived
    print("ready", flush=True)
    while True:
        topic, payload = sub.recv_multipart()
        if topic == b"bench:stop":
            break
        data = json.loads(payload)
        pub.send_multipart([b"bench:pong", json.dumps(["bench:pong", data[1], {}]).encode()])
    sub.close(linger=0)
    pub.close(linger=0)
    ctx.term()


# -- redis-py pub/sub ------------------------------------------------------------------------


@contextmanager
def redis_server() -> Iterator[int]:
    """A ``redis-server`` of our own on a free port, without persistence or pub/sub limits."""
    program = shutil.which("redis-server")
    if program is None:
        raise FileNotFoundError("redis-server is not on PATH")
    port = free_port()
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--client-output-buffer-limit", "pubsub 0 0 0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + ENDPOINT_TIMEOUT
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.02)  # polling a starting server: no event to wait on
        client.close()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def redis_subscribe(port: int, channel: str) -> tuple[Any, Any]:
    """Return ``(client, pubsub)`` subscribed to ``channel``, the subscription confirmed.

    Keep the client referenced: when it is collected its pool closes the pub/sub
    connection, which then silently reconnects and subscribes again later."""
    client = redis.Redis(port=port)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(channel)
    confirmation = pubsub.get_message(timeout=ENDPOINT_TIMEOUT)
    assert confirmation is not None and confirmation["type"] == "subscribe", confirmation
    return client, pubsub


def redis_one_way(budget: Budget, port: int, pipelined: bool) -> float:
    client, pubsub = redis_subscribe(port, "bench")
    role = "redis-pipe-send" if pipelined else "redis-send"
    try:
        with child(role, str(port), *budget_args(budget)) as c:
            tally = Tally()

            def receive() -> int:
                n = 0
                loads = json.loads
                for item in pubsub.listen():
                    if item["type"] != "message":
                        continue
                    data = loads(item["data"])
                    if data[0] == "bench:end":
                        return n
                    n += 1
                raise ConnectionError("the subscription ended before the end marker")

            tally.run_receiver(receive)
            c.expect("ready")
            return one_way_rate(c, tally)
    finally:
        pubsub.close()
        client.close()


def role_redis_send(port: int, budget: Budget, pipelined: bool) -> None:
    client = redis.Redis(port=port)
    client.ping()
    wait_go()
    if pipelined:
        pipe = client.pipeline(transaction=False)

        def send_one(i: int) -> None:
            pipe.publish("bench", json.dumps(tick(i)))
            if len(pipe) >= 100:
                pipe.execute()

        sent = sender_loop(budget, send_one)
        pipe.execute()
    else:
        publish = client.publish

        def publish_one(i: int) -> None:
            publish("bench", json.dumps(tick(i)))

        sent = sender_loop(budget, publish_one)
    client.publish("bench", json.dumps(["bench:end", [sent], {}]))
    print("sent", sent, flush=True)


def redis_latency(budget: Budget, port: int) -> tuple[float, float]:
    client, pubsub = redis_subscribe(port, "pong")
    try:
        with child("redis-echo", str(port)) as c:
            c.expect("ready")

            def round_trip(i: int) -> None:
                client.publish("ping", json.dumps(["bench:ping", [i], {}]))
                item = pubsub.get_message(timeout=ENDPOINT_TIMEOUT)
                if item is None or item["type"] != "message":
                    raise RuntimeError(f"expected the pong of {i}, got {item!r}")
                assert json.loads(item["data"])[1] == [i]

            result = time_round_trips(budget, round_trip)
            client.publish("ping", json.dumps(["bench:stop", [], {}]))
            return result
    finally:
        pubsub.close()
        client.close()


def role_redis_echo(port: int) -> None:
    client, pubsub = redis_subscribe(port, "ping")
    print("ready", flush=True)
    for item in pubsub.listen():
        if item["type"] != "message":
            continue
        data = json.loads(item["data"])
        if data[0] == "bench:stop":
            break
        client.publish("pong", json.dumps(["bench:pong", data[1], {}]))


# -- berryMQ ---------------------------------------------------------------------------------


@contextmanager
def berrymq_node(scheme: str) -> Iterator[tuple[Any, str]]:
    """A fresh bus of this process, serving ``scheme`` on a free loopback port."""
    with berrymq.Bus(name=f"bench-{scheme}") as bus, berrymq.use_bus(bus):
        url = berrymq.init_connection(f"{scheme}://127.0.0.1:0")
        assert isinstance(url, str)
        yield bus, url


def berrymq_one_way(budget: Budget, scheme: str) -> float:
    with berrymq_node(scheme) as (_bus, url):
        count = [0]
        end: queue.SimpleQueue[int] = queue.SimpleQueue()

        def on_tick(message: Any) -> None:
            count[0] += 1

        def on_end(message: Any) -> None:
            end.put(count[0])

        berrymq.regist_function("bench:tick", on_tick, weak=False)
        berrymq.regist_function("bench:end", on_end, weak=False)
        tally = Tally()
        with child("berrymq-send", url, *budget_args(budget)) as c:
            c.expect("ready")
            tally.run_receiver(lambda: end.get(timeout=ENDPOINT_TIMEOUT + 60))
            return one_way_rate(c, tally)


def role_berrymq_send(url: str, budget: Budget) -> None:
    berrymq.connect_oneway(url)
    wait_go()
    send = berrymq.send_message
    sent = sender_loop(budget, lambda i: send("bench:tick", i))
    send("bench:end", sent)
    berrymq.close_connection()
    print("sent", sent, flush=True)


def berrymq_latency(budget: Budget, scheme: str) -> tuple[float, float]:
    with berrymq_node(scheme) as (_bus, url):
        def on_ping(message: Any) -> None:
            if message.args[0] == "stop":
                return
            berrymq.twitter("bench:pong", message.args[0])

        berrymq.regist_function("bench:ping", on_ping, weak=False)
        with child("berrymq-echo", url, *budget_args(budget)) as c:
            c.say("go")
            p50, p99 = float(c.expect("p50")), float(c.expect("p99"))
            return p50, p99


def role_berrymq_echo(url: str, budget: Budget) -> None:
    """The round trip is timed here, in the child: it interconnects with the parent, sends
    ``bench:ping`` and waits for the parent's ``bench:pong``."""
    if url.startswith("http"):
        berrymq.init_connection("http://127.0.0.1:0")  # over HTTP the pong comes back here
    berrymq.interconnect(url)
    pongs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    berrymq.regist_function("bench:pong", pongs.put, weak=False)
    wait_go()

    def round_trip(i: int) -> None:
        berrymq.twitter("bench:ping", i)
        reply = pongs.get(timeout=ENDPOINT_TIMEOUT)
        assert reply.args[0] == i, reply

    p50, p99 = time_round_trips(budget, round_trip)
    print("p50", p50, flush=True)
    print("p99", p99, flush=True)
    berrymq.close_connection()


def http_calls_per_second(budget: Budget) -> float:
    """``send_message`` requests answered per second on one keep-alive HTTP connection."""
    with berrymq_node("http") as (_bus, url):
        count = [0]

        def on_tick(message: Any) -> None:
            count[0] += 1

        berrymq.regist_function("bench:tick", on_tick, weak=False)
        with child("http-calls", url, *budget_args(budget)) as c:
            c.expect("ready")
            c.say("go")
            calls = int(c.expect("calls"))
            seconds = float(c.expect("seconds"))
            if count[0] != calls:
                raise RuntimeError(f"{calls} calls answered but {count[0]} messages arrived")
            return calls / seconds


def tcp_call_latency(budget: Budget) -> tuple[float, float]:
    """One ``send_message`` request answered ``"ok"`` over TCP, timed in a child that
    speaks the protocol on a raw socket: the node's share of a round trip."""
    with berrymq_node("tcp") as (_bus, url):
        berrymq.regist_function("bench:tick", lambda message: None, weak=False)
        with child("tcp-calls", url, *budget_args(budget)) as c:
            c.say("go")
            return float(c.expect("p50")), float(c.expect("p99"))


def role_tcp_calls(url: str, budget: Budget) -> None:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock, sock.makefile("rwb") as f:
        f.write(b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":60},"id":0}\n')
        f.flush()
        token = json.loads(f.readline())["result"]
        wait_go()

        def round_trip(i: int) -> None:
            f.write(json.dumps({"jsonrpc": "2.0", "method": "send_message", "params": {
                "token": token, "identifier": "bench:tick", "args": [i], "kwargs": {}},
                "id": i}).encode() + b"\n")
            f.flush()
            reply = json.loads(f.readline())
            assert reply["result"] == "ok", reply

        p50, p99 = time_round_trips(budget, round_trip)
    print("p50", p50, flush=True)
    print("p99", p99, flush=True)


def role_http_calls(url: str, budget: Budget) -> None:
    # A bare HTTP/1.1 client on a socket (no library), like the raw NDJSON floor: what is
    # timed is the node answering, not http.client parsing headers with email.parser.
    host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    head = f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"

    def call(method: str, params: dict[str, Any], ident: int) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                           "id": ident}).encode()
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"{method}: {status!r}")
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        reply = json.loads(reader.read(length))
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    token = call("connect_oneway", {"ttl": 60}, 0)
    wait_go()
    start = time.perf_counter()
    calls = sender_loop(budget, lambda i: call("send_message", {
        "token": token, "identifier": "bench:tick", "args": [i], "kwargs": {}}, i + 1))
    seconds = time.perf_counter() - start
    call("close_connection", {"token": token}, 0)
    print("calls", calls, flush=True)
    print("seconds", seconds, flush=True)


# -- the run ---------------------------------------------------------------------------------


def budget_args(budget: Budget) -> list[str]:
    return [str(budget.seconds), str(budget.max_messages), str(budget.round_trips),
            str(budget.warmup)]


def budget_from(args: list[str]) -> Budget:
    return Budget(float(args[0]), int(args[1]), int(args[2]), int(args[3]))


def run_role(role: str, args: list[str]) -> None:
    if role == "raw-send":
        role_raw_send(int(args[0]), budget_from(args[1:]))
    elif role == "raw-echo":
        role_raw_echo(int(args[0]))
    elif role == "zmq-send":
        role_zmq_send(args[0], budget_from(args[1:]))
    elif role == "zmq-echo":
        role_zmq_echo(args[0])
    elif role in ("redis-send", "redis-pipe-send"):
        role_redis_send(int(args[0]), budget_from(args[1:]), role == "redis-pipe-send")
    elif role == "redis-echo":
        role_redis_echo(int(args[0]))
    elif role == "berrymq-send":
        role_berrymq_send(args[0], budget_from(args[1:]))
    elif role == "berrymq-echo":
        role_berrymq_echo(args[0], budget_from(args[1:]))
    elif role == "http-calls":
        role_http_calls(args[0], budget_from(args[1:]))
    elif role == "tcp-calls":
        role_tcp_calls(args[0], budget_from(args[1:]))
    else:
        raise SystemExit(f"unknown role {role!r}")


def attempt(result: Result, what: str, function: Callable[[], Any]) -> Any:
    """Run one measurement; a failure becomes a note in the table, not a crash."""
    try:
        return function()
    except Exception as exc:
        result.notes.append(f"{what} failed: {type(exc).__name__}: {exc}")
        return None


def measure(budget: Budget, only: set[str] | None) -> tuple[list[Result], float | None]:
    """Measure every wanted system. The one-way runs are interleaved (round 1 of every
    system, then round 2, ...) and each system's median is kept, so that load from
    elsewhere on the machine weighs on all of them alike."""

    def wanted(key: str) -> bool:
        return only is None or key in only

    with ExitStack() as stack:
        systems: list[tuple[Result, Callable[[], float] | None,
                            Callable[[], tuple[float, float]] | None]] = []
        if wanted("tcp"):
            systems.append((Result("berryMQ TCP"), lambda: berrymq_one_way(budget, "tcp"),
                            lambda: berrymq_latency(budget, "tcp")))
            systems.append((Result("berryMQ TCP, one request -> ok"), None,
                            lambda: tcp_call_latency(budget)))
        if wanted("http"):
            systems.append((Result("berryMQ HTTP"), lambda: berrymq_one_way(budget, "http"),
                            lambda: berrymq_latency(budget, "http")))
        if wanted("zmq") and zmq is None:
            systems.append((Result("pyzmq PUB/SUB", notes=[MISSING["zmq"]]), None, None))
        elif wanted("zmq"):
            systems.append((Result("pyzmq PUB/SUB"), lambda: zmq_one_way(budget),
                            lambda: zmq_latency(budget)))
        if wanted("redis") and redis is None:
            systems.append((Result("redis-py pub/sub", notes=[MISSING["redis"]]), None, None))
        elif wanted("redis"):
            try:
                port = stack.enter_context(redis_server())
            except FileNotFoundError as exc:
                systems.append((Result("redis-py pub/sub", notes=[str(exc)]), None, None))
            else:
                systems.append((Result("redis-py pub/sub"),
                                lambda: redis_one_way(budget, port, False),
                                lambda: redis_latency(budget, port)))
                systems.append((Result("redis-py pub/sub, pipelined x100"),
                                lambda: redis_one_way(budget, port, True), None))
        if wanted("raw"):
            systems.append((Result("raw NDJSON socket (floor)"), lambda: raw_one_way(budget),
                            lambda: raw_latency(budget)))
        http_calls: list[float] = []
        calls_note = Result("berryMQ HTTP calls")
        for round_number in range(1, budget.repeat + 1):
            print(f"  one-way, round {round_number} of {budget.repeat} ...", file=sys.stderr,
                  flush=True)
            for result, one_way, _ in systems:
                if one_way is not None:
                    rate = attempt(result, "one-way", one_way)
                    if rate is not None:
                        result.rates.append(rate)
            if wanted("http"):
                calls = attempt(calls_note, "calls/s", lambda: http_calls_per_second(budget))
                if calls is not None:
                    http_calls.append(calls)
        print("  round trips ...", file=sys.stderr, flush=True)
        for result, _, latency in systems:
            if result.rates:
                result.one_way = statistics.median(result.rates)
            if latency is not None:
                rtt = attempt(result, "round trip", latency)
                if rtt is not None:
                    result.p50, result.p99 = rtt
        for note in calls_note.notes:
            print(f"note: {note}", file=sys.stderr)
    return [r for r, _, _ in systems], statistics.median(http_calls) if http_calls else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[Result], http_calls: float | None) -> None:
    by_name = {r.name: r for r in results}
    redis_rate = by_name.get("redis-py pub/sub", Result("")).one_way
    floor_rate = by_name.get("raw NDJSON socket (floor)", Result("")).one_way
    header = (f"{'system':34} {'one-way msg/s':>14} {'x redis':>8} {'x floor':>8} "
              f"{'rtt p50 us':>11} {'rtt p99 us':>11}  {'rounds, k msg/s':<16}")
    print(header)
    print("-" * len(header))
    for r in results:
        vs_redis = r.one_way / redis_rate if r.one_way and redis_rate else None
        vs_floor = r.one_way / floor_rate if r.one_way and floor_rate else None
        rounds = "/".join(f"{rate / 1000:.0f}" for rate in r.rates)
        print(f"{r.name:34} {fmt(r.one_way, ',.0f'):>14} {fmt(vs_redis, '.2f'):>8} "
              f"{fmt(vs_floor, '.2f'):>8} {fmt(r.p50, ',.0f'):>11} {fmt(r.p99, ',.0f'):>11}  "
              f"{rounds}")
    print()
    print(f"berryMQ HTTP: {fmt(http_calls, ',.0f')} send_message calls/s answered on one "
          "keep-alive connection (one request at a time)")
    for r in results:
        for note in r.notes:
            print(f"note: {r.name}: {note}")
    print()
    tcp = by_name.get("berryMQ TCP", Result("")).one_way
    targets = [
        ("TCP one-way >= 100,000 msg/s", tcp is not None and tcp >= 100_000),
        ("TCP one-way >= 2x redis-py pub/sub",
         tcp is not None and redis_rate is not None and tcp >= 2 * redis_rate),
        ("HTTP >= 3,000 calls/s on one keep-alive connection",
         http_calls is not None and http_calls >= 3_000),
    ]
    for text, ok in targets:
        print(f"target: {text}: {'met' if ok else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    parser.add_argument("--only", action="append", choices=["tcp", "http", "zmq", "redis", "raw"],
                        help="measure only these systems (repeatable)")
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.role:
        run_role(options.role, options.rest)
        return 0
    budget = Budget(seconds=0.3, max_messages=50_000, round_trips=300, warmup=50, repeat=1) \
        if options.quick else Budget(seconds=1.5)
    started = time.perf_counter()
    print(f"bench/ipc_peers.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{budget.repeat} one-way rounds of {budget.seconds:g} s per system (median kept), "
          f"{budget.round_trips} round trips",
          file=sys.stderr)
    results, http_calls = measure(budget, set(options.only) if options.only else None)
    report(results, http_calls)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

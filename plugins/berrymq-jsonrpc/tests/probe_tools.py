"""What the JSON-RPC suites share (this one, and the TCP and HTTP plugins' through their
conftest.py): JSON-RPC requests built and sent by hand (:func:`request`, :class:`Raw`,
:class:`JsonLines`, TCP lines and HTTP posts, a slow drip), and what the probes of
test_attacks.py use besides: a node with settings, its memory and threads
(``/proc/PID/status``), and a peer SIGKILLed while a stream of messages goes to it; the
shape of a session's token. Not a test module itself (like berrymq_cli_procs)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from helpers import Child, tcp_call

from berrymq.bus import Bus
from berrymq.errors import QueueFull, RemoteError, TransportError
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.stats import stats_for

__all__ = ["MIB", "OPEN_SOCKETS", "TOKEN", "WAIT", "JsonLines", "Raw", "Record", "Sampler",
           "delivered_by", "drip", "hold_gets", "http_answer", "http_call", "http_get_json",
           "http_post", "kill_mid_stream", "notifications_only", "open_socket", "port_of",
           "post_body", "proc_status", "refusing_node", "request", "request_text",
           "send_request", "start_node", "tcp_call"]

Record = Callable[..., None]
WAIT = 15.0
MIB = 1 << 20
#: A session's token as docs/protocol.md describes it: 43 URL-safe characters (256 bits).
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


#: Sockets a test opened with :func:`open_socket` (or added itself), closed after each test
#: by conftest.py's ``_close_open_sockets``.
OPEN_SOCKETS: list[socket.socket] = []


def open_socket(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection from ``source`` to the node's ``port`` on 127.0.0.1 (10 s timeout),
    closed after the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    OPEN_SOCKETS.append(sock)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def start_node(spawn: Callable[..., Any], tmp_path: Path, **settings: Any) -> Any:
    """A node_script.py node whose JSON-RPC transports both take ``settings``."""
    def value(v: Any) -> str:
        return json.dumps(v)  # numbers and lists of strings are the same in TOML

    table = "".join(f"{k} = {value(v)}\n" for k, v in settings.items())
    (tmp_path / "berrymq.toml").write_text(
        f"[berrymq]\n[berrymq.jsonrpc-tcp]\n{table}[berrymq.jsonrpc-http]\n{table}")
    return spawn()


def stop_process(pid: int) -> None:
    """SIGSTOP process ``pid`` and return once every one of its threads has stopped: the
    signal is sent at once but taken by each thread when it next runs (up to several ms
    on a loaded machine), and a thread not stopped yet may still answer a request."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + WAIT

    def state(task: Path) -> str:
        try:  # "pid (name) S ...": the state follows the name's last ")"
            return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return "T"  # a thread that ended meanwhile answers nothing either

    while not all(state(task) in "tT" for task in tasks.iterdir()):
        assert time.monotonic() < deadline, f"process {pid} did not stop within {WAIT}s"
        time.sleep(0.001)


def proc_status(pid: int) -> tuple[float, int]:
    """(resident memory in MiB, thread count) of process ``pid``."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


class Sampler:
    """The peak memory and thread count of a process, sampled every 20 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = proc_status(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                rss, threads = proc_status(self.pid)
            except OSError:  # the process ended (a failed test stops it)
                return
            self.peak = (max(self.peak[0], rss), max(self.peak[1], threads))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(WAIT)
        return {"rss_before_mib": round(self.before[0], 1), "rss_peak_mib": round(self.peak[0], 1),
                "threads_before": self.before[1], "threads_peak": self.peak[1]}


def request(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC 2.0 request object, its members in the order jsonrpc, method, params,
    id: without ``params`` when None (not given), and a notification (no ``id``) when
    ``id`` is None."""
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    if id is not None:
        obj["id"] = id
    return obj


def request_text(method: str, params: Any = None, id: Any = 1) -> bytes:
    """:func:`request` as the text a client sends: ``json.dumps`` (its default spacing),
    in UTF-8."""
    return json.dumps(request(method, params, id)).encode()


def notifications_only(data: bytes) -> bool:
    """Whether the text ``data`` is a notification or a batch of them only (no answer is
    owed to it); False for what is not JSON, which is answered with a parse error."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than json takes
        return False
    members = obj if isinstance(obj, list) and obj else [obj]
    return all(isinstance(m, dict) and "method" in m and "id" not in m for m in members)


class Raw:
    """One connection to a node, speaking JSON-RPC by hand: over TCP (``scheme``, the
    default) JSON lines, from the address ``source``; over HTTP one POST a text, on a
    kept-alive ``http.client`` connection whose last answer's status is :attr:`status`.

    :meth:`send` and :meth:`line` write and read lines as they are (TCP); :meth:`exchange`
    sends one text and reads its answer; :meth:`reply`, :meth:`result` and :meth:`error`
    make the request, numbered on this connection, and check the answer echoes its id."""

    def __init__(self, port: int, source: str = "127.0.0.1", *, scheme: str = "tcp") -> None:
        self.scheme = scheme
        self.status = 0
        self.ids = 0
        self.buffer = b""
        if scheme == "tcp":
            self.sock = socket.socket()
            self.sock.settimeout(WAIT)
            self.sock.bind((source, 0))
            self.sock.connect(("127.0.0.1", port))
        else:
            self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT,
                                                   source_address=(source, 0))

    def send(self, *objs: Any) -> None:
        """Write ``objs`` as JSON lines, all at once (TCP)."""
        self.sock.sendall(b"".join(json.dumps(o).encode() + b"\n" for o in objs))

    def line(self) -> Any:
        """The next line the node wrote, parsed (TCP); fails at the socket's timeout, or
        with ConnectionError when the node closed the connection."""
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the node closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def exchange(self, text: str | bytes) -> Any:
        """Send ``text`` as it is (a line, or a POST's body) and return its answer, parsed,
        or None when none comes: over HTTP a 204, over TCP told by a request sent after
        a text of notifications only (if the next line answers that, the text got none)."""
        data = text.encode() if isinstance(text, str) else text
        if self.scheme == "tcp":
            self.sock.sendall(data + b"\n")
            if not notifications_only(data):
                return self.line()
            self.sock.sendall(b'{"jsonrpc":"2.0","method":"nope","id":"probe"}\n')
            first = self.line()
            if isinstance(first, dict) and first.get("id") == "probe":
                return None
            probe = self.line()
            assert probe["id"] == "probe"
            return first
        self.http.request("POST", "/", data, {"Content-Type": "application/json"})
        response = self.http.getresponse()
        body = response.read()
        self.status = response.status
        if response.status == 204:
            assert body == b""
            return None
        assert response.getheader("Content-Type") == "application/json"
        return json.loads(body)

    def reply(self, method: str, params: Any = None, id: Any = ...) -> Any:
        """The node's whole answer to a request of ``method`` (no ``params`` when None)
        whose ``id`` is the next number of this connection unless given (None is sent as
        a null id, which is answered too, not as a notification); a numbered request's
        answer must echo its number."""
        numbered = id is ...
        if numbered:
            self.ids += 1
            id = self.ids
        answer = self.exchange(json.dumps({**request(method, params), "id": id}))
        if numbered:
            assert answer["id"] == id, answer
        return answer

    def result(self, method: str, params: Any = None) -> Any:
        """The result of a request (:meth:`reply`); fails the test on an error."""
        answer = self.reply(method, params)
        assert "result" in answer, answer
        return answer["result"]

    def call(self, method: str, **params: Any) -> Any:
        """:meth:`result`, the ``params`` given by name."""
        return self.result(method, params)

    def error(self, method: str, params: Any = None) -> dict[str, Any]:
        """The error of a request (:meth:`reply`); fails the test on a result."""
        answer = self.reply(method, params)
        assert "result" not in answer, answer
        return answer["error"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.scheme == "tcp":
            self.sock.close()
        else:
            self.http.close()


class JsonLines:
    """One TCP socket, written and read a JSON line at a time: a raw client of a node
    (:meth:`connect`), or a raw server playing one on a connection it accepted."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(WAIT)
        self.sock = sock
        self.reader = sock.makefile("rb")

    @classmethod
    def connect(cls, port: int) -> JsonLines:
        """A connection to the node's ``port`` on 127.0.0.1."""
        return cls(socket.create_connection(("127.0.0.1", port), timeout=WAIT))

    def send(self, *objects: Any, end: bytes = b"\n") -> None:
        """Write ``objects`` as JSON lines ending with ``end``, all at once."""
        self.sock.sendall(b"".join(json.dumps(o).encode() + end for o in objects))

    def read(self) -> Any:
        """The next line, parsed; fails when the connection closed before a whole line."""
        line = self.reader.readline()
        assert line.endswith(b"\n"), line or "the connection closed"
        return json.loads(line)

    def ended(self) -> bool:
        """Whether the peer closed the connection (what it still sent is skipped)."""
        while self.reader.readline():
            pass
        return True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def http_get_json(port: int, path: str) -> Any:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    return json.loads(body)


def hold_gets(port: int, raws: list[Raw], count: int, wait: float) -> tuple[Raw, str]:
    """A connection with a session queue and ``count`` blocking gets of ``wait`` s on it."""
    waiter = Raw(port)
    raws.append(waiter)
    token = waiter.call("connect_via_queue", identifier="job:*", ttl=600)
    waiter.send(*[request("get", {"token": token, "timeout": wait}, i) for i in range(count)])
    return waiter, token


def drip(sock: socket.socket, data: bytes, every: float, limit: float) -> float | None:
    """Send ``data`` on ``sock`` a byte every ``every`` s; the seconds until the node
    closed the connection, or None if it was open after ``limit`` s. What the node answers
    meanwhile (an HTTP 408, say) is read and skipped, keeping the pace."""
    started = time.monotonic()
    for byte in data:
        try:
            sock.send(bytes([byte]))
        except OSError:
            return time.monotonic() - started
        end = time.monotonic() + every
        while (left := end - time.monotonic()) > 0:
            if select.select([sock], [], [], left)[0]:
                try:
                    if not sock.recv(65536):  # the close (an HTTP 408 may come first)
                        return time.monotonic() - started
                except OSError:
                    return time.monotonic() - started
        if time.monotonic() - started > limit:
            return None
    raise AssertionError("the drip ended before the limit")


def http_post(port: int, obj: Any) -> Any:
    """POST one JSON-RPC text on a connection of its own; the answer, parsed."""
    return post_body(port, json.dumps(obj).encode())


def post_body(port: int, body: bytes) -> Any:
    """POST ``body`` (Connection: close) and parse the JSON of the answer's body."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])


def send_request(sock: socket.socket, scheme: str, body: bytes, host: str = "127.0.0.1") -> None:
    """Write one JSON-RPC text on ``sock``: a line over TCP, a POST (kept alive, with
    ``Host: host``) over HTTP; the answer is left to the caller to read."""
    if scheme == "tcp":
        sock.sendall(body + b"\n")
    else:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def http_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Read one HTTP answer on the kept-alive connection ``sock``: its status and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed without an answer"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of an answer"
        rest += chunk
    return int(head.split(b" ")[1]), rest[:length]


def http_call(sock: socket.socket, obj: Any, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """POST one JSON-RPC text on the kept-alive connection ``sock`` (``Host: host``): the
    answer's status and body."""
    send_request(sock, "http", json.dumps(obj).encode(), host)
    return http_answer(sock)


#: A peer that writes the number of every job:n it gets to a file, with no buffer in the
#: process: what it delivered survives its SIGKILL. Once it has delivered 3,000 it
#: stops itself (SIGSTOP) inside the receiver, so it acknowledges nothing more: what the
#: sender hands over from then on waits unacknowledged when the peer is killed, however
#: fast the host (a peer left running could take the whole outbox before the kill).
RECEIVER = textwrap.dedent("""
    import os, signal, sys
    import berrymq

    out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    delivered = 0

    def got(message):
        global delivered
        os.write(out, b"%d\\n" % message.args[0])
        delivered += 1
        if delivered == 3000:
            os.kill(os.getpid(), signal.SIGSTOP)

    berrymq.regist_function("job:n", got)
    print("READY", berrymq.init_connection(sys.argv[1] + "://127.0.0.1:0"), flush=True)
    sys.stdin.readline()
""")

def delivered_by(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_bytes().split(b"\n")[:-1]]


def kill_mid_stream(make: Callable[..., Bus], tmp_path: Path, scheme: str, style: str,
                    wait_for: Callable[..., Any]) -> dict[str, Any]:
    """Stream job:n to a peer (``connect_oneway`` and ``send``, or ``interconnect`` and
    ``twitter``) from a bus of ``make``, SIGKILL the peer once it delivered 3,000 (and
    froze), then count: what the calls handed over, what the peer delivered, what the
    counters report lost, what ``bus.flush`` returned right after the kill (``flush``) and
    once all was over (``flush_later``: the losses were reported by the first)."""
    # an outbox that takes what the calls hand over to the frozen peer until they stop
    # (a full one would hold a call until outbox_wait, past the kill)
    bus = make(**{f"jsonrpc_{scheme}": {"outbox_size": 10**7, "outbox_bytes": 1 << 32}})
    script = tmp_path / "receiver.py"
    script.write_text(RECEIVER)
    out = tmp_path / "delivered.txt"
    peer = Child(script, scheme, str(out), cwd=tmp_path)
    transport = bus.transport(scheme)
    connection = (transport.connect_oneway(peer.url, 600) if style == "oneway"
                  else transport.interconnect(peer.url, 600))
    accepted: list[int] = []
    refused: list[int] = []
    stop = threading.Event()

    ident = Identifier("job:n")

    def send_one(i: int) -> bool:
        """One call; whether it accepted the message."""
        try:
            if style == "oneway":
                connection.send(Message(ident, (i,), {}))
            else:
                bus.twitter(ident, i)
        except TransportError:
            refused.append(i)
            return False
        accepted.append(i)
        return True

    def send() -> None:  # as fast as the calls return, until one refuses or the test stops
        i = 0
        while not stop.is_set() and send_one(i):
            i += 1

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        wait_for(lambda: len(delivered_by(out)) >= 3000, what="traffic to the peer")
        # the peer froze at 3,000: the calls stop here, and what they handed over since
        # waits unacknowledged (a call racing with the failure is test_attacks' probe of a
        # batch in flight)
        stop.set()
        sender.join(WAIT)
        peer.proc.kill()
        peer.proc.wait(WAIT)
        # until the outbox failed, or had everything acknowledged before: False when
        # messages accepted since the last flush were lost (reported once: see below)
        flushed = bus.flush(WAIT)
        if style == "oneway":  # a later call is refused (over HTTP, once a batch failed)
            later = iter(range(10**9, 2 * 10**9))
            wait_for(lambda: not send_one(next(later)), what="a later call refused")
        wait_for(lambda: getattr(connection, "closed", False), what="the sender to notice")
    finally:
        stop.set()
        sender.join(WAIT)
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        peer.stop()
    stats = stats_for(bus)
    delivered = set(delivered_by(out))

    def counts() -> dict[str, Any]:
        if style == "oneway":  # every send that returned handed its message over
            handed, arrived = len(accepted), len(delivered & set(accepted))
        else:  # twitter also runs this process's receivers: count what went out to the peer
            handed, arrived = stats.totals()["messages_out"], len(delivered)
        reported = sum(stats.losses().values())
        return {"sent": handed, "delivered": arrived, "reported_lost": reported,
                "refused_at_call": len(refused),
                "lost_unreported": max(0, handed - arrived - reported)}

    # the closed connection's outbox is counted when its teardown (on a thread of its
    # own) closes the link: give it that long, then take the counts as they are
    with contextlib.suppress(AssertionError):
        wait_for(lambda: counts()["lost_unreported"] == 0, timeout=5, what="the losses counted")
    return {**counts(), "flush": flushed, "flush_later": bus.flush(5)}


def refusing_node(buses: Callable[..., Bus]) -> tuple[Bus, str]:
    """A node (in this process, serving HTTP) whose ``/status`` has something in every
    field ``berrymq status`` might leave out: a duplicate, a refused session (over
    ``max_sessions = 1``) and a connection of its own that the peer refused a message on."""
    other = buses(jsonrpc_http={"queue_size": 1})
    other_url = other.transport("http").listen("http://127.0.0.1:0")
    buses().transport("http").connect_via_queue(other_url, Identifier("job:*"), 300)  # holds 1
    node = buses(jsonrpc_http={"max_sessions": 1})
    url = node.transport("http").listen("http://127.0.0.1:0")
    node.subscribe("job:*", lambda message: None, weak=False)
    link = node.transport("http").connect_oneway(other_url, 300)
    link.send(Message(Identifier("job:x"), (1,), {}))
    link.send(Message(Identifier("job:x"), (2,), {}))  # no room for it in the queue of 1
    with pytest.raises(QueueFull):
        link.flush(WAIT)
    client = buses().transport("http").connect_oneway(url, 300)  # the one session allowed
    client.call(p.METHOD_SEND_MESSAGES, {"token": client.token, "messages": [
        ["job:x", [], {}, {"uid": "uid-of-a-duplicate"}], ["job:x", [], {}, {"uid": "uid-of-a-duplicate"}]]})  # a duplicate
    with pytest.raises(RemoteError):
        buses().transport("http").connect_oneway(url, 300)  # over max_sessions: refused
    return node, url

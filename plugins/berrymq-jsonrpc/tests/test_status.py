"""Issue 12 point 2 and issue 10 (the access rule): a node's ``/status``, ``/metrics`` and
``berrymq status``, against a real ``berrymq serve`` subprocess on loopback sockets."""

from __future__ import annotations

import gc
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.monitor import (
    access,
    answer_names,
    host_allowed,
    presented_secret,
)
from berrymq_jsonrpc.sessions import Session, session_id
from berrymq_jsonrpc.status import metrics_text, status_snapshot
from berrymq_jsonrpc.status_cli import status_url
from prometheus_client.parser import text_string_to_metric_families

from berrymq.bus import Bus
from berrymq.cli import UsageError, main
from berrymq.errors import BerryMQError, PluginNotAvailable, QueueFull, SettingsError
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.plugins import PluginHost, reset_plugin_host
from berrymq.settings import Settings
from berrymq.stats import RECENT, NodeStats
from berrymq.testing import free_port

TIMEOUT = 20.0


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def raw_get(url: str, host: str | None) -> bytes:
    """A GET with exactly this Host header (None: none at all), over a plain socket."""
    address, port = url.removeprefix("http://").rsplit(":", 1)
    head = "GET /status HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    with socket.create_connection((address, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall((head + "Connection: close\r\n\r\n").encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(url: str, **headers: str) -> dict[str, Any]:
    code, body = get(url + "/status", headers)
    assert code == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


# -- the counters ------------------------------------------------------------------------------


def test_counters_are_per_thread_and_survive_their_threads() -> None:
    stats = NodeStats()

    def count() -> None:
        for i in range(1000):
            stats.message_in(i, None)
            stats.exchanged(3, 5)

    threads = [threading.Thread(target=count) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert stats.totals() == {"messages_in": 20_000, "messages_out": 0,
                              "bytes_in": 60_000, "bytes_out": 100_000, "duplicates": 0}
    assert len(stats._cells) == 0, "the cells of ended threads are folded, not kept"


def test_recent_messages_are_a_bounded_ring() -> None:
    stats = NodeStats()
    for i in range(RECENT + 70):
        stats.message_out(f"job:n{i}", "tcp://peer")
    recent = stats.recent_messages()
    assert len(recent) == RECENT
    assert recent[-1]["identifier"] == f"job:n{RECENT + 69}"
    assert recent[0]["identifier"] == "job:n70"
    assert recent[-1]["direction"] == "out" and recent[-1]["peer"] == "tcp://peer"


# -- the access rule ---------------------------------------------------------------------------


def test_the_access_rule() -> None:
    assert access(True, None, None) is None  # loopback, no secret: open
    assert access(False, None, None) == 403  # elsewhere without a secret: never
    assert access(True, "s3", None) == 401  # a node with a secret asks for it everywhere
    assert access(False, "s3", None) == 401
    assert access(False, "s3", "nope") == 403
    assert access(False, "s3", "s3") is None
    assert access(True, "s3", "s3") is None
    assert access(False, "s3", "\udcff") == 403  # a lone surrogate is a wrong secret


def test_host_names_and_presented_secrets() -> None:
    names = answer_names("10.1.2.3", ["node.example"])
    for host in ("localhost", "localhost:80", "127.0.0.1:8000", "[::1]:8000", "[::1]",
                 "10.1.2.3:7000", "NODE.example:1"):
        assert host_allowed(host, names), host
    for host in (None, "", "evil.example", "evil.example:8000", "10.1.2.30", "[::2]:80",
                 "[::1]x", "localhost.evil.example"):
        assert not host_allowed(host, names), host
    assert presented_secret({"authorization": "Bearer abc"}, "") == ("abc",)
    assert presented_secret({}, "x=1&secret=def") == ("def",)
    assert presented_secret({"authorization": "Basic abc"}, "") is None


@pytest.mark.parametrize(("secret", "encoding"), [
    *((s, "utf-8") for s in ("voilà", "Åsa", "Šárka", "Ã©", "Maß½", "pässwörd-密码")),
    *((s, "latin-1") for s in ("voilà", "Åsa", "Ã©", "Maß½")),  # (those it can encode)
])
def test_a_secret_past_ascii_matches_in_either_encoding_from_the_header(
        secret: str, encoding: str) -> None:
    """The header's bytes, read as Latin-1 as every header is: a secret sent in UTF-8
    (curl, Prometheus, berrymq status, the page) or in Latin-1 (older clients) matches,
    including one whose UTF-8 ends in a byte ``str.strip`` takes (``à``: C3 A0) and one of
    Latin-1 letters whose bytes are valid UTF-8 too (``Ã©``); found by a review."""
    sent = secret.encode(encoding).decode("latin-1")
    presented = presented_secret({"authorization": "Bearer " + sent}, "")
    assert access(False, secret, presented) is None, presented
    assert access(False, secret + "x", presented) == 403


def test_status_needs_the_host_to_name_the_node(serve_node: Callable[..., Any]) -> None:
    node = serve_node("--http", "127.0.0.1:0", "--monitor", "127.0.0.1:0")
    for url in (node.urls["http"], node.urls["monitor"]):
        port = url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
            assert raw_get(url, host).startswith(b"HTTP/1.1 200 "), host
        for host in ("evil.example", f"evil.example:{port}", None):
            assert raw_get(url, host).startswith(b"HTTP/1.1 421 "), host


def test_a_node_with_a_secret_shows_its_status_only_with_it(
        serve_node: Callable[..., Any], bus_factory: Callable[..., Any]) -> None:
    node = serve_node("--http", "127.0.0.1:0", "--monitor", "127.0.0.1:0",
                      env={p.SECRET_ENV_VAR: "s3cret"})
    for url in (node.urls["http"], node.urls["monitor"]):
        assert get(url + "/status")[0] == 401
        assert get(url + "/metrics", {"Authorization": "Bearer wrong"})[0] == 403
        assert get(url + "/status", {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(url + "/?secret=s3cret")[0] == 200
    # the same rule for the JSON-RPC method that describes a node
    client = bus_factory(jsonrpc_http={"secret": "wrong"}).transport("http")
    with pytest.raises(BerryMQError, match="Unauthorised"):
        client.call_once(node.urls["http"], p.METHOD_NETWORK, {}, timeout=TIMEOUT, secret=None)
    described = client.call_once(node.urls["http"], p.METHOD_NETWORK, {}, timeout=TIMEOUT,
                                 secret="s3cret")
    assert described["version"] == 1


def test_a_secret_past_ascii_is_read_as_the_utf_8_a_client_sends(
        serve_node: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Any text is a secret (settings.md), but the header form of the access rule read
    HTTP's bytes as Latin-1 only: curl and Prometheus (which send UTF-8) got 403 with the
    right secret, and ``berrymq status`` failed with a UnicodeEncodeError (found by an
    outside audit). The header is read as UTF-8 (else as Latin-1) on both addresses."""
    secret = "pässwörd-密码"
    node = serve_node("--http", "127.0.0.1:0", "--monitor", "127.0.0.1:0",
                      env={p.SECRET_ENV_VAR: secret})
    for url in (node.urls["http"], node.urls["monitor"]):
        assert _bearer_get(url, secret.encode()).startswith(b"HTTP/1.1 200 "), url
        assert _bearer_get(url, b"p\xe4ssw\xf6rd").startswith(b"HTTP/1.1 403 "), url
        assert main(["status", url, "--secret", secret, "--json"]) == 0, capsys.readouterr()
        assert json.loads(capsys.readouterr().out)["server"]["node"]
    latin = serve_node("--http", "127.0.0.1:0", env={p.SECRET_ENV_VAR: "pässwörd"})
    url = latin.urls["http"]
    for sent in ("pässwörd".encode(), "pässwörd".encode("latin-1")):  # either is taken
        assert _bearer_get(url, sent).startswith(b"HTTP/1.1 200 "), sent
    assert secret in (presented_secret({"authorization": "Bearer " + secret}, "") or ())


@pytest.mark.parametrize("secret", ["  s3cret  ", "s3\ncret", "s3\tcret"])
def test_a_secret_with_spaces_at_its_ends_or_a_line_break_reaches_the_status(
        serve_node: Callable[..., Any], capsys: pytest.CaptureFixture[str], secret: str) -> None:
    """Spaces at the ends of a secret (as JSON-RPC carries it, whole) were dropped from
    ``Authorization`` by HTTP, and the node refused the right secret as wrong; a line
    break could not be written in a header at all: ``berrymq status`` failed with
    "ValueError: Invalid header value" (found by an outside audit). The node matches the
    secret as HTTP leaves it; the command sends one no header carries in the query."""
    node = serve_node("--http", "127.0.0.1:0", "--monitor", "127.0.0.1:0",
                      env={p.SECRET_ENV_VAR: secret})
    for url in (node.urls["http"], node.urls["monitor"]):
        assert main(["status", url, "--secret", secret, "--json"]) == 0, capsys.readouterr()
        assert json.loads(capsys.readouterr().out)["server"]["node"]
        if "\n" not in secret:
            assert _bearer_get(url, secret.encode()).startswith(b"HTTP/1.1 200 "), url
        assert _bearer_get(url, b"s3cret-not").startswith(b"HTTP/1.1 403 "), url


def _bearer_get(url: str, secret: bytes) -> bytes:
    """The head of a GET /status whose ``Authorization: Bearer`` holds these bytes."""
    address, port = url.removeprefix("http://").rsplit(":", 1)
    head = (f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            "Authorization: Bearer ").encode() + secret + b"\r\n\r\n"
    with socket.create_connection((address, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)[:200]


def test_monitor_off_loopback_needs_a_secret(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "berrymq", "serve", "--http", "127.0.0.1:0",
                           "--monitor", "0.0.0.0:0"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT, env=_env())
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    # "" was taken for no --monitor at all: the node served no status, and said nothing
    (("--monitor", ""), "berrymq: error: --monitor '': expected HOST:PORT, :PORT or PORT"),
    # a name that does not resolve was a run failure (exit 1) in asyncio's words, where
    # --tcp and --http call it a usage error naming the host
    (("--monitor", "nosuchhost.invalid:0"), "berrymq: error: cannot serve the status at "
     "nosuchhost.invalid:0: the host name 'nosuchhost.invalid' names no address ("),
    # (the transport's error already named the address: it was said twice)
    (("--tcp", "nosuchhost.invalid:0"), "berrymq: error: cannot serve "
     "tcp://nosuchhost.invalid:0: the host name 'nosuchhost.invalid' names no address ("),
])
def test_serve_names_an_address_it_cannot_serve_before_serving_any(
        tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    done = subprocess.run([sys.executable, "-m", "berrymq", "serve", "--http", "127.0.0.1:0",
                           *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT, env={**_env(), "BERRYMQ_SECRET": "s3cret-s3cret"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert done.stdout == ""  # nothing was served, or said to be


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("BERRYMQ_CONFIG", "BERRYMQ_SECRET")}


# -- /status and /metrics of a node at work ----------------------------------------------------


def test_status_and_metrics_of_a_working_node(
        serve_node: Callable[..., Any], bus_factory: Callable[..., Any]) -> None:
    node = serve_node("--http", "127.0.0.1:0", "--monitor", "127.0.0.1:0",
                      settings="[berrymq.jsonrpc-http]\nqueue_size = 3\n")
    url = node.urls["http"]
    transport = bus_factory().transport("http")
    queue = transport.connect_via_queue(url, Identifier("job:*"), 60)
    oneway = transport.connect_oneway(url, 60)
    for i in range(3):
        oneway.send(Message(Identifier("job:done"), (i, "x"), {"who": "test"}))
    assert oneway.flush(TIMEOUT)
    with pytest.raises(QueueFull):  # the fourth does not fit the queue of 3: refused
        oneway.call(p.METHOD_SEND_MESSAGE, {"token": oneway.token, "identifier": "job:late"})
    assert queue.get(timeout=TIMEOUT).args == (0, "x")

    status = status_of(node.urls["monitor"])
    same = ("lost", "queues", "recent", "plugins")
    assert {k: status[k] for k in same} == {k: status_of(url)[k] for k in same}
    assert status["version"] == 1
    assert status["server"]["listening"] == [url]
    assert status["server"]["uptime_s"] > 0
    assert status["messages"]["in"] == 4  # three sent, one refused: all came in
    assert status["messages"]["out"] == 1  # taken by the queue client
    assert status["bytes"]["in"] > 0 and status["bytes"]["out"] > 0
    assert status["lost"] == {"total": 1, "reasons": {"refused: queue full": 1}}
    assert sorted(s["style"] for s in status["sessions"]) == ["oneway", "queue"]
    assert all(s["age_s"] >= s["idle_s"] >= 0 and s["ttl_s"] == 60 for s in status["sessions"])
    (remote,) = [q for q in status["queues"] if q["kind"] == "session"]
    expected = sum(len(json.dumps(["job:done", [i, "x"], {"who": "test"}],
                                  separators=(",", ":"))) for i in (1, 2))
    assert (remote["pattern"], remote["depth"], remote["bytes"], remote["maxsize"]) == (
        "job:*", 2, expected, 3)
    recent = status["recent"]
    assert [(m["direction"], m["identifier"]) for m in recent] == [
        ("in", "job:done")] * 3 + [("in", "job:late"), ("out", "job:done")]
    assert all(m["peer"].startswith(("oneway", "queue")) for m in recent)
    # the queue client that took it: its session (over HTTP, its token's start), its pattern
    (queue_session,) = [s["id"] for s in status["sessions"] if s["style"] == "queue"]
    assert recent[-1]["peer"] == f"queue session {queue_session} (job:*)", recent[-1]
    plugins = {x["name"]: x for x in status["plugins"]}
    assert plugins["jsonrpc-http"]["active"] is True
    assert any("serving" in line for line in plugins["jsonrpc-http"]["status"])

    code, body = get(node.urls["monitor"] + "/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    for name in ("messages_received", "messages_sent", "bytes_received", "bytes_sent",
                 "messages_lost"):
        assert families[f"berrymq_{name}"].type == "counter"
    assert "unknown" not in {f.type for f in families.values()}
    assert values[("berrymq_messages_received_total", ())] == 4
    assert values[("berrymq_messages_sent_total", ())] == 1
    assert values[("berrymq_messages_lost_total", (("reason", "refused: queue full"),))] == 1
    session = next(s["id"] for s in status["sessions"] if s["style"] == "queue")
    assert values[("berrymq_queue_depth", (("kind", "session"), ("queue", "remote job:*"),
                                           ("session", session)))] == 2
    assert values[("berrymq_sessions", (("scheme", "http"), ("style", "queue")))] == 1
    assert values[("berrymq_plugin_active", (("plugin", "jsonrpc-http"), ("version", "0.4.0")))] == 1


def test_a_client_status_shows_its_outgoing_connections(bus_factory: Callable[..., Any]) -> None:
    node = bus_factory()
    url = node.transport("tcp").listen("tcp://127.0.0.1:0")
    client = bus_factory()
    oneway = client.transport("tcp").connect_oneway(url, 60)
    oneway.send(Message(Identifier("job:done"), (1,), {}))
    assert oneway.flush(TIMEOUT)
    (connection,) = status_snapshot(client)["connections"]
    assert {k: connection[k] for k in ("scheme", "address", "style", "direction", "pending",
                                       "sent", "lost", "state")} == {
        "scheme": "tcp", "address": url, "style": "oneway", "direction": "out", "pending": 0,
        "sent": 1, "lost": 0, "state": "open"}


def test_the_rates_after_a_quiet_while_are_of_the_last_seconds(
        bus_factory: Callable[..., Any]) -> None:
    """Rate samples were taken only when the status was read: the first read after a
    quiet while gave the average since the read before it (50 messages, then 30 s of
    nothing: ``in_per_s`` 1.6 on an idle node)."""
    node = bus_factory()
    url = node.transport("tcp").listen("tcp://127.0.0.1:0")
    status_snapshot(node)  # a read before the burst
    oneway = bus_factory().transport("tcp").connect_oneway(url, 60)
    for i in range(50):
        oneway.send(Message(Identifier("job:done"), (i,), {}))
    assert oneway.flush(TIMEOUT)
    time.sleep(2.5)  # quiet: what is measured is time passing without a read
    messages = status_snapshot(node)["messages"]
    assert messages["in"] == 50 and messages["in_per_s"] == 0.0, messages
    assert len(status_snapshot(node)["history"]) >= 3  # a sample each second meanwhile


def test_duplicates_and_the_hop_limit_are_told_apart(bus_factory: Callable[..., Any]) -> None:
    node = bus_factory()
    seen: list[object] = []
    # A receiver for job:x: a message nobody here wants is taken without a uid check.
    node.subscribe("job:*", seen.append, weak=False)
    url = node.transport("http").listen("http://127.0.0.1:0")
    client = bus_factory().transport("http").connect_oneway(url, 60)
    client.call(p.METHOD_SEND_MESSAGES, {"token": client.token, "messages": [
        ["job:x", [], {}, {"uid": "uid-of-a-duplicate"}], ["job:x", [], {}, {"uid": "uid-of-a-duplicate"}],
        ["job:y", [], {}, {"hops": node.hop_limit}]]})
    status = status_snapshot(node)
    assert (status["messages"]["in"], status["messages"]["duplicates"]) == (3, 1)
    assert status["lost"] == {"total": 1, "reasons": {"hop limit": 1}}
    assert [m.id for m in seen] == ["job:x"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("token", "shown"), [
    ("M7pAeiyfDD4uPNmep4RfIFNIcjr3E0HbjwG7FJsNzl8", "M7pAeiyf"),  # a node's own, 43
    ("abcdefgh12345678", "abcd"),  # the shortest a JSON-RPC 1.0 peer may propose
    ("a" * 32, "aaaaaaaa"),
])
def test_status_shows_of_a_token_too_little_to_guess_it(token: str, shown: str) -> None:
    """Anyone on loopback may read /status: a 1.0 peer's token of 16 characters was shown
    half (its first 8), leaving 32 bits to guess of a token it may have made up weakly."""
    assert session_id(token) == shown
    # the peer of its messages in /status's recent list, and the session in logs, the same
    session = Session(token, "oneway", 60.0)
    assert str(session) == f"oneway session {shown}"
    assert token[len(shown):] not in repr(session) and shown in repr(session)
    stats = NodeStats()
    stats.message_in("job:x", session)
    assert stats.recent_messages()[0]["peer"] == f"oneway session {shown}"


def test_metrics_have_one_sample_per_label_set() -> None:
    """Two clients' queues of one pattern, two local queues of one name: each series once
    (the text format requires it; Prometheus drops or mixes repeated series)."""
    snapshot = {
        "server": {"node": "n", "bus": "b", "berrymq": "0", "uptime_s": 1.0},
        "messages": {"in": 0, "out": 0}, "bytes": {"in": 0, "out": 0},
        "lost": {"total": 0, "reasons": {}}, "sessions": [], "connections": [],
        "queues": [
            {"name": "remote task:*", "kind": "session", "depth": 1, "bytes": 10, "session": "AAAA"},
            {"name": "remote task:*", "kind": "session", "depth": 2, "bytes": 20, "session": "BBBB"},
            {"name": "Queue(a:*)", "kind": "local", "depth": 3, "bytes": None, "session": None},
            {"name": "Queue(a:*)", "kind": "local", "depth": 4, "bytes": None, "session": None}],
        "plugins": [], "history": [], "recent": NodeStats().recent_messages(),
    }
    text = metrics_text(snapshot)
    samples = [line for line in text.splitlines() if line.startswith("berrymq_queue_depth{")]
    assert sorted(samples) == sorted([
        'berrymq_queue_depth{queue="remote task:*",kind="session",session="AAAA"} 1',
        'berrymq_queue_depth{queue="remote task:*",kind="session",session="BBBB"} 2',
        'berrymq_queue_depth{queue="Queue(a:*)",kind="local"} 7']), text


def test_metrics_escape_label_values() -> None:
    stats = NodeStats()
    snapshot = {
        "server": {"node": "n", "bus": 'b"us\\1\nx', "berrymq": "0", "uptime_s": 1.5},
        "messages": {"in": 1, "out": 2}, "bytes": {"in": 3, "out": 4},
        "lost": {"total": 5, "reasons": {'odd "reason"\\ with\nnewline': 5}},
        "sessions": [], "connections": [],
        "queues": [{"name": 'Queue(a:"b")', "kind": "local", "depth": 7, "bytes": None}],
        "plugins": [], "history": [], "recent": stats.recent_messages(),
    }
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(snapshot))}
    (info,) = families["berrymq_info"].samples
    assert info.labels["bus"] == 'b"us\\1\nx'
    (lost,) = families["berrymq_messages_lost"].samples
    assert lost.labels["reason"] == 'odd "reason"\\ with\nnewline' and lost.value == 5
    (depth,) = families["berrymq_queue_depth"].samples
    assert depth.labels["queue"] == 'Queue(a:"b")' and depth.value == 7
    assert families["berrymq_queue_bytes"].samples == []


# -- berrymq status URL ------------------------------------------------------------------------


def run_status(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "berrymq", "status", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())


@pytest.mark.parametrize(("given", "url"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000/status"),
    ("127.0.0.1:8000/", "http://127.0.0.1:8000/status"),
    (":8000", "http://127.0.0.1:8000/status"),
    ("http://node:8000/status", "http://node:8000/status"),
])
def test_status_url_of_what_a_user_types(given: str, url: str) -> None:
    assert status_url(given) == url


@pytest.mark.parametrize(("given", "says"), [
    ("http://127.0.0.1:99999", "has an invalid port"),
    ("http://[::1:8000", r"address 'http://\[::1:8000' cannot be read: Invalid IPv6 URL"),
    ("http://127.0.0.1", "needs a host and a port, e.g. http://127.0.0.1:8000"),
    ("tcp://127.0.0.1:7000", "status is served over HTTP"),
])
def test_status_url_names_what_is_wrong(given: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        status_url(given)


def test_without_jsonrpc_http_status_of_a_tcp_url_says_what_to_install() -> None:
    """--http and --monitor are jsonrpc-http's: where it is missing, naming them alone
    would send a user to options this install has not."""
    old = reset_plugin_host(PluginHost(Settings(), entry_points=False, extra_plugins=[
        ("jsonrpc-tcp", importlib.import_module("berrymq_jsonrpc_tcp.plugin"))]))
    try:
        with pytest.raises(UsageError) as info:
            status_url("tcp://127.0.0.1:7000")
    finally:
        reset_plugin_host(old)
    assert str(info.value) == (
        "'tcp://127.0.0.1:7000': status is served over HTTP; give the node's http:// address "
        "(the node's --http port or its --monitor address, options of serve that the plugin "
        "'jsonrpc-http' adds, which is not active here: install the plugin 'jsonrpc-http' (in "
        "a berryMQ checkout: pip install ./plugins/berrymq-jsonrpc "
        "./plugins/berrymq-jsonrpc-http))")


def test_status_command(serve_node: Callable[..., Any], bus_factory: Callable[..., Any],
                        tmp_path: Path) -> None:
    node = serve_node("--http", "127.0.0.1:0", "--monitor", "127.0.0.1:0")
    sender = bus_factory().transport("http").connect_oneway(node.urls["http"], 60)
    sender.send(Message(Identifier("order:placed"), (42,), {}))
    assert sender.flush(TIMEOUT)

    shown = run_status(node.urls["monitor"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "messages:  in 1 " in shown.stdout
    assert "order:placed" in shown.stdout and "sessions:" in shown.stdout
    raw = run_status(node.urls["http"], "--json", cwd=tmp_path)
    assert raw.returncode == 0
    assert json.loads(raw.stdout)["recent"][-1]["identifier"] == "order:placed"

    port = free_port()  # nobody listens there
    gone = run_status(f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert gone.returncode == 1 and "cannot reach" in gone.stderr
    wrong = run_status(node.urls["tcp"] if "tcp" in node.urls else "tcp://127.0.0.1:1",
                       cwd=tmp_path)
    assert wrong.returncode == 2 and "over HTTP" in wrong.stderr


class _FailingStatus:
    """A code plugin whose status hook raises an error that is passed on as it is (it
    says what to do already), as a wrong setting found by the hook would be."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @hookimpl
    def berrymq_report_status(self, bus: Any, report: Any) -> None:
        raise self.error


@pytest.mark.parametrize(("error", "named"), [
    (PluginNotAvailable("no moods here", "moody", "install it"), True),
    (SettingsError("mood must be a string"), False),  # names no plugin
])
def test_a_status_that_cannot_be_made_shows_why_on_the_plugins_rows(
        error: Exception, named: bool) -> None:
    # It was filed under the key "?", which no plugin row has: every row showed no line
    # and the error was nowhere.
    host = PluginHost(Settings(), entry_points=False,
                      extra_plugins=[("moody", _FailingStatus(error))])
    bus = Bus(plugins=host, name="moody")
    try:
        rows = status_snapshot(bus)["plugins"]
    finally:
        bus.close()
    failed = {row["name"] for row in rows if row["status"] == [f"status failed: {error}"]}
    # the plugin the error names; else every active one (moody, and the core's own)
    assert failed == ({"moody"} if named else {row["name"] for row in rows if row["active"]})
    assert len(failed) > 1 or named

"""Issue 10's attacks and faults, re-run against a node in a real subprocess.

Each probe repeats one attack on the old network code and asserts the outcome that
docs/delivery.md states; it records what it measured (memory and threads of the node,
messages sent, delivered, reported lost, lost without a report, inputs tried) through the
``figures`` fixture, which ``bench/figures.py`` turns into the table of that page. Every
wait has a deadline; the node's memory and threads are read from ``/proc/PID/status``
(probe_tools.py). Probes marked xfail(strict) found a bug in the new code: the reason
names it; remove the mark with the fix.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from probe_tools import (
    MIB,
    WAIT,
    Raw,
    Record,
    Sampler,
    drip,
    hold_gets,
    http_get_json,
    http_post,
    kill_mid_stream,
    port_of,
    request,
    start_node,
)

from berrymq.bus import Bus
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.stats import stats_for


@pytest.fixture
def raws() -> Iterator[list[Raw]]:
    opened: list[Raw] = []
    yield opened
    for raw in opened:
        raw.close()


# -- 1. one connection's waiting gets, one client's 1 MiB lines ----------------------------


def test_a_get_nowait_behind_17_blocking_gets_is_answered(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record) -> None:
    node = start_node(spawn, tmp_path)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    waiter, token = hold_gets(port, raws, 17, wait=8)  # one over max_waiting (16)
    waiter.send(request("get_nowait", {"token": token}, "now"))
    asked = time.monotonic()
    waiter.sock.settimeout(3.0)
    answers = {}
    try:
        while "now" not in answers:  # the 17th get is refused at once, in any order
            answer = waiter.line()
            answers[answer["id"]] = answer
    finally:
        took = time.monotonic() - asked
        figures(kind="load held", what="17 blocking gets (8 s each), then get_nowait, on one "
                "TCP connection", inputs=18, outcome=f"get_nowait answered after {took:.1f} s"
                if took < 3.0 else "get_nowait not answered within 3 s")
    assert answers["now"]["error"]["code"] == p.EMPTY, answers
    refused = answers[16]["error"]  # the one over the cap, not run: it says which cap
    assert refused["code"] == p.LIMIT_REACHED, refused
    assert refused["data"]["setting"] == "max_waiting" and refused["data"]["limit"] == 16
    assert set(answers) == {16, "now"}, answers  # the 16 others still wait


def test_a_stream_of_1mib_lines_beside_blocking_gets_keeps_the_node_bounded(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record) -> None:
    node = start_node(spawn, tmp_path)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    _, token = hold_gets(port, raws, 16, wait=10)  # as many as the connection takes
    streamer = Raw(port)
    raws.append(streamer)
    oneway = streamer.call("connect_oneway", ttl=600)
    # send_message notifications of 1 MiB (no answer comes), as fast as the node reads
    line = (json.dumps(request("send_message", {"token": oneway, "identifier": "flood:x",
                                                "args": ["x" * (MIB - 300)]}, None)) + "\n").encode()
    sent = 0
    sampler = Sampler(node.process.pid)
    until = time.monotonic() + 3.0
    while time.monotonic() < until:
        streamer.sock.sendall(line)
        sent += len(line)
    ping = Raw(port)  # a new client is answered at once meanwhile
    raws.append(ping)
    ping.send(request("get_nowait", {"token": token}))
    assert ping.line()["error"]["code"] == p.EMPTY
    figure = sampler.stop()
    figures(kind="load held", what="1 MiB send_message lines for 3 s on one TCP connection, "
            "16 blocking gets on another", inputs=sent // len(line), bytes_in=sent, **figure)
    assert sent >= 8 * MIB, "the node did not read the stream"
    assert figure["rss_peak_mib"] - figure["rss_before_mib"] < 150, figure
    assert figure["threads_peak"] <= figure["threads_before"] + 4, figure


# -- 2. server queues: bounded in bytes, a refusal reported ----------------------------------


def test_1mib_messages_into_a_session_queue_stop_at_max_queued_bytes(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record) -> None:
    node = start_node(spawn, tmp_path, max_queued_bytes=32 * MIB)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    client = Raw(port)
    raws.append(client)
    client.call("connect_via_queue", identifier="big:*", ttl=600)
    token = client.call("connect_oneway", ttl=600)
    sampler = Sampler(node.process.pid)
    # as large as a message may be: max_size less 512 bytes, measured as [identifier,
    # args, kwargs, extras] with a uid (berrymq_jsonrpc.sizes); over it the node would
    # refuse each with Message too large instead of storing any
    payload = "x" * (MIB - 512 - len('["big:x",[""],{},{"uid":"12345678901234567890"}]'))
    answers = []
    for i in range(100):  # 100 MiB at a queue whose node takes 32 MiB
        client.send(request("send_message", {"token": token, "identifier": "big:x",
                                             "args": [payload]}, i))
        answers.append(client.line())
    figure = sampler.stop()
    stored = sum("result" in a for a in answers)
    refused = [a["error"] for a in answers if "error" in a]
    figures(kind="load held", what="100 send_message of 1 MiB into one session queue, "
            "max_queued_bytes 32 MiB", inputs=100, bytes_in=100 * MIB, sent=100,
            delivered=stored, refused_at_call=len(refused), lost_unreported=100 - stored - len(refused),
            **figure)
    assert 25 <= stored <= 32 and stored + len(refused) == 100
    assert all(e["code"] == p.QUEUE_FULL for e in refused), refused[:1]
    assert figure["rss_peak_mib"] - figure["rss_before_mib"] < 32 * 3, figure


def test_a_full_server_queue_is_reported_to_the_sender_not_dropped(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record,
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any]) -> None:
    node = start_node(spawn, tmp_path, queue_size=1000)
    url = node("serve", addr="tcp://127.0.0.1:0")
    status_port = port_of(node("serve", addr="http://127.0.0.1:0"))
    holder = Raw(port_of(url))
    raws.append(holder)
    holder.call("connect_via_queue", identifier="job:*", ttl=600)
    bus = bus_factory()
    connection = bus.transport("tcp").connect_oneway(url, 600)
    for i in range(5000):  # send_message as fast as it returns, at a queue of 1,000
        connection.send(Message(Identifier("job:n"), (i,), {}))
    accepted = 5000
    flushed = bus.flush(WAIT)  # False: messages accepted since the last flush were refused
    queues = http_get_json(status_port, "/status")["queues"]
    stored = sum(q["depth"] for q in queues if q["kind"] == "session")
    reported = sum(stats_for(bus).losses().values())
    # the refusals leave the connection open: later messages still go
    connection.send(Message(Identifier("other:x"), (5000,), {}))  # no full queue wants it
    assert connection.flush(WAIT) is True
    assert not getattr(connection, "closed", True)
    figures(kind="fault survived", what="send_message at a server queue (style 03) of 1,000 "
            "that fills up", inputs=5000, sent=accepted, delivered=stored,
            refused_at_call=0, reported_lost=reported, flush=flushed,
            lost_unreported=max(0, accepted - stored - reported))
    assert stored == 1000
    assert accepted - stored == reported, "messages lost without a report"
    assert flushed is False


def test_send_message_after_the_peer_died_says_why(
        spawn: Callable[..., Any], wait_for: Callable[..., Any]) -> None:
    # A refusal by a full queue no longer closes the connection (test_refusals.py); what
    # closes it is its peer gone. Once it is torn down, a later send still says why.
    sender, peer = spawn(), spawn()
    url = peer("serve", addr="tcp://127.0.0.1:0")
    sender("oneway", addr=url)
    sender("send", id="job:n", args=[0])
    assert sender("flush") is True
    peer.kill()  # SIGKILL

    def refused() -> bool:
        try:
            sender("send", id="job:n", args=[1])
        except Exception:
            return True
        return False

    wait_for(refused, what="a send after the peer died refused")
    wait_for(lambda: sender("connections") == [], what="the connection torn down")
    with pytest.raises(Exception, match="ConnectionClosed") as later:
        sender("send", id="job:n", args=[2])
    text = str(later.value)
    assert url in text and "the peer closed the connection" in text, text


def test_messages_in_an_expired_session_queue_are_counted(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw],
        wait_for: Callable[..., Any]) -> None:
    node = start_node(spawn, tmp_path)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    status_port = port_of(node("serve", addr="http://127.0.0.1:0"))
    client = Raw(port)
    raws.append(client)
    client.call("connect_via_queue", identifier="job:*", ttl=1)
    sender = client.call("connect_oneway", ttl=600)
    for i in range(5):  # accepted: stored in the queue, never taken
        assert client.call("send_message", token=sender, identifier="job:x", args=[i]) == "ok"

    def expired() -> bool:
        # the session leaves /status's sessions first; what its queue held is counted
        # lost after, when the queue is closed on a helper thread: wait for both
        status = http_get_json(status_port, "/status")
        return [s["style"] for s in status["sessions"]] == ["oneway"] and bool(
            status["lost"]["total"])

    wait_for(expired, what="the queue's session to expire and its messages counted lost")
    lost = http_get_json(status_port, "/status")["lost"]
    assert lost["reasons"] == {"dropped: session closed with messages not taken": 5}, lost
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/metrics", timeout=WAIT) as got:
        metrics = got.read().decode()
    assert 'reason="dropped: session closed with messages not taken"} 5' in metrics
    # the node's stderr is read by a thread of this process: wait for the line, with a
    # deadline, then check it came once
    wait_for(lambda: any("freed unread" in line for line in node.stderr), what="the log line")
    node("connections")  # a round trip: what the node logged meanwhile is written
    assert sum("freed unread" in line for line in node.stderr) == 1, node.stderr


# -- 3. forged message ids ------------------------------------------------------------------


def test_forged_uids_cannot_make_a_node_drop_a_peers_messages(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record) -> None:
    node = start_node(spawn, tmp_path)
    url = node("serve", addr="tcp://127.0.0.1:0")
    status_port = port_of(node("serve", addr="http://127.0.0.1:0"))
    node("collect", pattern="job:*")
    peer = spawn()
    peer_port = port_of(peer("serve", addr="tcp://127.0.0.1:0"))
    peer("interconnect", addr=url, ttl=600)
    attacker = Raw(port_of(url))
    raws.append(attacker)
    spy = Raw(peer_port)  # the network method tells anyone on loopback the peer's node id
    raws.append(spy)
    peer_id = spy.call("network")["node"]
    token = attacker.call("connect_oneway", ttl=600)
    forged = 5000
    for start in range(0, forged, 1000):
        batch = [["spoof:x", [], {}, {"uid": f"{peer_id}-{k}"}] for k in range(start, start + 1000)]
        assert attacker.call("send_messages", token=token, messages=batch) == "ok"
    sent = 1000
    for i in range(sent):
        peer("twitter", id="job:real", args=[i])
    assert peer("flush", wait=WAIT) is True
    delivered = {args[0] for _, args, _ in node("drain", pattern="job:*")}  # flush: all in
    status = http_get_json(status_port, "/status")
    reported = status["lost"]["total"]
    figures(kind="bad input", what="send_messages with 5,000 uids forged from an "
            "interconnected peer's node id, then 1,000 messages from that peer",
            inputs=forged, sent=sent, delivered=len(delivered), reported_lost=reported,
            lost_unreported=max(0, sent - len(delivered) - reported),
            duplicates=status["messages"]["duplicates"])
    assert len(delivered) == sent, f"{sent - len(delivered)} of the peer's messages dropped"


# -- 4. a flood of connections ----------------------------------------------------------------


def test_connections_beyond_the_caps_are_refused_with_few_threads(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record) -> None:
    node = start_node(spawn, tmp_path, max_connections=500, max_connections_per_client=400)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    sampler = Sampler(node.process.pid)
    held = [Raw(port) for _ in range(400)]
    over = [(Raw(port), "max_connections_per_client", 400) for _ in range(100)]
    held += [Raw(port, "127.0.0.2") for _ in range(100)]  # another client: within the node's cap
    over += [(Raw(port, "127.0.0.3"), "max_connections", 500) for _ in range(100)]
    raws += held + [raw for raw, _, _ in over]
    for raw in held:  # every one admitted, each with a session of its own
        raw.send(request("connect_oneway", {"ttl": 600}))
    assert all(type(raw.line()["result"]) is str for raw in held)
    for raw, setting, limit in over:  # answered once, then closed
        error = raw.line()["error"]
        assert error["code"] == p.LIMIT_REACHED and error["data"]["setting"] == setting
        assert error["data"]["limit"] == limit and setting in error["data"]["detail"]
        assert raw.sock.recv(1) == b""
    figure = sampler.stop()
    figures(kind="load held", what="500 TCP connections with a session each, then 200 "
            "over max_connections(_per_client)", inputs=700, connections=500, sessions=500,
            refused=200, **figure)
    assert figure["threads_peak"] <= figure["threads_before"] + 4, figure
    assert figure["rss_peak_mib"] - figure["rss_before_mib"] < 100, figure


# -- 5. slow drips ----------------------------------------------------------------------------


def test_slow_drips_are_closed_by_the_whole_request_deadline(
        spawn: Callable[..., Any], tmp_path: Path, figures: Record) -> None:
    node = start_node(spawn, tmp_path, read_timeout=2.0)
    tcp = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    http = port_of(node("serve", addr="http://127.0.0.1:0"))
    line = b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":600},"id":1'
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Pad: "
    closed: dict[str, float | None] = {}

    def run(name: str, port: int, data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            closed[name] = drip(sock, data, 1.0, limit=8.0)  # 1 byte/s: no read waits 2 s

    threads = [threading.Thread(target=run, args=("tcp line", tcp, line)),
               threading.Thread(target=run, args=("http header", http, head))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    figures(kind="fault survived", what="1 byte/s drip of half a TCP line and half an HTTP "
            "header, read_timeout 2 s", inputs=2,
            outcome=", ".join(f"{k} closed after {v:.1f} s" if v else f"{k} still open"
                              for k, v in closed.items()))
    for name, after in closed.items():
        assert after is not None, f"{name}: a drip kept the connection open past 8 s"
        assert 1.5 <= after < 5.0, (name, after)


def test_half_closed_connections_are_answered_or_closed(
        spawn: Callable[..., Any], tmp_path: Path, figures: Record) -> None:
    node = start_node(spawn, tmp_path)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    sampler = Sampler(node.process.pid)
    whole = json.dumps(request("get_nowait", {"token": "x" * 43})).encode() + b"\n"
    socks = []
    for i in range(200):  # a whole request or half of one, then shutdown(SHUT_WR)
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        sock.sendall(whole if i % 2 else whole[: len(whole) // 2])
        sock.shutdown(socket.SHUT_WR)
        socks.append(sock)
    answers = []
    for sock in socks:  # every one closed by the node; the whole requests answered first
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        answers.append([json.loads(line) for line in data.splitlines()])
    figure = sampler.stop()
    answered = sum(1 for a in answers if a and a[0].get("id") == 1)
    figures(kind="fault survived", what="200 TCP connections half-closed after a whole "
            "request or half of one", inputs=200, outcome=f"{answered} whole requests "
            "answered, every connection closed by the node", **figure)
    assert answered == 100
    assert all(a[0]["error"]["code"] == p.UNKNOWN_TOKEN for a in answers[1::2])
    assert all(not a or a[0]["error"]["code"] == p.PARSE_ERROR for a in answers[::2])
    assert figure["threads_peak"] <= figure["threads_before"] + 4, figure


# -- 6. interconnect callbacks ----------------------------------------------------------------


def test_interconnect_to_a_host_not_allowed_is_refused(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record) -> None:
    node = start_node(spawn, tmp_path)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    status_port = port_of(node("serve", addr="http://127.0.0.1:0"))
    client = Raw(port)
    raws.append(client)
    targets = [f"{scheme}://{host}:{where}" for scheme in ("tcp", "http")
               for host, where in (("192.0.2.1", 9), ("10.1.2.3", 80), ("169.254.169.254", 80),
                                   ("0.0.0.0", status_port), ("[::ffff:169.254.169.254]", 80))]
    scheme_ok = {"tcp": port, "http": status_port}
    for target in targets:
        scheme = target.split(":", 1)[0]
        peer = client if scheme == "tcp" else None
        params = {"addr": target, "token": "t" * 43, "ttl": 60}
        started = time.monotonic()
        if peer is not None:
            peer.send(request("interconnect", params))
            error = peer.line()["error"]
        else:
            error = http_post(scheme_ok["http"], request("interconnect", params))["error"]
        assert time.monotonic() - started < 3, target  # refused, not tried
        assert error["code"] == p.NOT_ALLOWED, (target, error)
        assert error["data"]["setting"] == "callback_hosts", (target, error)
    status = http_get_json(status_port, "/status")
    figures(kind="bad input", what="interconnect asking for a callback to non-loopback "
            "hosts (TEST-NET, private, metadata, 0.0.0.0, v4-mapped v6), TCP and HTTP",
            inputs=len(targets), outcome=f"{len(targets)} refused with Not allowed (-32010)")
    assert status["sessions"] == []
    assert "Traceback" not in "".join(node.stderr)


# -- 7. lines shaped like responses -----------------------------------------------------------


def test_10000_response_shaped_lines_give_a_few_log_lines(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record,
        wait_for: Callable[..., Any]) -> None:
    node = start_node(spawn, tmp_path)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    client = Raw(port)
    raws.append(client)
    kinds = [{"jsonrpc": "2.0", "error": {"code": 1, "message": "x" * 100}, "id": None},
             {"jsonrpc": "2.0", "result": "ok", "id": 12345},
             {"jsonrpc": "2.0", "error": {"code": -32000, "message": "y"}, "id": "nobody"},
             [{"jsonrpc": "2.0", "result": 1, "id": 7}, {"jsonrpc": "2.0", "error": {
                 "code": 2, "message": "z"}, "id": None}]]
    lines = 10_000
    payload = b"".join(json.dumps(kinds[i % len(kinds)]).encode() + b"\n" for i in range(lines))
    client.sock.sendall(payload)
    client.send(request("get_nowait", {"token": "x" * 43}, "after"))
    assert client.line()["id"] == "after"  # answered in order: every line was read
    wait_for(lambda: any("without id" in line for line in node.stderr), what="the first line")
    logged = "".join(node.stderr)
    figures(kind="bad input", what="10,000 response-shaped lines (errors without id, "
            "unknown ids, batches of responses) on one TCP connection", inputs=lines,
            bytes_in=len(payload), log_lines=len(node.stderr), log_bytes=len(logged))
    assert len(node.stderr) <= 5, logged
    assert len(logged) < 5000


def test_10000_messages_over_the_hop_limit_give_a_few_log_lines(
        spawn: Callable[..., Any], tmp_path: Path, raws: list[Raw], figures: Record) -> None:
    node = start_node(spawn, tmp_path)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    status_port = port_of(node("serve", addr="http://127.0.0.1:0"))
    node("collect", pattern="loop:*")
    client = Raw(port)
    raws.append(client)
    token = client.call("connect_oneway", ttl=600)
    inputs = 10_000
    for start in range(0, inputs, 1000):
        batch = [["loop:x", [k], {}, {"hops": 40}] for k in range(start, start + 1000)]
        assert client.call("send_messages", token=token, messages=batch) == "ok"
    lost = http_get_json(status_port, "/status")["lost"]["reasons"].get("hop limit", 0)
    node("connections")  # a round trip: what the node logged meanwhile is written
    figures(kind="bad input", what="10,000 messages with extras hops 40 (over hop_limit 32)",
            inputs=inputs, reported_lost=lost, log_lines=len(node.stderr))
    assert lost == inputs  # counted: reported, not silent
    assert len(node.stderr) <= 5, f"{len(node.stderr)} log lines"


# -- 8. a refused oversize HTTP body ----------------------------------------------------------


def test_a_refused_64mib_http_body_is_not_read_to_the_end(
        spawn: Callable[..., Any], tmp_path: Path, figures: Record) -> None:
    node = start_node(spawn, tmp_path)  # max_size 1 MiB
    port = port_of(node("serve", addr="http://127.0.0.1:0"))
    size = 64 * MIB
    sent = 0
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        chunk = b" " * 65536
        try:
            while sent < size:
                sent += sock.send(chunk)
        except OSError:  # reset or broken pipe: the node closed; a timeout: it stopped reading
            pass
        closed_after = time.monotonic() - started
    figures(kind="bad input", what="an HTTP POST announcing a 64 MiB body (max_size 1 MiB)",
            inputs=1, bytes_in=sent, outcome=f"closed after {sent / MIB:.1f} MiB, "
            f"{closed_after:.1f} s")
    assert sent < 16 * MIB, f"the node read {sent} bytes of a refused body"
    assert closed_after < 6.0


# -- 9. a peer SIGKILLed mid-stream ---------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "style"), [("tcp", "oneway"), ("tcp", "interconnect"),
                                               ("http", "oneway")])
def test_a_peer_killed_mid_stream_loses_nothing_without_a_report(
        bus_factory: Callable[..., Bus], tmp_path: Path, figures: Record, scheme: str,
        style: str, wait_for: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        counts = kill_mid_stream(bus_factory, tmp_path, scheme, style, wait_for)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # twitter after the link failed and before it is removed: not handed over, not
    # counted, one log line each (a known gap, docs/delivery.md; how many is a race)
    unforwarded = sum(m.startswith("could not forward job:n") for m in logged)
    figures(kind="fault survived", what=f"peer SIGKILLed mid-stream ({style} over {scheme})",
            log_lines=len(logged), logged_not_counted=unforwarded, **counts)
    assert counts["lost_unreported"] == 0, counts
    assert counts["delivered"] >= 3000 and counts["reported_lost"] > 0, counts
    assert len(logged) - unforwarded <= 5, logged
    if style == "oneway":
        assert counts["refused_at_call"] == 1, "a send after the peer died did not raise"


def test_flush_after_a_peer_killed_mid_stream_says_false(
        bus_factory: Callable[..., Bus], tmp_path: Path, wait_for: Callable[..., Any]) -> None:
    counts = kill_mid_stream(bus_factory, tmp_path, "tcp", "oneway", wait_for)
    assert counts["reported_lost"] > 0
    assert counts["flush"] is False  # the first flush after the losses says so
    assert counts["flush_later"] is True  # once: nothing was lost since that flush


def test_status_of_a_sender_whose_peer_was_killed_shows_the_loss(
        spawn: Callable[..., Any], wait_for: Callable[..., Any]) -> None:
    sender, peer = spawn(), spawn()
    status_port = port_of(sender("serve", addr="http://127.0.0.1:0"))
    sender("oneway", addr=peer("serve", addr="tcp://127.0.0.1:0"))
    connections = http_get_json(status_port, "/status")["connections"]
    assert [c["style"] for c in connections] == ["oneway"]
    sender("stream", id="job:x")  # send_message on a thread, as fast as it returns
    peer.kill()
    wait_for(lambda: http_get_json(status_port, "/status")["lost"]["total"],
             what="the loss in the sender's /status")


def test_send_message_takes_a_message_up_to_max_size(spawn: Callable[..., Any]) -> None:
    sender, peer = spawn(), spawn()
    sender("oneway", addr=peer("serve", addr="tcp://127.0.0.1:0"))
    peer("collect", pattern="big:*")
    sender("send", id="big:x", args=["x" * 100_000])  # a tenth of max_size
    assert sender("flush") is True
    assert len(peer("drain", pattern="big:*")) == 1


def test_a_batch_in_flight_when_the_peer_closes_the_interconnection_is_counted(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any], figures: Record) -> None:
    # a peer that takes interconnect, reads the first batch, never acknowledges it and
    # closes the interconnection (close_connection with the session's token) instead
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(WAIT)

    def peer() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                call = json.loads(line)
                if call.get("method") == p.METHOD_INTERCONNECT:
                    token = call["params"]["token"]
                    conn.sendall(json.dumps({"jsonrpc": "2.0", "result": "t" * 43,
                                             "id": call["id"]}).encode() + b"\n")
                elif call.get("method") == p.METHOD_SEND_MESSAGES:
                    conn.sendall(json.dumps(request(p.METHOD_CLOSE_CONNECTION,
                                                    {"token": token}, "bye")).encode() + b"\n")

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    bus = bus_factory()
    connection = bus.transport("tcp").interconnect(f"tcp://127.0.0.1:{server.getsockname()[1]}", 600)
    for i in range(100):
        bus.twitter("job:n", i)
    stats = stats_for(bus)
    try:
        wait_for(lambda: getattr(connection, "closed", False), what="the interconnection closed")
        wait_for(lambda: sum(stats.losses().values()) >= stats.totals()["messages_out"],
                 timeout=2, what="every message not acknowledged counted")
    finally:
        figures(kind="fault survived", what="the peer closes the interconnection while a "
                "batch is unacknowledged", sent=stats.totals()["messages_out"], delivered=0,
                reported_lost=sum(stats.losses().values()),
                lost_unreported=stats.totals()["messages_out"] - sum(stats.losses().values()))
        server.close()

"""What is particular to HTTP: the server's HTTP handling and the keep-alive client.
(The protocol itself is tested over both transports in tests/remote.)"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import re
import socket
import subprocess
import threading
import time
from typing import Any

import berrymq_jsonrpc.monitor
import pytest
from helpers import Buses, required_program, send_body, serve, wait_for

import berrymq
from berrymq.bus import Bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes or a full answer came."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


CALL = b'{"jsonrpc":"2.0","method":"connect_oneway","id":1}'


def post(body: bytes, headers: str = "Content-Type: application/json\r\n",
         version: str = "HTTP/1.1", method: str = "POST", path: str = "/",
         host: str = "127.0.0.1") -> bytes:
    return (f"{method} {path} {version}\r\nHost: {host}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.parametrize(("request_", "status"), [
    (post(CALL, method="PUT"), b"405"),
    (post(CALL, method="DELETE"), b"405"),
    (post(CALL, method="GET", host="x"), b"421"),  # GET / is the status page: Host x is not the node
    (post(CALL, host="x"), b"421"),  # nor for JSON-RPC (DNS rebinding)
    # an absolute-form target's authority stands for Host (RFC 9112, 3.2.2): checked too
    (post(CALL, path="http://evil.example/"), b"421"),
    (post(CALL, method="GET", path="http://evil.example/status"), b"421"),
    (post(CALL, path="http://127.0.0.1@evil.example:80/"), b"421"),
    # two Host headers: which one a check read would vary (RFC 9112, 3.2: 400)
    (post(CALL, headers="Host: evil.example\r\nContent-Type: application/json\r\n"), b"400"),
    (post(CALL, host="evil.example", headers="Host: 127.0.0.1\r\n"), b"400"),
    (post(CALL, path="/rpc"), b"404"),
    (post(CALL, headers="Content-Type: text/plain\r\n"), b"415"),
    # a type a web page may POST without a preflight
    (post(CALL, headers="Content-Type: application/x-www-form-urlencoded\r\n"), b"415"),
    (b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n\r\n", b"411"),
    (b"GARBAGE\r\n\r\n", b"400"),
])
def test_http_errors(buses: Buses, request_: bytes, status: bytes) -> None:
    _, port = serve(buses, "http")
    answer = exchange(port, request_)
    assert answer.split(b" ", 2)[1] == status, answer
    assert b"Connection: close" in answer
    if request_.count(b"Host:") > 1:
        assert answer.endswith(b"more than one Host header\n"), answer


@pytest.mark.parametrize("cut_short", [
    post(CALL)[:-10],  # the body shorter than its Content-Length
    post(CALL).split(b"\r\n\r\n")[0] + b"\r\n",  # the head without its blank line
    b"GET /\r\n",  # a request line alone
    post(CALL) + post(CALL)[:30],  # a whole request, then part of the next
])
def test_a_request_cut_short_by_the_end_of_input_is_answered_400(
        buses: Buses, cut_short: bytes) -> None:
    """The client half-closed its side and waits for an answer: it gets one naming what
    happened (after the answers to the whole requests before it)."""
    _, port = serve(buses, "http")
    answer = exchange(port, cut_short)
    whole = cut_short.count(b"}")  # CALL ends with "}": one per whole request
    assert answer.count(b"HTTP/1.1 200 OK") == whole, answer
    assert b"HTTP/1.1 400 " in answer and answer.endswith(
        b"malformed HTTP request: the client's input ended in the middle of the request\n"), answer


def test_a_request_not_whole_within_read_timeout_is_answered_408(buses: Buses) -> None:
    _, port = serve(buses, "http", read_timeout=0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post(CALL)[:-10])  # and nothing more: the rest never comes
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(
        b"the request did not all come within read_timeout (0.3s)\n"), answer


def test_a_get_of_a_path_without_a_page_is_404_and_other_methods_405(buses: Buses) -> None:
    _, port = serve(buses, "http")
    missing = exchange(port, b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert missing.startswith(b"HTTP/1.1 404 ") and b"Allow" not in missing, missing
    assert b"/status" in missing
    put = exchange(port, post(CALL, method="PUT"))
    assert put.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD, POST\r\n" in put, put
    for path in ("/JSON", "/jsonrpc"):  # the original's JSON-RPC paths: POST only
        get = exchange(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert get.startswith(b"HTTP/1.1 405 ") and b"Allow: POST\r\n" in get, get


def head_and_body(answer: bytes) -> tuple[dict[bytes, bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    return {k.lower(): v for k, v in fields.items()}, body


@pytest.mark.parametrize("path", ["/", "/status", "/metrics", "/network", "/nothing"])
def test_head_is_answered_as_get_without_the_body_on_a_kept_connection(
        buses: Buses, path: str) -> None:
    """``curl -I`` and ``wget --spider`` health checks: HEAD has GET's status and
    headers (its Content-Length among them) and no body, and the connection serves the
    next request."""
    _, port = serve(buses, "http")
    get = exchange(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    get_fields, get_body = head_and_body(get)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        reader = sock.makefile("rb")
        status = reader.readline()
        assert status.split()[1] == get.split()[1], (status, get[:40])
        fields = {}
        while (line := reader.readline()) != b"\r\n":
            name, value = line.rstrip(b"\r\n").split(b": ", 1)
            fields[name.lower()] = value
        assert fields[b"content-type"] == get_fields[b"content-type"]
        if path != "/nothing":  # (a 404 closes the connection, as for GET)
            # /status and /metrics change between the two requests; the page does not
            assert int(fields[b"content-length"]) > 0
            if path == "/":
                assert int(fields[b"content-length"]) == len(get_body)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            # no body came after the HEAD's headers: the next line is the GET's status
            assert reader.readline() == status
        else:
            assert reader.read() == b""


def test_keep_alive_serves_many_requests_on_one_connection(buses: Buses) -> None:
    _, port = serve(buses, "http")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for i in range(50):
            body = json.dumps({"jsonrpc": "2.0", "method": "connect_oneway", "id": i}).encode()
            sock.sendall(post(body))
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert json.loads(reader.read(length))["id"] == i
        reader.close()


def test_notification_gets_204_and_http10_closes(buses: Buses) -> None:
    _, port = serve(buses, "http")
    note = b'{"jsonrpc":"2.0","method":"send_message","params":{"token":"x"}}'
    answer = exchange(port, post(note, version="HTTP/1.0"))
    assert answer.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Connection: close" in answer and b"Content-Length" not in answer


def test_expect_100_continue_like_curl(buses: Buses) -> None:
    _, port = serve(buses, "http")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = post(b"", headers="Content-Type: application/json\r\nExpect: 100-continue\r\n")
        sock.sendall(head.replace(b"Length: 0", f"Length: {len(CALL)}".encode()))
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(CALL)
        assert reader.readline().startswith(b"HTTP/1.1 200 OK")
        reader.close()


def test_stale_keep_alive_connection_is_replaced(buses: Buses) -> None:
    server, port = serve(buses, "http", read_timeout=0.3)
    client = buses()
    received = berrymq.Queue("s:*", bus=server)
    connection = client.transport("http").connect_oneway(f"http://127.0.0.1:{port}", 60)
    connection.send(berrymq.Message("s:one"))
    assert received.get(timeout=10).id == "s:one"
    # the server drops the idle connection; the client's next request opens a new one
    http_server = server.transport("http")._servers[0]  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while http_server.connections:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    connection.send(berrymq.Message("s:two"))
    assert received.get(timeout=10).id == "s:two"


def test_interconnect_over_http_needs_a_server_of_ones_own(buses: Buses) -> None:
    _, port = serve(buses, "http")
    client = buses()
    with pytest.raises(berrymq.ConnectionClosed, match="init_connection"):
        client.transport("http").interconnect(f"http://127.0.0.1:{port}", 60)


def test_disabled_plugin_is_named(buses: Buses) -> None:
    bus = buses.keep(Bus(plugins=PluginHost(Settings(disable=("jsonrpc-http",)))))
    with pytest.raises(berrymq.PluginNotAvailable, match="jsonrpc-http") as info:
        bus.transport("http")
    assert "enable" in str(info.value)
    missing = buses.keep(Bus(plugins=PluginHost(Settings(), entry_points=False)))
    with pytest.raises(berrymq.PluginNotAvailable, match=r"pip install \./plugins/berrymq-jsonrpc \./plugins/berrymq-jsonrpc-http"):
        missing.transport("http")


def answers(port: int, data: bytes, count: int) -> list[tuple[bytes, bytes]]:
    """Send raw bytes on one connection and read ``count`` answers: (status line, body)."""
    got = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        for _ in range(count):
            status = reader.readline().rstrip()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            got.append((status, reader.read(length)))
        reader.close()
    return got


def test_a_head_over_16_kib_is_refused_431(buses: Buses) -> None:
    _, port = serve(buses, "http")
    answer = exchange(port, post(CALL, headers="Content-Type: application/json\r\n"
                                 + "X-Pad: " + "a" * 17_000 + "\r\n"))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer
    assert b"Connection: close" in answer
    assert answer.endswith(b"the request line and headers are over 16384 bytes\n")


def test_pipelined_requests_are_answered_in_order(buses: Buses) -> None:
    _, port = serve(buses, "http")
    calls = [json.dumps({"jsonrpc": "2.0", "method": "connect_oneway", "id": i}).encode()
             for i in range(5)]
    got = answers(port, b"".join(post(call) for call in calls), 5)
    assert [status for status, _ in got] == [b"HTTP/1.1 200 OK"] * 5
    assert [json.loads(body)["id"] for _, body in got] == list(range(5))


def test_an_http11_request_without_host_is_served(buses: Buses) -> None:
    # RFC 9112 asks for a 400; berryMQ has always served JSON-RPC clients that leave it out
    _, port = serve(buses, "http")
    request = (b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(CALL) + CALL)
    [(status, body)] = answers(port, request, 1)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["id"] == 1


def test_a_json_line_sent_to_the_http_port_gets_400(buses: Buses) -> None:
    _, port = serve(buses, "http")
    answer = exchange(port, CALL + b"\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert answer.endswith(b"malformed HTTP request: Invalid method encountered\n")


def test_the_client_names_a_server_that_does_not_speak_http(buses: Buses) -> None:
    _, tcp_port = serve(buses, "tcp")
    client = buses()
    with pytest.raises(berrymq.ConnectionClosed, match="does not speak HTTP"):
        client.transport("http").connect_oneway(f"http://127.0.0.1:{tcp_port}", 60)


def read_request(conn: socket.socket) -> Any:
    """What a fake server here reads of the client's POST: its JSON-RPC body, parsed."""
    reader = conn.makefile("rb")
    length = 0
    while (line := reader.readline()) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(reader.read(length))


def test_the_client_reads_an_answer_that_ends_with_its_connection(buses: Buses) -> None:
    # an HTTP/1.0 server that gives no Content-Length: the answer is all it sends
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            request = read_request(conn)
            requests.append(request["method"].encode())
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
                         + json.dumps({"jsonrpc": "2.0", "result": "t0", "id": request["id"]})
                         .encode())

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    client = buses()
    with listener:
        connection = client.transport("http").connect_oneway(
            f"http://127.0.0.1:{listener.getsockname()[1]}", 60)
        thread.join(10)
    assert requests == [b"connect_oneway"]
    assert connection.token == "t0"


def test_a_request_asking_to_upgrade_is_served_then_the_connection_closes(buses: Buses) -> None:
    # berryMQ speaks HTTP/1.1 only: the request is answered as a plain one, body and all
    # (llhttp hands the body back as the new protocol's bytes: it was lost, and answered
    # as a Parse error, as curl --http2 on http:// showed), and what follows it (here an
    # HTTP/2 preface) is not read as another request
    _, port = serve(buses, "http")
    answer = exchange(port, post(CALL, headers="Content-Type: application/json\r\n"
                                 "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                 "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")
                      + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1
    result = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert type(result.get("result")) is str and result["id"] == 1, result  # a token


def test_a_client_that_does_not_read_its_answers_is_read_no_further_then_closed(
        buses: Buses) -> None:
    _, port = serve(buses, "http", read_timeout=0.5)
    chunk = post(b'{"jsonrpc":"2.0","method":"send_message","params":{"token":"x"}}') * 500
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # the node stops reading once its answers wait unread (beyond the socket
        # buffers): a send blocks (the 2 s timeout), or finds the connection closed
        deadline = time.monotonic() + 60
        with pytest.raises(OSError):
            while time.monotonic() < deadline:
                sock.sendall(chunk)
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):  # the answers written, then the end: the node closed it
                pass


def chunked(body: bytes, size: int) -> bytes:
    """A POST whose body is sent in chunks of ``size`` bytes."""
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n")


def test_a_chunked_body_is_served(buses: Buses) -> None:
    # e.g. Node's http.request written to without a Content-Length
    _, port = serve(buses, "http")
    [(status, body), (again, _)] = answers(port, chunked(CALL, 7) + post(CALL), 2)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["id"] == 1 and json.loads(body)["result"]
    assert again == b"HTTP/1.1 200 OK"  # and the connection serves on


def test_a_chunked_body_over_max_size_is_refused_413(buses: Buses) -> None:
    _, port = serve(buses, "http", max_size=1024)
    call = json.dumps({"jsonrpc": "2.0", "method": "connect_oneway", "id": 1,
                       "params": {"pad": "x" * 2000}}).encode()
    answer = exchange(port, chunked(call, 300))
    # (the reason phrase is Python's: "Request Entity Too Large" before 3.13, then RFC
    # 9110's "Content Too Large")
    assert re.match(rb"HTTP/1\.1 413 (Request Entity|Content) Too Large\r\n", answer), answer
    assert b"Connection: close" in answer
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == -32003 and error["data"] == {"limit": 1024, "setting": "max_size"}


def test_an_http10_client_asking_keep_alive_keeps_its_connection(buses: Buses) -> None:
    _, port = serve(buses, "http")
    request = post(CALL, version="HTTP/1.0",
                   headers="Content-Type: application/json\r\nConnection: keep-alive\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for _ in range(2):
            sock.sendall(request)
            assert reader.readline() == b"HTTP/1.1 200 OK\r\n"
            head = []
            while (line := reader.readline()) != b"\r\n":
                head.append(line.strip())
            assert b"Connection: keep-alive" in head
            length = next(int(h.split(b":")[1]) for h in head if h.startswith(b"Content-Length"))
            assert json.loads(reader.read(length))["id"] == 1
        reader.close()


def test_a_transfer_coding_other_than_chunked_gets_501(buses: Buses) -> None:
    """llhttp decodes the chunks of "gzip, chunked" and would pass the gzip on as if it
    were the body (answered -32700); a coding the node does not understand is 501."""
    _, port = serve(buses, "http")
    answer = exchange(port, chunked(CALL, 7).replace(b"chunked", b"gzip, chunked", 1))
    assert answer.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), answer
    assert b"only the chunked transfer coding is served" in answer
    assert b"Connection: close" in answer


@pytest.mark.parametrize("target", ["http://127.0.0.1/", "HTTP://127.0.0.1:8000",
                                    "http://localhost/jsonrpc", "http://127.0.0.1?x=1",
                                    "http://evil.example@127.0.0.1/"])
def test_a_request_target_in_absolute_form_is_served(buses: Buses, target: str) -> None:
    """HTTP/1.1 servers must accept the absolute form (RFC 9112, 3.2.2)."""
    _, port = serve(buses, "http")
    answer = exchange(port, post(CALL, path=target))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["id"] == 1


def test_a_malformed_chunked_body_gets_400(buses: Buses) -> None:
    _, port = serve(buses, "http")
    answer = exchange(port, chunked(CALL, 7).replace(b"7\r\n", b"zz\r\n", 1))
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert b"malformed HTTP request: " in answer and b"Connection: close" in answer


def test_garbage_after_a_request_costs_that_request_nothing(buses: Buses) -> None:
    _, port = serve(buses, "http")
    [(first, body), (second, text)] = answers(port, post(CALL) + b"GARBAGE / HTTP/1.1\r\n\r\n", 2)
    assert first == b"HTTP/1.1 200 OK" and json.loads(body)["id"] == 1
    assert second == b"HTTP/1.1 400 Bad Request"
    assert text.startswith(b"malformed HTTP request: ")


def test_the_client_keeps_its_connection_alive(buses: Buses) -> None:
    server, port = serve(buses, "http")
    connection = buses().transport("http").connect_oneway(f"http://127.0.0.1:{port}", 60)
    http_server = server.transport("http")._servers[0]  # type: ignore[attr-defined]

    def peers() -> set[tuple[str, int]]:
        return {writer.get_extra_info("peername")[:2] for writer in http_server.connections}

    first = peers()
    assert len(first) == 1
    for i in range(5):  # each flush is one request and its answer
        connection.send(berrymq.Message("s:x", (i,)))
        assert connection.flush(10)
    assert peers() == first


def test_a_slow_status_does_not_hold_up_json_rpc(buses: Buses,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = serve(buses, "http")
    release = threading.Event()
    snapshot = berrymq_jsonrpc.monitor.status_snapshot

    def slow_snapshot(bus: berrymq.Bus) -> dict[str, object]:
        release.wait(60)  # a node whose status takes long to make
        return snapshot(bus)

    monkeypatch.setattr(berrymq_jsonrpc.monitor, "status_snapshot", slow_snapshot)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as status:
        status.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:  # answered while the status is being made (on the loop, it would wait 60 s)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as call:
                call.sendall(post(CALL))
                assert call.recv(100).startswith(b"HTTP/1.1 200 OK")
        finally:
            release.set()
        assert status.recv(100).startswith(b"HTTP/1.1 200 OK")


def test_status_requests_at_once_share_a_build_and_leave_the_pool_to_asks(
        buses: Buses, monkeypatch: pytest.MonkeyPatch) -> None:
    # each GET built its own status on the pool that ask runs on: 48 scrapers of a large
    # node made an ask wait 9 s for a thread; 16 kept 16 threads building
    _, port = serve(buses, "http")
    release = threading.Event()
    builds: list[int] = []
    snapshot = berrymq_jsonrpc.monitor.status_snapshot

    def slow_snapshot(bus: berrymq.Bus) -> dict[str, object]:
        builds.append(1)
        release.wait(60)
        return snapshot(bus)

    monkeypatch.setattr(berrymq_jsonrpc.monitor, "status_snapshot", slow_snapshot)
    scrapers = [http.client.HTTPConnection("127.0.0.1", port, timeout=20) for _ in range(40)]
    try:
        for scraper in scrapers:
            scraper.request("GET", "/status", headers={"Host": "127.0.0.1"})
        wait_for(lambda: builds, 10, "a status build to start")
        ask = b'{"jsonrpc":"2.0","method":"ask","params":{"identifier":"none:x",' \
              b'"timeout":1},"id":2}'
        with socket.create_connection(("127.0.0.1", port), timeout=10) as call:
            call.sendall(post(ask))
            assert call.recv(100).startswith(b"HTTP/1.1 200 OK")
        release.set()
        for scraper in scrapers:
            answer = scraper.getresponse()
            assert answer.status == 200 and "server" in json.loads(answer.read())
    finally:
        release.set()
        for scraper in scrapers:
            scraper.close()
    assert len(builds) <= 2  # the one under way when they came, and the next for them all


def test_a_status_holding_a_lone_surrogate_is_served(buses: Buses,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # encoded strictly, one such name (a 1.0 peer's call-back path) made every GET of
    # /status end without an answer
    _, port = serve(buses, "http")
    snapshot = berrymq_jsonrpc.monitor.status_snapshot

    def named(bus: berrymq.Bus) -> dict[str, Any]:
        status = snapshot(bus)
        status["server"]["bus"] = "a\ud800"
        return status

    monkeypatch.setattr(berrymq_jsonrpc.monitor, "status_snapshot", named)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/status", headers={"Host": "127.0.0.1"})
        answer = connection.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["server"]["bus"] == "a\ud800"
    finally:
        connection.close()


NODE_STREAMED_POST = """
const http = require('http');
const req = http.request({host: '127.0.0.1', port: Number(process.argv[1]), method: 'POST',
                          path: '/', headers: {'Content-Type': 'application/json'}}, res => {
  let data = '';
  res.on('data', chunk => data += chunk);
  res.on('end', () => console.log(res.statusCode, data));
});
// written in two parts with no Content-Length: Node sends the body in chunks
req.write('{"jsonrpc":"2.0",');
req.write('"method":"connect_oneway","id":7}');
req.end();
"""


def test_nodes_http_request_streaming_a_body_is_served(buses: Buses) -> None:
    node = required_program("node", "nodejs")
    _, port = serve(buses, "http")
    done = subprocess.run([node, "-e", NODE_STREAMED_POST, str(port)], capture_output=True,
                          text=True, timeout=30, check=True)
    status, body = done.stdout.strip().split(" ", 1)
    assert status == "200", done.stdout
    assert json.loads(body)["id"] == 7 and json.loads(body)["result"]


def test_the_client_reads_no_answer_over_4x_max_size(buses: Buses) -> None:
    # a server that answers with 1 MB: the client stops at 4,000 bytes (max_size 1,000),
    # the most a node answers, and 16 KiB for a head
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_hugely() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000\r\n\r\n" + b" " * 1_000_000)

    thread = threading.Thread(target=answer_hugely, daemon=True)
    thread.start()
    client = buses(jsonrpc_http={"max_size": 1024})
    with listener, pytest.raises(berrymq.TransportError, match=r"over 20480 bytes \(4x"):
        client.transport("http").connect_oneway(
            f"http://127.0.0.1:{listener.getsockname()[1]}", 60)
    thread.join(10)
    assert not thread.is_alive()


def test_a_node_of_the_original_berrymq_is_named_as_such(buses: Buses) -> None:
    """berryMQ's client speaks 2.0 only; the original 0.3's server answers as text/xml
    (xmlrpc.server underneath), which the client said was an answer "without JSON"."""
    body = b'{"result": "ok", "error": null, "id": null}'

    class Original(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            send_body(self, body, "text/xml")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Original)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(berrymq.BerryMQError, match=r"as text/xml: is it a node of the "
                                                       r"original berryMQ 0\.3"):
            buses().transport("http").connect_oneway(
                f"http://127.0.0.1:{server.server_address[1]}", 10)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("head", "body", "says"), [
    # a result with a status no node answers a result with: it was taken as success
    (b"HTTP/1.0 500 Internal Server Error", None, "answered HTTP 500 with a result: "),
    # a redirect: the error named malformed JSON and not the status
    (b"HTTP/1.0 302 Found\r\nLocation: http://example.invalid/", b"moved",
     "answered HTTP 302 with malformed JSON: "),
])
def test_the_client_names_the_status_of_an_answer_no_node_gives(
        buses: Buses, head: bytes, body: bytes | None, says: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            request = read_request(conn)
            answer = body if body is not None else json.dumps(
                {"jsonrpc": "2.0", "result": "t0", "id": request["id"]}).encode()
            conn.sendall(head + b"\r\nContent-Type: application/json\r\n\r\n" + answer)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    client = buses()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with listener, pytest.raises(berrymq.TransportError) as failure:
        client.transport("http").connect_oneway(url, 60)
    thread.join(10)
    assert str(failure.value).startswith(f"{url} {says}"), failure.value

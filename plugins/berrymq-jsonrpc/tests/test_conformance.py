"""Raw JSON-RPC 2.0 against real berryMQ servers, with clients written from the
protocol alone (probe_tools.Raw: ``http.client`` for HTTP, a bare socket for TCP). Every case of issue 3
points 3 and 4 on the wire, the application error codes and the safety limits."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from probe_tools import TOKEN, Raw

import berrymq
from berrymq.bus import Bus

SCHEMES = ["tcp", "http"]


@pytest.fixture
def raw() -> Iterator[Callable[[str, int], Raw]]:
    clients: list[Raw] = []

    def connect(scheme: str, port: int) -> Raw:
        client = Raw(port, scheme=scheme)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


Setup = tuple[Bus, Raw]


@pytest.fixture(params=SCHEMES)
def node(request: pytest.FixtureRequest, server: Callable[..., tuple[Bus, int]],
         raw: Callable[[str, int], Raw]) -> Setup:
    bus, port = server(request.param)
    return bus, raw(request.param, port)


INVALID = {"code": -32600, "message": "Invalid Request"}


# -- issue 3 point 3 and 4 on the wire ---------------------------------------------------------


def test_parse_error(node: Setup) -> None:
    _, rpc = node
    assert rpc.exchange('{"jsonrpc": "2.0", "method"') == {
        "jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
    assert rpc.exchange(b'{"jsonrpc":"2.0","method":"x\xff","id":1}')["error"]["code"] == -32700


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(node: Setup, number: str) -> None:
    _, rpc = node
    text = '{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":' + number + '},"id":1}'
    assert rpc.exchange(text)["error"]["code"] == -32700


@pytest.mark.parametrize("text", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"a":' * 50_000 + b"1" + b"}" * 50_000],
                         ids=["arrays", "objects"])
def test_deeply_nested_json_is_a_parse_error(node: Setup, text: bytes) -> None:
    _, rpc = node
    error = {"code": -32700, "message": "Parse error", "data": {
        "limit": 128, "detail": "the text nests arrays and objects more than 128 levels deep, "
                                "the limit"}}
    assert rpc.exchange(text) == {"jsonrpc": "2.0", "error": error, "id": None}
    assert TOKEN.fullmatch(rpc.result("connect_oneway"))  # and the connection goes on


def test_an_integer_of_more_digits_than_python_reads_is_a_parse_error_naming_the_limit(
        node: Setup) -> None:
    """Valid JSON, which Python refuses to read (4,300 digits by default): the answer
    said only 'Parse error', with nothing to tell the client what to change."""
    _, rpc = node
    text = '{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":' + "1" * 5000 + '},"id":1}'
    error = {"code": -32700, "message": "Parse error", "data": {
        "limit": 4300, "detail": "the text holds an integer of more than 4300 digits, the limit"}}
    assert rpc.exchange(text) == {"jsonrpc": "2.0", "error": error, "id": None}
    assert TOKEN.fullmatch(rpc.result("connect_oneway"))  # and the connection goes on


NOT_AN_OBJECT = "a request is a JSON object (a batch is an array of them, not nested)"
NO_VERSION = ("the jsonrpc member must be the string 2.0, or be absent in a JSON-RPC 1.0 "
              "request (which a batch cannot hold)")
NO_METHOD = "the method member must be a string"


def invalid(problem: str) -> dict[str, Any]:
    """An Invalid Request answer, whose ``data`` says what is wrong."""
    return {"jsonrpc": "2.0", "error": {**INVALID, "data": problem}, "id": None}


@pytest.mark.parametrize(("request_", "problem"), [
    ({"jsonrpc": "2.0", "id": 1}, NO_METHOD),
    ({"jsonrpc": "1.0", "method": "connect_oneway", "id": 1}, NO_VERSION),
    ({"jsonrpc": 2.0, "method": "connect_oneway", "id": 1}, NO_VERSION),
    ({"jsonrpc": "2.0", "method": 5, "id": 1}, NO_METHOD),
    ({"jsonrpc": "2.0", "method": "get", "params": 3},
     "the params member must be an array or an object"),
    ({"jsonrpc": "2.0", "method": "get", "id": True},
     "the id member must be a string, a number or null"),
    (42, NOT_AN_OBJECT), ("text", NOT_AN_OBJECT),
    ({"jsonrpc": "2.0", "method": "connect_oneway", "params": "ttl", "id": 1},
     "the params member must be an array or an object"),
    ({"jsonrpc": "2.0", "method": "connect_oneway", "id": {}},
     "the id member must be a string, a number or null"),
    ({"jsonrpc": "2.0", "method": "connect_oneway", "id": 1, "extra": 1},
     "a request has no members but jsonrpc, method, params and id"),
    ({"jsonrpc": "2.0", "method": [], "id": 1}, NO_METHOD),
    ({"jsonrpc": "2.0", "method": {}, "id": 1}, NO_METHOD),
    (None, NOT_AN_OBJECT),
])
def test_invalid_requests_say_what_is_wrong(node: Setup, request_: Any, problem: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """An Invalid Request said nothing more: a client with "jsonrpc": "1.0" could not tell
    what to change (data names the problem, in our own words)."""
    _, rpc = node
    with caplog.at_level(logging.WARNING):
        assert rpc.exchange(json.dumps(request_)) == invalid(problem)
    assert not [r for r in caplog.records if r.exc_info], caplog.text  # no traceback either


def test_empty_batch_is_one_invalid_request(node: Setup) -> None:
    _, rpc = node
    assert rpc.exchange("[]") == invalid("an empty batch: send at least one request")


def test_batch_of_three_non_requests_gives_three_errors(node: Setup) -> None:
    _, rpc = node
    assert rpc.exchange("[1,2,3]") == [invalid(NOT_AN_OBJECT)] * 3


@pytest.mark.parametrize("waits", ["ask", "get"])
def test_a_batch_nested_in_a_batch_is_an_invalid_request_even_when_it_would_wait(
        node: Setup, waits: str) -> None:
    # A member that may wait (ask, a blocking get) once made the whole inner batch run,
    # answered as a nested array no client reads: its get took a message for nobody.
    bus, rpc = node
    asked: list[object] = []
    bus.subscribe("price:quote", asked.append, weak=False)
    token = rpc.result("connect_via_queue", {"identifier": "nb:*", "ttl": 60})
    bus.twitter("nb:m", 0)
    inner = ({"jsonrpc": "2.0", "method": "ask", "params": {"identifier": "price:quote"}, "id": 1}
             if waits == "ask" else
             {"jsonrpc": "2.0", "method": "get", "params": {"token": token, "timeout": 1}, "id": 1})
    assert rpc.exchange(json.dumps([[inner]])) == [invalid(NOT_AN_OBJECT)]
    assert rpc.exchange(json.dumps([{"jsonrpc": "2.0", "method": "connect_oneway", "id": 2},
                                [inner]]))[1] == invalid(NOT_AN_OBJECT)
    assert not asked
    assert rpc.result("get_nowait", {"token": token}) == ["nb:m", [0], {}]  # still queued


def test_mixed_batch_runs_its_valid_members_and_never_answers_notifications(node: Setup) -> None:
    bus, rpc = node
    received = berrymq.Queue("log:*", bus=bus)
    token = rpc.result("connect_oneway", {"ttl": 60})
    batch = [
        {"jsonrpc": "2.0", "method": "send_message", "params": [token, "log:a", [1], {}]},
        7,
        {"jsonrpc": "2.0", "method": "send_message",
         "params": {"token": token, "identifier": "log:b", "args": [2], "kwargs": {}}, "id": "b"},
        {"jsonrpc": "2.0", "method": "no_such_method", "id": 9},
    ]
    assert rpc.exchange(json.dumps(batch)) == [
        invalid(NOT_AN_OBJECT),
        {"jsonrpc": "2.0", "result": "ok", "id": "b"},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found",
                                     "data": "no_such_method"}, "id": 9},
    ]
    assert [received.get(timeout=5).args for _ in range(2)] == [(1,), (2,)]


def test_notifications_and_batches_of_notifications_get_no_answer(node: Setup) -> None:
    bus, rpc = node
    received = berrymq.Queue("log:*", bus=bus)
    token = rpc.result("connect_oneway")
    note = {"jsonrpc": "2.0", "method": "send_message",
            "params": {"token": token, "identifier": "log:n", "args": [0], "kwargs": {}}}
    assert rpc.exchange(json.dumps(note)) is None
    batch = [dict(note, params=dict(note["params"], args=[i])) for i in (1, 2)]
    assert rpc.exchange(json.dumps(batch)) is None
    # even a failing notification is not answered
    assert rpc.exchange(json.dumps({"jsonrpc": "2.0", "method": "get_nowait",
                                "params": {"token": token}})) is None
    assert [received.get(timeout=5).args[0] for _ in range(3)] == [0, 1, 2]


def test_method_not_found_and_invalid_params(node: Setup) -> None:
    _, rpc = node
    assert rpc.error("connect_all") == {"code": -32601, "message": "Method not found",
                                        "data": "connect_all"}
    assert rpc.error("__init__")["code"] == -32601  # only the methods of the protocol
    token = rpc.result("connect_oneway")
    for params, fragment in [
        ({"identifier": "a:b", "args": [], "kwargs": {}}, "'token' is missing or null"),
        ({"token": None, "identifier": "a:b"}, "'token' is missing or null: the string"),
        ({"token": 5, "identifier": "a:b"}, "'token' must be a string: the string that"),
        ({"token": token, "identifier": "a:b", "args": {}, "kwargs": {}}, "args"),
        ({"token": token, "identifier": "a:b", "args": [], "kwargs": []}, "kwargs"),
        ({"token": token, "identifier": "te*:x", "args": []}, "partial wildcard"),
        ({"token": token, "identifier": "_x:y"}, "local"),
        ({"token": token, "identifier": 5}, "identifier"),
        ({"token": token, "identifier": "a:b", "colour": "red"}, "colour"),
        ([token, "a:b", [], {}, "uid", 0, "a:c", "extra"], "at most 7"),
        ({"token": token}, "identifier"),
    ]:
        error = rpc.error("send_message", params)
        assert error["code"] == -32602 and error["message"] == "Invalid params"
        assert fragment in error["data"], (fragment, error)
    for ttl in (-1, 0, "long", True):
        assert rpc.error("connect_oneway", {"ttl": ttl})["code"] == -32602, ttl
    error = rpc.error("connect_via_queue", {"identifier": "_x:*"})
    assert error["code"] == -32602 and "local" in error["data"]
    assert rpc.error("get", {"token": token, "block": "yes"})["code"] in (-32602, p.NO_QUEUE)


def test_error_data_never_holds_exception_text(node: Setup) -> None:
    _, rpc = node
    for method, params in [("send_message", {"token": 1}), ("get", [None, None, None]),
                           ("interconnect", {"addr": "http://[bad", "token": "t"})]:
        error = rpc.error(method, params)
        assert "Traceback" not in json.dumps(error) and "Error:" not in json.dumps(error)


def test_response_ids_are_echoed(node: Setup) -> None:
    _, rpc = node
    for given in ("a-string", "", None, 7.5, 7, -1, 123456789012345678901234567890):
        reply = rpc.reply("connect_oneway", None, id=given)
        assert reply["id"] == given and type(reply["id"]) is type(given), (given, reply)


def test_huge_numbers_and_duplicate_keys(node: Setup) -> None:
    bus, rpc = node
    received = berrymq.Queue("big:*", bus=bus)
    token = rpc.result("connect_oneway")
    big = 123456789012345678901234567890123456789
    assert rpc.result("send_message", {"token": token, "identifier": "big:x",
                                       "args": [big, 1e308, -0.0]}) == "ok"
    assert received.get(timeout=5).args == (big, 1e308, -0.0)
    # a duplicate key: a well-defined answer (the last one wins, or an error), no crash
    reply = rpc.exchange(b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":60},'
                     b'"id":8,"id":9}')
    assert reply["id"] in (8, 9, None) and ("result" in reply) != ("error" in reply), reply


# -- the methods and application errors ---------------------------------------------------------


def test_tokens_are_unguessable_and_errors_documented(node: Setup) -> None:
    _, rpc = node
    tokens = {rpc.result("connect_oneway") for _ in range(20)}
    assert len(tokens) == 20 and all(TOKEN.fullmatch(t) for t in tokens), tokens  # 256 bits
    forged = "A" * len(next(iter(tokens)))
    assert rpc.error("send_message", {"token": forged, "identifier": "a:b"}) == {
        "code": p.UNKNOWN_TOKEN, "message": "Unknown or expired token"}
    assert rpc.error("get_nowait", {"token": "not a token!"}) == {
        "code": p.BAD_TOKEN, "message": "Malformed token"}
    assert rpc.error("get_nowait", {"token": 5})["code"] == p.INVALID_PARAMS
    assert rpc.error("get_nowait", {})["code"] == p.INVALID_PARAMS


def test_queue_methods(node: Setup) -> None:
    bus, rpc = node
    token = rpc.result("connect_via_queue", {"identifier": "job:*", "ttl": 60})
    assert rpc.error("get_nowait", {"token": token}) == {"code": p.EMPTY,
                                                          "message": "Queue is empty"}
    start = time.monotonic()
    assert rpc.error("get", {"token": token, "block": True, "timeout": 0.2})["code"] == p.EMPTY
    assert time.monotonic() - start >= 0.15
    bus.twitter("job:run", 1, "a", flag=True)
    bus.twitter("other:run")
    bus.twitter("job@ops:run")  # another namespace
    assert rpc.result("get", {"token": token, "block": True, "timeout": 5}) == [
        "job:run", [1, "a"], {"flag": True}]
    bus.twitter("job:again")
    assert rpc.result("get_nowait", [token]) == ["job:again", [], {}]
    oneway = rpc.result("connect_oneway")
    assert rpc.error("get_nowait", {"token": oneway}) == {
        "code": p.NO_QUEUE, "message": "Connection has no queue"}
    assert rpc.result("close_connection", {"token": token}) == "ok"
    assert rpc.error("get_nowait", {"token": token})["code"] == p.UNKNOWN_TOKEN
    assert not bus.route("job:run")  # the queue no longer follows anything


def test_send_messages_in_one_request(node: Setup) -> None:
    bus, rpc = node
    received = berrymq.Queue("m:*", bus=bus)
    token = rpc.result("connect_oneway")
    messages = [["m:one", [1], {}], ["m:two", [], {"k": 2}], ["m:three", [3], {}, {"hops": 1}]]
    assert rpc.result("send_messages", {"token": token, "messages": messages}) == "ok"
    got = [received.get(timeout=5) for _ in range(3)]
    assert [(m.id, m.args, m.kwargs) for m in got] == [
        ("m:one", (1,), {}), ("m:two", (), {"k": 2}), ("m:three", (3,), {})]
    assert got[2].hops == 2  # one hop given, one more for the crossing
    bad = rpc.error("send_messages", {"token": token, "messages": [["m:ok", [], {}], ["m:x"]]})
    assert bad["code"] == -32602 and "messages[1]" in bad["data"]
    assert received.empty()  # nothing of a refused request was delivered


def test_send_message_dedups_by_uid(node: Setup) -> None:
    bus, rpc = node
    received = berrymq.Queue("d:*", bus=bus)
    token = rpc.result("connect_oneway")
    params = {"token": token, "identifier": "d:x", "args": [], "kwargs": {}, "uid": "peer-uid-0000000001"}
    assert rpc.result("send_message", params) == "ok"
    assert rpc.result("send_message", params) == "ok"
    assert received.get(timeout=5).id == "d:x"
    assert received.empty()


@pytest.mark.parametrize("uid", ["", "1", "client-a-00001"])
def test_a_uid_too_short_to_be_unique_is_refused_not_dropped_as_seen(node: Setup, uid: str) -> None:
    """A node delivers each uid once, whichever client sends it: two clients counting
    their uids (or sending "") had each other's messages dropped as seen, answered "ok";
    such a uid is refused, naming the rule, and nothing of the request is delivered."""
    bus, rpc = node
    received = berrymq.Queue("d:*", bus=bus)
    tokens = [rpc.result("connect_oneway") for _ in range(2)]
    for index, token in enumerate(tokens):
        params = {"token": token, "identifier": "d:x", "args": [index], "kwargs": {}, "uid": uid}
        error = rpc.error("send_message", params)
        assert error["code"] == -32602
        assert "uid must be a string of 16 to 128 characters, unique among" in error["data"]
        error = rpc.error("send_messages", {"token": token, "messages": [
            ["d:x", [index], {}, {"uid": uid}]]})
        assert error["code"] == -32602 and "messages[0]" in error["data"]
    assert received.empty()


def test_reply_to_sends_return_values_back(node: Setup) -> None:
    bus, rpc = node
    bus.subscribe("calc:*", lambda m: m.args[0] + 1, weak=False)
    answers = berrymq.Queue("calc_done:*", bus=bus)
    token = rpc.result("connect_oneway")
    rpc.result("send_message", {"token": token, "identifier": "calc:inc", "args": [1],
                                "reply_to": "calc_done:x"})
    assert answers.get(timeout=5).args == (2,)


def test_ask_method(node: Setup) -> None:
    bus, rpc = node
    bus.subscribe("q:*", lambda m: {"double": m.args[0] * 2}, weak=False)
    bus.subscribe("q:*", lambda m: 1 / 0, weak=False)
    bus.subscribe("q:*", lambda m: object(), weak=False)
    result = rpc.result("ask", {"identifier": "q:x", "args": [4], "kwargs": {}})
    assert result[0] == {"value": {"double": 8}}
    assert result[1]["error"]["type"] == "ZeroDivisionError"
    assert result[2]["error"]["type"] == "TypeError"
    assert rpc.result("ask", ["nobody:here"]) == []


def test_network_method(node: Setup) -> None:
    bus, rpc = node
    bus.subscribe("seen:*", lambda m: None, weak=False)
    picture = rpc.result("network", {})
    assert isinstance(picture, dict) and "seen:*" in json.dumps(picture)


def test_queue_full_is_refused_not_dropped(scheme_server: tuple[Bus, Raw]) -> None:
    bus, rpc = scheme_server
    token = rpc.result("connect_via_queue", {"identifier": "f:*"})
    sender = rpc.result("connect_oneway")
    bus.twitter("f:1")
    bus.twitter("f:2")
    with pytest.raises(berrymq.QueueFull):
        bus.twitter("f:3")
    error = rpc.error("send_messages", {"token": sender, "messages": [["f:4", [], {}]]})
    assert error == {"code": p.QUEUE_FULL, "message": "Queue is full", "data": {
        "refused": [0], "setting": "queue_size", "limit": 2}}
    assert rpc.result("get_nowait", [token])[0] == "f:1"
    assert rpc.result("get_nowait", [token])[0] == "f:2"
    assert rpc.error("get_nowait", [token])["code"] == p.EMPTY


@pytest.fixture(params=SCHEMES)
def scheme_server(request: pytest.FixtureRequest, server: Callable[..., tuple[Bus, int]],
                  raw: Callable[[str, int], Raw]) -> tuple[Bus, Raw]:
    bus, port = server(request.param, queue_size=2)
    return bus, raw(request.param, port)


# -- safety ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ttl_expiry_frees_the_queue(scheme: str, server: Callable[..., tuple[Bus, int]],
                                    raw: Callable[[str, int], Raw],
                                    wait_for: Callable[..., Any]) -> None:
    bus, port = server(scheme)
    rpc = raw(scheme, port)
    kept = rpc.result("connect_oneway", {"ttl": 60})
    token = rpc.result("connect_via_queue", {"identifier": "t:*", "ttl": 0.3})
    assert bus.route("t:x")
    service = bus.transport(scheme).service  # type: ignore[attr-defined]
    # the session leaves the table first, its queue's subscription goes after (on a
    # helper thread): the test waits for both, the route gone being the point
    wait_for(lambda: token not in service.sessions and not bus.route("t:x"), 10,
             "the idle session to expire and its queue to take t:x no more")
    assert rpc.error("get_nowait", {"token": token})["code"] == p.UNKNOWN_TOKEN
    assert kept in service.sessions


@pytest.mark.parametrize("scheme", SCHEMES)
def test_use_keeps_a_session_alive(scheme: str, server: Callable[..., tuple[Bus, int]],
                                   raw: Callable[[str, int], Raw],
                                   wait_for: Callable[..., Any]) -> None:
    """A session of a 1 s ttl used every 0.1 s lives 2.5 s, and goes once no longer used.
    The ttl leaves 0.9 s for a loaded machine to stall the client or the server between
    two uses (with 0.5 s, a stall of 0.4 s expired it and the test failed)."""
    bus, port = server(scheme)
    rpc = raw(scheme, port)
    token = rpc.result("connect_oneway", {"ttl": 1})
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # more than twice the ttl: only the use renews it
        assert rpc.result("send_message", {"token": token, "identifier": "k:a"}) == "ok"
        time.sleep(0.1)
    service = bus.transport(scheme).service  # type: ignore[attr-defined]
    # the ttl holds (looked up without a use, which would renew it): use alone kept it
    wait_for(lambda: token not in service.sessions, 10, "the unused session to expire")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_session_asked_for_while_the_node_stops_is_not_available(
        scheme: str, server: Callable[..., tuple[Bus, int]], raw: Callable[[str, int], Raw],
        caplog: pytest.LogCaptureFixture) -> None:
    """Between the close of a node's sessions and the close of its connections, a request
    for a session was an Internal error with a traceback in the log (99 of them for a
    node stopped under a stream of connect_oneway)."""
    bus, port = server(scheme)
    rpc = raw(scheme, port)
    kept = rpc.result("connect_oneway", {"ttl": 60})
    bus.transport(scheme).service.close()  # type: ignore[attr-defined]  # as a stop does first
    for method, params in (("connect_oneway", {"ttl": 60}),
                           ("connect_via_queue", {"identifier": "t:*"})):
        error = rpc.error(method, params)
        assert error["code"] == p.NOT_AVAILABLE, error
        assert error["data"]["detail"] == "the node is stopping: it opens no new session"
    assert rpc.error("send_message", {"token": kept, "identifier": "t:x"})["code"] == \
        p.UNKNOWN_TOKEN  # closed with the others
    assert not [r for r in caplog.records if r.exc_info], caplog.text


@pytest.mark.parametrize("scheme", SCHEMES)
def test_secret_is_required_when_set(scheme: str, server: Callable[..., tuple[Bus, int]],
                                     raw: Callable[[str, int], Raw]) -> None:
    _, port = server(scheme, secret="s3cret")
    rpc = raw(scheme, port)
    unauthorised = {"code": p.UNAUTHORISED, "message": "Unauthorised"}
    assert rpc.error("connect_oneway") == unauthorised
    assert rpc.error("connect_oneway", {"secret": "wrong"}) == unauthorised
    assert rpc.error("connect_oneway", {"secret": ""}) == unauthorised
    assert rpc.error("connect_oneway", {"secret": 5}) == unauthorised
    assert rpc.error("connect_oneway", [60]) == unauthorised  # by position: no secret
    assert isinstance(rpc.result("connect_oneway", {"secret": "s3cret"}), str)
    # an unknown method too: without the secret nothing says which methods the node has
    assert rpc.error("no_such_method") == unauthorised
    assert rpc.error("no_such_method", {"secret": "wrong"}) == unauthorised
    assert rpc.error("no_such_method", ["s3cret"]) == unauthorised
    assert rpc.error("no_such_method", {"secret": "s3cret"}) == {
        "code": p.METHOD_NOT_FOUND, "message": "Method not found", "data": "no_such_method"}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_non_loopback_bind_needs_a_secret(scheme: str, bus_factory: Callable[..., Bus],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(p.SECRET_ENV_VAR, raising=False)
    bus = bus_factory()
    with pytest.raises(berrymq.TransportError, match="secret"):
        bus.transport(scheme).listen(f"{scheme}://0.0.0.0:0")
    secured = bus_factory(**{f"jsonrpc-{scheme}": {"secret": "shared"}})
    url = secured.transport(scheme).listen(f"{scheme}://0.0.0.0:0")
    port = int(url.rsplit(":", 1)[1])
    rpc = Raw(port, scheme=scheme)
    try:
        assert rpc.error("connect_oneway")["code"] == p.UNAUTHORISED
        assert rpc.result("connect_oneway", {"secret": "shared"})
    finally:
        rpc.close()
    # and a client with the same secret talks to it through the API
    client = bus_factory(**{f"jsonrpc-{scheme}": {"secret": "shared"}})
    connection = client.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port}", 60)
    received = berrymq.Queue("sec:*", bus=secured)
    connection.send(berrymq.Message("sec:ret"))
    assert received.get(timeout=5).id == "sec:ret"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_api_says_whether_the_secret_was_missing_or_wrong(
        scheme: str, bus_factory: Callable[..., Bus], monkeypatch: pytest.MonkeyPatch) -> None:
    """A client refused as *Unauthorised* learns which node refused and why: its secret
    was missing or wrong (it got ``remote error -32004: Unauthorised``, naming neither)."""
    monkeypatch.delenv(p.SECRET_ENV_VAR, raising=False)
    secured = bus_factory(**{f"jsonrpc-{scheme}": {"secret": "shared"}})
    url = secured.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    for secret, why in ((None, "no secret was given; set the transport's secret setting or "
                               f"{p.SECRET_ENV_VAR} to the node's shared secret"),
                        ("wrong", "the secret given was refused (a wrong secret: not the "
                                  "node's shared secret)")):
        client = bus_factory(**({f"jsonrpc-{scheme}": {"secret": secret}} if secret else {}))
        with pytest.raises(berrymq.RemoteError) as refused:
            client.transport(scheme).connect_oneway(url, 60)
        assert refused.value.code == p.UNAUTHORISED
        assert str(refused.value) == f"{url} refused the request: remote error -32004: " \
                                     f"Unauthorised: {why}"


def test_secret_from_the_environment(bus_factory: Callable[..., Bus],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(p.SECRET_ENV_VAR, "from-env")
    bus = bus_factory()
    url = bus.transport("tcp").listen("tcp://0.0.0.0:0")
    rpc = Raw(int(url.rsplit(":", 1)[1]))
    try:
        assert rpc.error("connect_oneway")["code"] == p.UNAUTHORISED
        assert rpc.result("connect_oneway", {"secret": "from-env"})
    finally:
        rpc.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_oversized_request_is_refused_with_the_documented_code(
        scheme: str, server: Callable[..., tuple[Bus, int]]) -> None:
    _, port = server(scheme, max_size=2048)
    big = json.dumps({"jsonrpc": "2.0", "method": "connect_oneway", "id": 1,
                      "params": {"ttl": 1, "pad": "x" * 5000}})
    if scheme == "tcp":
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        with sock:
            sock.sendall(big.encode() + b"\n")
            reader = sock.makefile("rb")
            reply = json.loads(reader.readline())
            assert reader.readline() == b""  # and the connection is closed
            reader.close()
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/", big.encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 413
        reply = json.loads(response.read())
        conn.close()
    assert reply == {"jsonrpc": "2.0", "id": None, "error": {
        "code": p.TOO_LARGE, "message": "Message too large", "data": {
            "limit": 2048, "setting": "max_size"}}}


def sized(size: int) -> bytes:
    """A request of exactly ``size`` bytes (answered Method not found)."""
    head, tail = b'{"jsonrpc":"2.0","method":"no_such","params":["', b'"],"id":1}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("scheme", SCHEMES)
def test_max_size_is_the_largest_request_taken(
        scheme: str, server: Callable[..., tuple[Bus, int]],
        raw: Callable[[str, int], Raw]) -> None:
    _, port = server(scheme, max_size=2048)
    other = raw(scheme, port)  # a session on another connection, which the refusals spare
    token = other.result("connect_oneway")
    too_large = {"jsonrpc": "2.0", "id": None, "error": {
        "code": p.TOO_LARGE, "message": "Message too large", "data": {
            "limit": 2048, "setting": "max_size"}}}
    if scheme == "tcp":
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = sock.makefile("rb")
            sock.sendall(sized(2048) + b"\n")  # exactly the limit: taken
            assert json.loads(reader.readline())["error"]["code"] == -32601
            sock.sendall(sized(2049) + b"\n")  # a byte more: refused, then closed
            assert json.loads(reader.readline()) == too_large
            assert reader.readline() == b""
            reader.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"a" * 3000)  # a line that never ends is cut at the limit too
            assert json.loads(read_to_close(sock)) == too_large
    else:
        exact = raw(scheme, port)
        assert exact.exchange(sized(2048))["error"]["code"] == -32601
        assert exact.exchange(sized(2049)) == too_large and exact.status == 413
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 99999999999999\r\n\r\n")  # and never sent
            assert read_to_close(sock).startswith(b"HTTP/1.1 413 ")
    assert other.result("send_message", {"token": token, "identifier": "a:b"}) == "ok"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_message_is_measured_in_the_utf8_bytes_that_cross(
        scheme: str, server: Callable[..., tuple[Bus, int]],
        raw: Callable[[str, int], Raw]) -> None:
    """A client writes UTF-8, as JSON-RPC libraries do: 1,500 "é" are 3,000 bytes, which
    fit max_size 4096 in the node's session queue (``get`` answers it) and on their way to
    an interconnected peer (they were refused there, and forwarded to nobody with "ok"
    answered, when the node counted them as the 9,000 bytes of six-byte escapes)."""
    peer, peer_port = server(scheme, max_size=4096)
    arrived = berrymq.Queue("big:*", bus=peer)
    node, port = server(scheme, max_size=4096)
    node.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{peer_port}", 60)
    client = raw(scheme, port)
    token = client.result("connect_via_queue", {"identifier": "big:*"})
    text = "é" * 1500
    request = {"jsonrpc": "2.0", "method": "send_message", "id": 2,
               "params": {"token": token, "identifier": "big:x", "args": [text]}}
    assert client.exchange(json.dumps(request, ensure_ascii=False)) == {
        "jsonrpc": "2.0", "result": "ok", "id": 2}
    assert client.result("get_nowait", {"token": token}) == ["big:x", [text], {}]
    assert arrived.get(timeout=10).args == (text,)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_client_refuses_too_large_or_non_json_messages_at_the_call(
        scheme: str, server: Callable[..., tuple[Bus, int]],
        bus_factory: Callable[..., Bus]) -> None:
    _, port = server(scheme)
    client = bus_factory(**{f"jsonrpc-{scheme}": {"max_size": 4096}})
    connection = client.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port}", 60)
    with pytest.raises(berrymq.MessageTooLarge):
        connection.send(berrymq.Message("big:x", ("x" * 10_000,)))
    with pytest.raises(TypeError, match="big:y"):
        connection.send(berrymq.Message("big:y", (object(),)))
    with pytest.raises(ValueError, match="big:z"):
        connection.send(berrymq.Message("big:z", (float("nan"),)))
    connection.send(berrymq.Message("big:ok", ("fine",)))
    assert connection.flush(10)  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_stalled_client_does_not_block_others_and_is_cut_off(
        scheme: str, server: Callable[..., tuple[Bus, int]],
        raw: Callable[[str, int], Raw]) -> None:
    _, port = server(scheme, read_timeout=0.5)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    with stalled:
        if scheme == "tcp":
            stalled.sendall(b'{"jsonrpc": "2.0", "method": "connect_')
        else:
            stalled.sendall(b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 100\r\n\r\n{\"jsonrpc\"")
        # meanwhile another client is served at once, again and again
        other = raw(scheme, port)
        start = time.monotonic()
        for _ in range(20):
            assert isinstance(other.result("connect_oneway"), str)
        assert time.monotonic() - start < 5
        # and the stalled one is closed by the server after its read timeout
        stalled.settimeout(10)
        start = time.monotonic()
        rest = b""
        while True:
            chunk = stalled.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert time.monotonic() - start < 9
        if scheme == "tcp":  # says why: Limit reached, naming the setting
            assert json.loads(rest)["error"]["data"]["setting"] == "read_timeout", rest
        else:  # HTTP says why: 408, naming the setting
            assert rest.startswith(b"HTTP/1.1 408 ") and b"read_timeout (0.5s)" in rest, rest


@pytest.mark.parametrize("scheme", SCHEMES)
def test_closing_the_bus_stops_its_servers(scheme: str,
                                           bus_factory: Callable[..., Bus]) -> None:
    bus = bus_factory()
    url = bus.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    port = int(url.rsplit(":", 1)[1])
    rpc = Raw(port, scheme=scheme)  # an open keep-alive connection is cut as well
    assert rpc.result("connect_oneway")
    bus.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises((OSError, ValueError, http.client.HTTPException)):
        rpc.reply("connect_oneway")
    rpc.close()

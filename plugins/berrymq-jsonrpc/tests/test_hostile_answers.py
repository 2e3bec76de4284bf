"""The client against a node that answers oddly (found by an outside probe): an answer
that is valid JSON-RPC but not what the method promises is a malformed answer, named with
the address, never taken for success."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from typing import Any

import pytest
from fake_node import CLOSE, WAIT, fake_node, normal
from helpers import run_berrymq, wait_for

import berrymq
from berrymq import Bus

SCHEMES = ["tcp", "http"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("result", [12345, None, ["ok"], "OK", {"ok": True}])
def test_a_send_messages_answer_other_than_ok_is_not_an_acknowledgement(
        scheme: str, result: Any, berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    def answer(method: str, params: Any, rid: Any) -> Any:
        if method == "send_messages":
            return {"jsonrpc": "2.0", "result": result, "id": rid}
        return normal(method, params, rid)

    with fake_node(scheme, answer) as node, caplog.at_level(logging.ERROR):
        connection = berrymq.connect_oneway(node.url)
        berrymq.send_message("job:x", 1)
        assert berrymq.flush(WAIT) is False  # was True: 12345 counted as "ok"
        assert sum(connection.losses.values()) == 1
        # logged by the I/O thread as the link closes, maybe just after flush returned
        said = f"{node.url} answered send_messages with {result!r}, not 'ok'"
        assert wait_for(lambda: said in caplog.text), caplog.text


def _get_answered(result: Any) -> Any:
    def answer(method: str, params: Any, rid: Any) -> Any:
        if method == "get":
            if isinstance(result, bytes):
                return result
            if isinstance(result, dict) and "error" in result:
                return {"jsonrpc": "2.0", "id": rid, **result}
            return {"jsonrpc": "2.0", "result": result, "id": rid}
        return normal(method, params, rid)
    return answer


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("result", "named"), [
    (["job:x", {}, []], "answered get with a malformed message"),
    ([1, 2, 3, 4, 5], "answered get with a malformed message"),
    ({"error": {"code": -32002.5, "message": 7, "data": {"x": 1}}}, "malformed"),
    ({"result": "ok", "error": {"code": 1, "message": "x"}}, "malformed"),
])
def test_listen_stops_at_a_malformed_get_answer(scheme: str, result: Any, named: str) -> None:
    """A malformed answer to ``get`` is not the node going away: ``listen`` took it so,
    reconnected at once, and did it 10,233 times in 15 s; it ends with one error line."""
    with fake_node(scheme, _get_answered(result)) as node:
        done = run_berrymq("listen", node.url, "job:*", "--timeout", "30", timeout=60)
        assert done.returncode == 1, done.stderr
        err = done.stderr.splitlines()
        assert err[0] == f"listening to job:* at {node.url}"
        assert len(err) == 2 and err[1].startswith("berrymq: error: ") and named in err[1], err
        assert node.url in err[1], err
        # one queue was opened, and closed when the command ended
        assert node.methods.count("connect_via_queue") == 1, node.methods
        assert node.methods[-1] == "close_connection", node.methods


@pytest.mark.parametrize("scheme", SCHEMES)
def test_listen_backs_off_when_every_new_queue_fails_at_once(scheme: str) -> None:
    """A node that takes every queue and drops the connection at each ``get``: a real
    going away each time, so listen reconnects, but with a growing pause (it opened a
    new queue as fast as the node answered), and it closes each old queue."""
    with fake_node(scheme, _get_answered(CLOSE)) as node:
        done = run_berrymq("listen", node.url, "job:*", "--timeout", "2", timeout=60)
        turns = done.stderr.count("node went away; reconnecting")
        # pauses of 0, 0.05, 0.1, 0.2, 0.4, 0.8 s...: under 10 turns in 2 s, where it was
        # hundreds; at least two, however loaded the machine
        assert 2 <= turns < 10, done.stderr
        assert node.methods.count("connect_via_queue") in (turns, turns + 1)


def test_an_http_answer_over_the_limit_is_not_held_after_the_error(berrymq_bus: Bus) -> None:
    """The up to 4 MiB read of an answer over the limit stayed alive until the cyclic
    garbage collector ran (the parser and its Answer refer to each other): a listener
    turning round on such answers grew from 38 to 260 MB in 25 s."""
    huge = b'{"jsonrpc":"2.0","result":"' + b"a" * (5 << 20) + b'","id":1}'
    with fake_node("http", _get_answered(huge)) as node:
        connection = berrymq.connect_via_queue(node.url, "job:*")
        gc.collect()
        gc.disable()  # what is freed must be freed without it
        tracemalloc.start()
        try:
            for _ in range(3):
                with pytest.raises(berrymq.TransportError, match="answered with over"):
                    connection.get(timeout=WAIT)
            held, _peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            gc.enable()
        assert held < 2 << 20, held  # was over 12 MiB: 4 MiB for each answer


def _token_answered(token: Any) -> Any:
    def answer(method: str, params: Any, rid: Any) -> Any:
        if method in ("connect_oneway", "connect_via_queue", "interconnect"):
            return {"jsonrpc": "2.0", "result": token, "id": rid}
        return normal(method, params, rid)
    return answer


def _open(style: str, url: str) -> Any:
    if style == "oneway":
        return berrymq.connect_oneway(url)
    if style == "queue":
        return berrymq.connect_via_queue(url, "job:*")
    return berrymq.interconnect(url)


# interconnect over TCP only: over HTTP the peer would call this node's server back
STYLES = [("tcp", "oneway"), ("http", "oneway"), ("tcp", "queue"), ("http", "queue"),
          ("tcp", "interconnect")]


@pytest.mark.parametrize(("scheme", "style"), STYLES)
@pytest.mark.parametrize(("token", "problem"), [
    ("", "empty"),
    ("A" * 3_000_000, "3000000 characters long, over 256"),
    ("A" * 257, "257 characters long, over 256"),
    ("tok en", "not printable ASCII without spaces"),
    ("t\u00f6ken-t\u00f6ken", "not printable ASCII without spaces"),
    ("\x1b[31mred\x1b[0m", "not printable ASCII without spaces"),
    (5, "not a string"),
])
def test_a_token_of_the_wrong_shape_is_a_malformed_answer(
        scheme: str, style: str, token: Any, problem: str, berrymq_bus: Bus) -> None:
    """``""`` and a 3,000,000-character token were taken (only the type was checked),
    and every later request carried the 3 MB."""
    with fake_node(scheme, _token_answered(token)) as node:
        with pytest.raises(berrymq.TransportError) as info:
            _open(style, node.url)
        text = str(info.value)
        assert text.startswith(f"{node.url} answered ") and f"not a token ({problem})" in text
        assert len(text) < 300
        assert "send_messages" not in node.methods


@pytest.mark.parametrize(("scheme", "style"), STYLES)
@pytest.mark.parametrize("token", ["x", "A" * 256, "0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_tokens_a_node_or_a_1_0_peer_may_give_are_taken(
        scheme: str, style: str, token: str, berrymq_bus: Bus) -> None:
    with fake_node(scheme, _token_answered(token)) as node:
        connection = _open(style, node.url)
        assert connection.token == token
        connection.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_answer_over_the_read_limit_names_the_limit(scheme: str, berrymq_bus: Bus) -> None:
    """Over TCP it failed with "the connection to tcp://... is closed", which reads as if
    the user had closed it (only a log line named the limit); both clients now say it."""
    huge = b'{"jsonrpc":"2.0","result":"' + b"a" * (5 << 20) + b'","id":1}'
    with fake_node(scheme, _get_answered(huge)) as node:
        connection = berrymq.connect_via_queue(node.url, "job:*")
        with pytest.raises(berrymq.TransportError) as info:
            connection.get(timeout=WAIT)
        assert not isinstance(info.value, berrymq.ConnectionClosed)  # not "went away"
        text = str(info.value)
        assert text.startswith(f"{node.url} answered with over ") and "4x the setting max_size" in text
        # and berrymq listen ends at it with that line, exit 1
        done = run_berrymq("listen", node.url, "job:*", "--timeout", "30", timeout=60)
        assert done.returncode == 1 and "4x the setting max_size" in done.stderr, done.stderr


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_ask_answered_empty_says_the_error_s_text(scheme: str, berrymq_bus: Bus) -> None:
    """-32002 (*Queue is empty*) became an Empty without text, so the reply of an ask
    answered so read "raised Empty: " and said nothing."""
    def answer(method: str, params: Any, rid: Any) -> Any:
        if method == "ask":
            return {"jsonrpc": "2.0", "id": rid,
                    "error": {"code": -32002, "message": "Queue is empty"}}
        return normal(method, params, rid)

    with fake_node(scheme, answer) as node:
        berrymq.connect_oneway(node.url)
        [reply] = berrymq.ask("job:x", timeout=WAIT)
        assert isinstance(reply, berrymq.ReplyError), reply
        assert str(reply).endswith("raised Empty: Queue is empty"), str(reply)

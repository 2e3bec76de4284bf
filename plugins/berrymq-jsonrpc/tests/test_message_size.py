"""The one size rule for a message (berrymq_jsonrpc.sizes), over real loopback sockets.

Two nodes, A interconnected to B, and senders of A: a berryMQ client and a raw JSON-RPC
client. A message of exactly ``max_size - 512`` bytes (the JSON of ``[identifier, args,
kwargs, extras]`` with a 20-character uid, without hops) goes through A to B; one byte
more is refused where it enters, at the client's sending call and by node A (*Message
too large*, -32003, naming the setting), and A counts the refusal in ``/status``. The
sizes are worked out here with the standard library's json, not with the rule's own code.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.status import status_snapshot
from helpers import Buses, serve, wait_for
from probe_tools import Raw

import berrymq
from berrymq.bus import Bus
from berrymq.errors import MessageTooLarge
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.stats import stats_for

MAX_SIZE = 4096
LIMIT = MAX_SIZE - 512
WAIT = 10.0


def measured(args: list[Any], extras: dict[str, Any] | None = None) -> int:
    """The rule's measure of a ``big:x`` message with ``args``: compact UTF-8 JSON, with
    a uid of 20 characters where the message has none yet, hops left out."""
    more = {"uid": "u" * 20, **(extras or {})}
    more.pop("hops", None)
    return len(json.dumps(["big:x", args, {}, more], separators=(",", ":"),
                          ensure_ascii=False).encode())


def padded(size: int, extras: dict[str, Any] | None = None) -> list[Any]:
    """``args`` that make a ``big:x`` message measure exactly ``size`` bytes."""
    args = ["x" * (size - measured([""], extras))]
    assert measured(args, extras) == size
    return args


@pytest.fixture(params=["tcp", "http"])
def nodes(request: pytest.FixtureRequest, buses: Buses
          ) -> Iterator[tuple[str, Bus, int, berrymq.Queue]]:
    """(scheme, node A, A's port, a queue of node B's that A forwards ``big:*`` to)."""
    scheme: str = request.param
    node_b, port_b = serve(buses, scheme, max_size=MAX_SIZE)
    node_a, port_a = serve(buses, scheme, max_size=MAX_SIZE)
    at_b = berrymq.Queue("big:*", bus=node_b)
    node_a.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{port_b}", 60)
    yield scheme, node_a, port_a, at_b


def client(buses: Buses, scheme: str, port: int) -> Any:
    """A berryMQ client of node A (its own bus) with the same max_size."""
    bus = buses(**{f"jsonrpc_{scheme}": {"max_size": MAX_SIZE}})
    return bus.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port}", 60)


def big(args: list[Any]) -> Message:
    return Message(Identifier("big:x"), tuple(args), {})


def test_a_message_at_the_limit_crosses_two_nodes(
        nodes: tuple[str, Bus, int, berrymq.Queue], buses: Buses) -> None:
    scheme, _, port, at_b = nodes
    connection = client(buses, scheme, port)
    args = padded(LIMIT)
    connection.send(big(args))
    assert connection.flush(WAIT) is True
    assert at_b.get(timeout=WAIT).args == tuple(args)  # A forwarded it with hops 1
    raw = Raw(port, scheme=scheme)
    try:
        token = raw.reply("connect_oneway", {"ttl": 60})["result"]
        args = padded(LIMIT)  # sent without a uid: A gives it one when forwarding it
        assert raw.reply("send_message", {"token": token, "identifier": "big:x",
                                         "args": args})["result"] == "ok"
        assert at_b.get(timeout=WAIT).args == tuple(args)
        extras = {"uid": "v" * 40, "hops": 3}  # its own uid is measured, its hops are not
        args = padded(LIMIT, extras)
        assert raw.reply("send_messages", {"token": token, "messages": [
            ["big:x", args, {}, extras]]})["result"] == "ok"
        assert at_b.get(timeout=WAIT).args == tuple(args)
    finally:
        raw.close()


def test_one_byte_over_is_refused_where_it_enters(
        nodes: tuple[str, Bus, int, berrymq.Queue], buses: Buses) -> None:
    scheme, node_a, port, at_b = nodes
    connection = client(buses, scheme, port)
    with pytest.raises(MessageTooLarge, match=f"over the limit of {LIMIT} bytes: the "
                       f"setting max_size \\({MAX_SIZE}\\)"):
        connection.send(big(padded(LIMIT + 1)))
    raw = Raw(port, scheme=scheme)
    try:
        token = raw.reply("connect_oneway", {"ttl": 60})["result"]
        answers = [
            raw.reply("send_message", {"token": token, "identifier": "big:x",
                                      "args": padded(LIMIT + 1)}),
            raw.reply("send_messages", {"token": token, "messages": [
                ["big:x", ["small"], {}], ["big:x", padded(LIMIT + 1), {}]]}),
        ]
        for answer in answers:
            error = answer["error"]
            assert error["code"] == p.TOO_LARGE == -32003
            assert error["message"] == "Message too large"
            data = error["data"]
            assert set(data) == {"limit", "setting", "size", "detail"}
            assert (data["limit"], data["setting"], data["size"]) == (LIMIT, "max_size",
                                                                      LIMIT + 1)
            assert f"the setting max_size ({MAX_SIZE})" in data["detail"]
        assert answers[1]["error"]["data"]["detail"].startswith("messages[1]: ")
        # counted where it was refused, and the connection is still served
        assert status_snapshot(node_a)["refused"]["reasons"] == {"max_size": 2}
        assert raw.reply("send_message", {"token": token, "identifier": "big:x",
                                         "args": ["after"]})["result"] == "ok"
    finally:
        raw.close()
    # nothing of the refused requests went on: B's next message is the one sent after
    assert at_b.get(timeout=WAIT).args == ("after",)
    assert at_b.empty()


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_the_longest_secret_leaves_a_message_at_the_limit_room(buses: Buses, scheme: str) -> None:
    """The secret travels in every request, in the 512 bytes kept around a message: at its
    longest (256 bytes as a request writes it: quotes escaped count twice) a message at the
    limit still crosses a second node; one byte longer is a settings error naming the
    setting, and a secret from BERRYMQ_SECRET is held to the same bound."""
    secret = '"' * 128  # 256 bytes in a request
    node_b, port_b = serve(buses, scheme, max_size=MAX_SIZE, secret=secret)
    node_a, port_a = serve(buses, scheme, max_size=MAX_SIZE, secret=secret)
    at_b = berrymq.Queue("big:*", bus=node_b)
    node_a.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{port_b}", 60)
    sender = buses(**{f"jsonrpc_{scheme}": {"max_size": MAX_SIZE, "secret": secret}})
    connection = sender.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port_a}", 60)
    args = padded(LIMIT)
    connection.send(Message(Identifier("big:x"), tuple(args), {}, 20))  # hops, too
    assert connection.flush(WAIT) is True
    assert at_b.get(timeout=WAIT).args == tuple(args)
    plugin = f"jsonrpc-{scheme}"
    with pytest.raises(berrymq.SettingsError, match=f"{plugin}.secret is 257 bytes as a request "
                       "writes it, over the 256 a secret may take"):
        buses(**{f"jsonrpc_{scheme}": {"secret": secret + "x"}}).transport(scheme)


def test_a_long_secret_from_the_environment_is_refused(buses: Buses,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERRYMQ_SECRET", "s" * 257)
    with pytest.raises(berrymq.SettingsError, match="the environment variable BERRYMQ_SECRET is "
                       "257 bytes as a request writes it, over the 256"):
        buses().transport("tcp")
    monkeypatch.setenv("BERRYMQ_SECRET", "s" * 256)
    assert buses().transport("tcp").secret == "s" * 256


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_node_with_a_smaller_max_size_refusing_a_batch_names_both_limits(
        buses: Buses, scheme: str) -> None:
    """A client with the default max_size sends small messages, coalesced into a batch
    over the node's smaller max_size: the node refuses it and the connection ends (as
    for any request over its limit); every message is counted lost, and the error says
    the node's limit, the batch's size and this side's limit, so that the cause (two
    different max_size settings) can be read from it."""
    node, port = serve(buses, scheme, max_size=MAX_SIZE)
    at_node = berrymq.Queue("small:*", bus=node)
    sender = buses()
    connection = sender.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port}", 60)
    for i in range(200):  # each some 120 bytes, far under the node's message limit
        connection.send(Message(Identifier("small:x"), ("y" * 100, i), {}))
    with pytest.raises(berrymq.ConnectionClosed) as refused:
        connection.flush(WAIT)
    text = str(refused.value)
    assert f"setting max_size = {MAX_SIZE} on the peer" in text, text
    assert f"within this side's max_size ({p.DEFAULT_MAX_SIZE}): set the same max_size" in text
    assert f"{scheme}://127.0.0.1:{port}" in text
    assert re.search(r"the batch of \d+ message\(s\) was \d+ bytes", text), text
    lost = sum(stats_for(sender).losses().values())
    assert lost > 100  # the first may have gone alone, at once, and been delivered
    wait_for(lambda: at_node.qsize() + lost == 200, what="each message delivered or lost")
    assert status_snapshot(node)["refused"]["reasons"] == {"max_size": 1}


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_queue_holds_no_message_over_the_max_size_its_client_connected_with(
        buses: Buses, scheme: str) -> None:
    """A client with a smaller max_size than the node's gives it when it connects: the
    node's queue for it refuses a message the client could not read in an answer to
    ``get`` (the sender's call raises, naming the limit) instead of taking it and writing
    an answer the client refuses, which lost the message (over TCP the client closed the
    connection)."""
    node, port = serve(buses, scheme)
    small = buses(**{f"jsonrpc_{scheme}": {"max_size": 1024}})
    connection = small.transport(scheme).connect_via_queue(
        f"{scheme}://127.0.0.1:{port}", Identifier("big:*"), 60)
    with pytest.raises(berrymq.QueueFull, match=r"over 1024 bytes \(the max_size the client "
                       "connected with\\), more than the client reads"):
        node.twitter("big:x", "y" * 5000)
    node.twitter("big:x", "small")
    assert connection.get(timeout=WAIT).args == ("small",)


@pytest.mark.parametrize(("given", "problem"), [
    (1024.5, "must be an integer (bytes), got 1024.5"),
    (1e20, "must be an integer (bytes), got 1e+20"),
    ("2048", "must be an integer (bytes), got '2048'"),
    (True, "must be an integer (bytes), got True"),
    (512, "must be at least 1024 bytes"),
])
def test_a_client_max_size_that_is_no_count_of_bytes_is_invalid_params(
        buses: Buses, given: Any, problem: str) -> None:
    """Taken were 1024.5 and 1e20, which no limit of bytes is."""
    _, port = serve(buses, "tcp")
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock, \
            sock.makefile("rb") as reader:
        for method, params in (("connect_via_queue", {"identifier": "big:*"}),
                               ("interconnect", {"addr": "tcp://127.0.0.1:1", "token": "t"})):
            request = {"jsonrpc": "2.0", "method": method, "id": 1,
                       "params": {**params, "max_size": given}}
            sock.sendall(json.dumps(request).encode() + b"\n")
            error = json.loads(reader.readline())["error"]
            assert error["code"] == p.INVALID_PARAMS, error
            assert problem in error["data"], error


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_node_forwards_within_the_max_size_its_peer_interconnected_with(
        buses: Buses, scheme: str) -> None:
    """Node A, with a smaller max_size, interconnects to B and gives its limit: B's link
    back keeps its batches within it, so a burst of small messages arrives whole (B's
    batches, as large as B's own limit, were refused by A, which ended the connection),
    and a message over it is not forwarded (counted at B) and leaves the link open."""
    node_a, _ = serve(buses, scheme, max_size=MAX_SIZE)
    node_b, port_b = serve(buses, scheme)
    at_a = berrymq.Queue("small:*", bus=node_a)
    node_a.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{port_b}", 60)
    for i in range(300):  # faster than A acknowledges: B coalesces them into batches
        node_b.twitter("small:x", "y" * 100, i)
    assert node_b.transport(scheme).flush(WAIT) is True
    assert [at_a.get(timeout=WAIT).args[1] for _ in range(300)] == list(range(300))
    node_b.twitter("small:x", "y" * LIMIT)  # one byte over A's limit, with its uid
    assert node_b.losses.counts == {"not forwarded: MessageTooLarge": 1}
    node_b.twitter("small:x", "after")
    assert at_a.get(timeout=WAIT).args == ("after",)

"""The transport contract (berrymq.transports.base): links, the in-memory link pair that
tests use instead of sockets, ask over every connection style of the local transport."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

import berrymq
from berrymq import Bus, Message
from berrymq.plugins import PluginHost
from berrymq.settings import Settings
from berrymq.transports.base import Link, asker, memory_link_pair, normalize_address


@pytest.fixture
def two_buses(berrymq_plugin_host: Any) -> Any:
    a = Bus(plugins=berrymq_plugin_host, name="a")
    b = Bus(plugins=berrymq_plugin_host, name="b")
    yield a, b
    a.close()
    b.close()


def test_a_memory_link_pair_interconnects_two_buses(two_buses: tuple[Bus, Bus]) -> None:
    a, b = two_buses
    to_b, to_a = memory_link_pair(a, b)
    assert isinstance(to_b, Link) and to_b.address == "memory://b"
    a.add_forwarder(to_b)
    b.add_forwarder(to_a)
    at_a, at_b = berrymq.Queue("job:*", bus=a), berrymq.Queue("job:*", bus=b)
    a.twitter("job:one", 1)
    b.twitter("job:two", 2)
    assert at_b.get(timeout=5).id == "job:one" and at_a.get(timeout=5).id == "job:one"
    assert at_a.get(timeout=5).id == "job:two" and at_b.get(timeout=5).id == "job:two"
    # nothing came back round: each bus saw each message once
    assert at_a.qsize() == 0 and at_b.qsize() == 0
    b.subscribe("price:quote", lambda message: 2 * message.args[0], weak=False)
    assert a.ask("price:quote", 4, timeout=5) == [8]


def test_a_batch_arrives_in_order_and_a_closed_link_refuses(two_buses: tuple[Bus, Bus]) -> None:
    a, b = two_buses
    to_b, _ = memory_link_pair(a, b)
    got = berrymq.Queue("n:*", bus=b)
    to_b.send_batch([Message("n:x", (i,)) for i in range(5)])
    assert [got.get(timeout=5).args[0] for _ in range(5)] == list(range(5))
    to_b.close()
    with pytest.raises(berrymq.ConnectionClosed, match="memory://b"):
        to_b.send_batch([Message("n:x", (5,))])


def test_an_asker_carries_requests_and_nothing_else(two_buses: tuple[Bus, Bus]) -> None:
    a, b = two_buses
    to_b, _ = memory_link_pair(a, b)
    a.add_forwarder(asker(to_b))
    got = berrymq.Queue("price:*", bus=b)
    b.subscribe("price:quote", lambda message: 3, weak=False)
    assert a.ask("price:quote", timeout=5) == [3]
    a.twitter("price:other")
    assert got.qsize() == 1  # the request reached b's queue; the twitter did not


def test_an_ask_over_several_links_to_one_bus_runs_its_receivers_once(
        two_buses: tuple[Bus, Bus]) -> None:
    """Each link that can carry requests carries the ask; the bus at their other end
    answers its uid once (as a node does over JSON-RPC), not once per link."""
    a, b = two_buses
    ran: list[int] = []
    b.subscribe("price:quote", lambda message: ran.append(1) or 7, weak=False)
    for i in range(3):
        to_b, _ = memory_link_pair(a, b, address_b=f"memory://b{i}")
        a.add_forwarder(asker(to_b))
    assert a.ask("price:quote", timeout=5) == [7]
    assert ran == [1]


@pytest.mark.parametrize("style", ["interconnect", "oneway", "queue"])
def test_ask_over_every_style_of_the_local_transport(two_buses: tuple[Bus, Bus], style: str) -> None:
    a, b = two_buses
    address = b.transport("local").listen(f"local://contract-{style}")
    b.subscribe("price:quote", lambda message: 9.5 * message.args[0], weak=False)
    transport = a.transport("local")
    if style == "interconnect":
        connection = transport.interconnect(address, 60)
    elif style == "oneway":
        connection = transport.connect_oneway(address, 60)
    else:
        connection = transport.connect_via_queue(address, berrymq.Identifier("q:*"), 60)
    assert a.ask("price:quote", 2, timeout=5) == [19.0]
    connection.close()
    assert a.ask("price:quote", 2, timeout=5) == []


def _doc_example() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    block = text.split("<!-- transport-example -->\n```python\n", 1)[1]
    return block.split("\n```", 1)[0]


@pytest.mark.parametrize("call", [
    normalize_address, berrymq.connect_oneway, berrymq.init_connection, berrymq.close_connection])
def test_an_address_that_cannot_be_read_is_named(call: Any) -> None:
    """The standard library's own error says only 'Invalid IPv6 URL': a program with
    several addresses could not tell which one was wrong."""
    with pytest.raises(ValueError, match=r"address 'tcp://\[::1:5' cannot be read: Invalid IPv6 URL"):
        call("tcp://[::1:5")


def test_the_transport_plugin_of_the_docs_works(tmp_path: Path) -> None:
    module = types.ModuleType("berrymq_memo_plugin")
    exec(compile(_doc_example(), "docs/plugins.md", "exec"), module.__dict__)
    host = PluginHost(Settings(), extra_plugins=[("memo", module)])
    server, client = Bus(plugins=host, name="server"), Bus(plugins=host, name="client")
    try:
        address = server.transport("memo").listen("memo://a")
        server.subscribe("price:quote", lambda message: 9.5 * message.args[0], weak=False)
        got = berrymq.Queue("job:*", bus=server)
        connection = client.transport("memo").interconnect(address, 60)
        client.twitter("job:done", 1)
        assert got.get(timeout=5).args == (1,)
        assert client.ask("price:quote", 2, timeout=5) == [19.0]
        connection.close()
        oneway = client.transport("memo").connect_oneway(address, 60)
        oneway.send(Message("job:sent", (2,)))
        assert got.get(timeout=5).args == (2,)
        assert client.ask("price:quote", 2, timeout=5) == [19.0]
        with pytest.raises(TypeError, match="no server-side queues"):
            client.transport("memo").connect_via_queue(address, berrymq.Identifier("q:*"), 60)
    finally:
        client.close()
        server.close()

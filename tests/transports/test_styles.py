"""berrymq.transports.styles: the three connection styles written once over any link,
tried here over the in-memory link pair (no transport, no socket)."""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from typing import Any

import pytest

import berrymq
from berrymq import Bus, ConnectionClosed, Message
from berrymq.transports.base import memory_link_pair
from berrymq.transports.styles import STYLES, LinkConnection


class ListInbox:
    """A stand-in for the peer's queue of style 03: messages put here come out of get."""

    def __init__(self) -> None:
        self.items: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.closed = False

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        return self.items.get(block, timeout)

    def get_nowait(self) -> Message:
        return self.items.get_nowait()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def pair(berrymq_plugin_host: Any) -> Iterator[tuple[Bus, Bus]]:
    here, there = Bus(plugins=berrymq_plugin_host, name="here"), Bus(plugins=berrymq_plugin_host,
                                                                       name="there")
    yield here, there
    here.close()
    there.close()


def connect(here: Bus, there: Bus, style: str, **extra: Any) -> LinkConnection:
    link, _ = memory_link_pair(here, there)
    return LinkConnection(here, link, style, **extra)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_sends_what_send_sends_and_asks(pair: tuple[Bus, Bus], style: str) -> None:
    here, there = pair
    got = berrymq.Queue("job:*", bus=there)
    there.subscribe("price:quote", lambda m: m.args[0] * 2, weak=False)
    inbox = ListInbox() if style == "queue" else None
    connection = connect(here, there, style, inbox=inbox)
    connection.send(Message("job:sent", (1,)))
    assert got.get(timeout=5).id == "job:sent"
    assert here.ask("price:quote", 4, timeout=5) == [8]  # every style carries requests
    here.twitter("job:twittered")
    if style == "interconnect":  # only style 01 forwards what the bus sends
        assert got.get(timeout=5).id == "job:twittered"
    else:
        assert got.qsize() == 0
    connection.close()


def test_the_queue_style_pulls_from_its_inbox_and_frees_it_on_close(pair: tuple[Bus, Bus]) -> None:
    here, there = pair
    inbox = ListInbox()
    connection = connect(here, there, "queue", inbox=inbox)
    inbox.items.put(Message("job:stored", (7,)))
    assert connection.get(timeout=5).args == (7,)
    with pytest.raises(queue.Empty):
        connection.get_nowait()
    connection.close()
    assert inbox.closed
    with pytest.raises(ConnectionClosed, match="closed"):
        connection.get_nowait()


def test_get_on_a_style_without_a_queue_is_a_clear_error(pair: tuple[Bus, Bus]) -> None:
    connection = connect(*pair, "oneway")
    with pytest.raises(TypeError, match="connect_via_queue"):
        connection.get(timeout=0)


@pytest.mark.parametrize(("style", "inbox", "error"), [
    ("both", None, "unknown connection style 'both'"),
    ("queue", None, "a queue connection needs an inbox"),
    ("oneway", ListInbox(), "and only it has one"),
])
def test_a_wrong_style_or_inbox_is_refused(pair: tuple[Bus, Bus], style: str, inbox: Any,
                                           error: str) -> None:
    with pytest.raises(ValueError, match=error):
        connect(*pair, style, inbox=inbox)


def test_a_lost_connection_says_why_and_closes_once(
        pair: tuple[Bus, Bus], caplog: pytest.LogCaptureFixture) -> None:
    here, there = pair
    closes: list[bool] = []
    connection = connect(here, there, "oneway", on_close=closes.append)
    interconnection = connect(here, there, "interconnect")
    with caplog.at_level(logging.WARNING, logger="berrymq"):
        connection.lost("the peer went away")
        connection.close()  # already closed: nothing more happens
        interconnection.lost("the peer went away")
        interconnection.lost("again")  # already lost: said once
    # an interconnection says so on the log, once (nothing calls it, and it closed without
    # a word unless messages were on their way); the one-way one says it at the next call
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"interconnect connection to {interconnection.address} lost: "
                           "the peer went away")
    assert closes == [False] and connection.closed
    assert here.requesters() == []  # the asker left the bus with it
    with pytest.raises(ConnectionClosed, match=r"is closed \(the peer went away\)"):
        connection.send(Message("job:late"))

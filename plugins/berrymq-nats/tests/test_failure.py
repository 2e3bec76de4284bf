"""Failures: a lost link buffers up to the limit and then refuses; reconnects re-subscribe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_nats import BrokerBufferFull, NatsBridge, NatsTransport
from berrymq_nats.losses import NOT_SENT_AT_CLOSE

from berrymq import Bus, Message, QueueFull, TransportError

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]


def bridge_of(bus: Bus, url: str, **options: Any) -> NatsBridge:
    transport = bus.transport("nats")
    assert isinstance(transport, NatsTransport)
    return transport.connect_broker(url, **options)


class Recorder:
    def __init__(self) -> None:
        self.args: list[Any] = []
        self.cond = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self.cond:
            self.args.append(message.args[0])
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.args) < count and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            return list(self.args)


def test_buffer_while_disconnected_then_refuse_then_deliver(
    nats_server: Any, make_bus: MakeBus, proxy_factory: Callable[[int], Any],
    poll: Callable[..., None],
) -> None:
    proxy = proxy_factory(nats_server.port)
    a, b = make_bus("a"), make_bus("b")
    ba = bridge_of(a, proxy.url, buffer_limit=5, reconnect_wait=0.05)
    bb = bridge_of(b, nats_server.url)
    got = Recorder()
    b.subscribe("job:*", got, weak=False)
    assert bb.flush()
    a.twitter("job:go", "before")
    assert got.wait(1) == ["before"]
    assert ba.flush()  # the server confirmed it: nothing is in flight when the link goes

    proxy.cut()  # a's link is down; the server and b stay up
    poll(lambda: ba.state == "reconnecting", what="the bridge to notice the lost link")
    for i in range(5):
        a.twitter("job:go", i)
    assert "buffered 5/5 while disconnected" in ba.status()
    with pytest.raises(BrokerBufferFull, match=r"buffer_limit = 5\); message job:go was refused") as info:
        a.twitter("job:go", "one too many")
    assert isinstance(info.value, TransportError) and isinstance(info.value, QueueFull)
    local = Recorder()
    a.subscribe("job:*", local, weak=False)
    with pytest.raises(BrokerBufferFull):
        a.twitter("job:go", "refused but delivered locally")
    assert local.args == ["refused but delivered locally"]  # the sender is told, not silent

    proxy.restore()
    poll(lambda: ba.state == "connected", what="the bridge to reconnect")
    assert ba.flush()
    assert got.wait(6) == ["before", 0, 1, 2, 3, 4]  # in order, none of the refused ones
    assert ba.reconnects == 1 and "buffered 0/5" in ba.status()
    assert ba.losses.total == 0 and "lost" not in ba.status()
    a.twitter("job:go", "after")
    assert got.wait(7)[-1] == "after"


def test_server_restart_reconnects_and_resubscribes(
    nats_server: Any, make_bus: MakeBus, poll: Callable[..., None],
) -> None:
    a, b = make_bus("a"), make_bus("b")
    ba = bridge_of(a, nats_server.url, reconnect_wait=0.05)
    bb = bridge_of(b, nats_server.url, reconnect_wait=0.05)
    got = Recorder()
    b.subscribe("job:*", got, weak=False)
    assert bb.flush()
    a.twitter("job:go", 1)
    assert got.wait(1) == [1]

    nats_server.stop()
    poll(lambda: ba.state == bb.state == "reconnecting", what="both bridges to see the loss")
    assert "reconnecting" in bb.status()
    nats_server.start()
    poll(lambda: ba.state == bb.state == "connected", what="both bridges to reconnect")
    assert bb.flush()  # b's subscriptions are back on the new server
    a.twitter("job:go", 2)
    assert got.wait(2) == [1, 2]
    # New subscriptions after the restart work too.
    later = Recorder()
    b.subscribe("late:*", later, weak=False)
    assert bb.flush()
    a.twitter("late:go", 3)
    assert later.wait(1) == [3]


def test_closing_while_unreachable_reports_what_was_not_sent(
    nats_server: Any, make_bus: MakeBus, poll: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = make_bus("a")
    ba = bridge_of(a, nats_server.url, reconnect_wait=0.05)
    nats_server.stop()
    poll(lambda: ba.state == "reconnecting", what="the bridge to see the loss")
    a.twitter("job:go", 1)
    a.twitter("job:go", 2)
    ba.close()
    assert "lost 2 message(s): 2 not sent: the bridge closed while NATS was unreachable" in caplog.text
    assert ba.losses.counts == {NOT_SENT_AT_CLOSE: 2}
    assert ba.state == "closed"
    assert ba.flush() is False  # something accepted since the last flush was lost

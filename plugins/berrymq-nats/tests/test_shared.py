"""Shared queues across buses (berrymq_nats.shared): competing consumers through NATS
queue groups, each message taken once, the sender's own shared queue competing too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from berrymq_nats.testing import Recorder, bridge_of, settle

import berrymq
from berrymq import Bus, Queue

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]


def test_shared_queues_compete_across_buses(nats_server: Any, make_bus: MakeBus) -> None:
    sender, w1, w2 = make_bus("sender"), make_bus("w1"), make_bus("w2")
    bs, b1, b2 = (bridge_of(x, nats_server.url) for x in (sender, w1, w2))
    q1 = Queue("task:*", shared=True, bus=w1)
    q2 = Queue("task:*", shared=True, bus=w2)
    watch1 = Recorder()  # a plain receiver still gets every message
    w1.subscribe("task:*", watch1, weak=False)
    settle(b1, b2)
    n = 200
    for i in range(n):
        sender.twitter("task:run", i)
    watch1.wait(n)
    settle(bs, b1, b2)
    taken = drain(q1) + drain(q2)
    assert sorted(taken) == list(range(n))
    assert len(watch1.messages) == n
    assert drain(q1) == drain(q2) == []


def drain(queue: Queue, quiet: float = 0.3) -> list[Any]:
    out = []
    while True:
        try:
            out.append(queue.get(timeout=quiet).args[0])
        except berrymq.Empty:
            return out


def test_shared_queue_of_the_sender_competes_too(nats_server: Any, make_bus: MakeBus) -> None:
    w1, w2 = make_bus("w1"), make_bus("w2")
    b1, b2 = bridge_of(w1, nats_server.url), bridge_of(w2, nats_server.url)
    q1 = Queue("task:*", shared=True, bus=w1)
    q2 = Queue("task:*", shared=True, bus=w2)
    standalone = Queue("task:*", bus=w2)
    settle(b1, b2)
    w1.twitter("task:run", "from w1")   # w1's own shared queue takes it, w2's does not
    w2.twitter("task:run", "from w2")
    assert sorted([standalone.get(timeout=10).args[0], standalone.get(timeout=10).args[0]]) == [
        "from w1", "from w2"]
    settle(b1, b2)
    assert drain(q1) == ["from w1"]
    assert drain(q2) == ["from w2"]


@pytest.mark.parametrize("style", ["interconnect", "oneway"])
def test_a_message_sent_is_taken_by_a_shared_queue_though_the_sender_has_one(
        nats_server: Any, make_bus: MakeBus, style: str) -> None:
    """``send`` does not deliver in the sending process, so its own shared queue did not
    take the message: a member of the group elsewhere must (it was skipped by all)."""
    sender, worker = make_bus("sender"), make_bus("worker")
    mine = Queue("work:*", shared=True, bus=sender)  # the sender's own member of the group
    theirs = Queue("work:*", shared=True, bus=worker)
    bw = bridge_of(worker, nats_server.url)
    transport = sender.transport("nats")
    if style == "oneway":
        connection = transport.connect_oneway(nats_server.url, 60)
    else:
        connection = bridge_of(sender, nats_server.url)
        settle(connection)
    settle(bw)
    connection.send(berrymq.Message("work:sent", (1,)))
    assert connection.flush(10)
    if style == "oneway":  # the one-way sender has no member subscribed: the worker's takes it
        assert theirs.get(timeout=10).args == (1,)
        assert mine.empty()
    else:  # one of the two members takes it, once
        assert drain(mine) + drain(theirs) == [1]


def test_a_shared_queue_reached_over_nats_and_an_interconnect_takes_a_message_once(
        nats_server: Any, make_bus: MakeBus) -> None:
    """The sender publishes to NATS and hands the message to a worker over an
    interconnect too: that worker's shared queue takes its copy from the interconnect,
    and the copy NATS's queue group may hand it as well is dropped (it took some twice).
    Once per process; across processes see docs/scaling.md (one entry into NATS)."""
    sender, near, far = make_bus("sender"), make_bus("near"), make_bus("far")
    queues = {"near": Queue("task:*", shared=True, bus=near),
              "far": Queue("task:*", shared=True, bus=far)}
    bridges = [bridge_of(bus, nats_server.url) for bus in (sender, near, far)]
    sender.transport("local").interconnect(near.transport("local").listen("local://near"),
                                           ttl=60)
    settle(*bridges)
    for i in range(200):
        sender.twitter("task:do", i)
    assert bridges[0].flush(10)
    taken = {name: drain(queue) for name, queue in queues.items()}
    assert sorted(taken["near"]) == list(range(200))  # every one, from the interconnect
    assert len(set(taken["far"])) == len(taken["far"])  # none twice in one process

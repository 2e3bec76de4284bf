"""The way in (berrymq_nats.inbound): messages from other buses reach the receivers once,
in order, with wildcards and namespaces as on one bus, on the delivery lane (never on the
I/O thread), following the bus's subscriptions. Each bus has its own NATS connection to a
real nats-server the test starts on a free port, as separate processes would."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import nats
import pytest
from berrymq_nats import NatsBridge
from berrymq_nats.inbound import (
    DEFAULT_ASK_TIMEOUT,
    LONGEST_ASK_TIMEOUT,
    MESSAGE_OVERHEAD,
    asker_timeout,
)
from berrymq_nats.losses import UNDECODABLE
from berrymq_nats.testing import Recorder, send_frames, settle

from berrymq import Bus, Message
from berrymq.identifier import parse
from berrymq.transports.ioloop import io_loop

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]
Pair = tuple[Bus, NatsBridge, Bus, NatsBridge]


def test_messages_cross_with_args_and_kwargs(pair: Pair) -> None:
    a, _ba, b, bb = pair
    got = Recorder()
    b.subscribe("job:done", got, weak=False)
    settle(bb)
    a.twitter("job:done", 1, "two", [3], user="ü", n={"x": None})
    (message,) = got.wait(1)
    assert message.id == "job:done"
    assert message.args == (1, "two", [3])
    assert message.kwargs == {"user": "ü", "n": {"x": None}}
    assert message.user == "ü"
    assert message.uid is not None and message.hops == 1


def test_wildcards_both_ways(pair: Pair) -> None:
    a, ba, b, bb = pair
    exact, by_name, by_action = Recorder(), Recorder(), Recorder()
    b.subscribe("job:stop", exact, weak=False)
    b.subscribe("job:*", by_name, weak=False)
    b.subscribe("*:stop", by_action, weak=False)
    settle(bb)
    a.twitter("*:stop", "wild sender")      # reaches a remote job:stop receiver
    a.twitter("job:stop", "exact sender")   # reaches a remote job:* receiver
    a.twitter("job:*", "both")
    a.twitter("*", "everything")
    a.twitter("other:go", "nobody")
    a.twitter("job:go", "by name only")
    by_name.wait(5)
    by_action.wait(4)
    exact.wait(4)
    settle(ba, bb)
    assert exact.ids == ["*:stop", "job:stop", "job:*", "*:*"]
    assert by_name.ids == ["*:stop", "job:stop", "job:*", "*:*", "job:go"]
    assert by_action.ids == ["*:stop", "job:stop", "job:*", "*:*"]


def test_each_message_once_per_process_and_no_echo(
    pair: Pair,
) -> None:
    a, ba, b, bb = pair
    on_a, on_b = Recorder(), Recorder()
    a.subscribe("*:*", on_a, weak=False)
    # Overlapping patterns: job:stop arrives through two NATS subscriptions of b.
    b.subscribe("job:*", on_b, weak=False)
    b.subscribe("*:stop", on_b, weak=False)
    settle(ba, bb)
    for i in range(20):
        a.twitter("job:stop", i)
    b.twitter("job:stop", "from b")
    on_b.wait(40 + 2)
    on_a.wait(21)
    settle(ba, bb)
    assert [m.args[0] for m in on_a.messages] == [*range(20), "from b"]
    # two receivers on b, each gets each message once, in the order sent
    got_b = [m.args[0] for m in on_b.messages]
    assert got_b.count("from b") == 2  # delivered locally, not echoed back by NATS
    assert [x for x in got_b if x != "from b"] == [x for i in range(20) for x in (i, i)]


def test_local_names_never_leave(pair: Pair) -> None:
    a, ba, b, bb = pair
    got = Recorder()
    b.subscribe("*", got, weak=False)
    settle(bb)
    assert ba.client is not None
    before = ba.client.stats["out_msgs"]
    a.twitter("_secret:go", 1)
    a.twitter("public:go", 2)
    got.wait(1)
    settle(ba)
    assert got.ids == ["public:go"]
    assert ba.client.stats["out_msgs"] == before + 1


def test_namespaces_stay_apart(pair: Pair) -> None:
    a, ba, b, bb = pair
    ops, default = Recorder(), Recorder()
    b.subscribe("job@ops:*", ops, weak=False)
    b.subscribe("job:*", default, weak=False)
    settle(bb)
    a.twitter("job@ops:go", 1)
    a.twitter("job:go", 2)
    a.twitter("*@ops:stop", 3)
    ops.wait(2)
    default.wait(1)
    settle(ba, bb)
    assert ops.ids == ["job@ops:go", "*@ops:stop"]
    assert default.ids == ["job:go"]


def test_subscriptions_follow_registrations(pair: Pair, nats_server: Any) -> None:
    a, ba, b, bb = pair
    assert bb.client is not None
    settle(bb)
    assert bb.following.plain == {}  # nobody listens: no subscription, no traffic
    got = Recorder()
    handle = b.subscribe("job:*", got, weak=False)
    settle(bb)
    assert set(bb.following.plain) == {"berrymq.~.job.*", "berrymq.~.%2A.*"}
    # What the server itself says: nothing that carries unrelated traffic, no '>'.
    on_server = [s for conn in nats_server.subjects_of() for s in conn]
    assert {"berrymq.~.job.*", "berrymq.~.%2A.*"} <= set(on_server)
    assert not [s for s in on_server if s.endswith(">") or ".other." in s], on_server
    before = bb.client.stats["in_msgs"]
    a.twitter("other:go", 1)      # no interest anywhere: the server drops it
    a.twitter("job:go", 2)
    got.wait(1)
    settle(ba, bb)
    assert bb.client.stats["in_msgs"] == before + 1
    handle.cancel()
    settle(bb)
    assert bb.following.plain == {}
    a.twitter("job:go", 3)
    settle(ba, bb)
    assert bb.client.stats["in_msgs"] == before + 1
    assert got.ids == ["job:go"]


def test_weakly_held_receiver_that_dies_unsubscribes(
    pair: Pair,
) -> None:
    _a, _ba, b, bb = pair

    class Holder:
        def on(self, message: Message) -> None:
            pass

    holder = Holder()
    b.subscribe("gone:*", holder.on)
    settle(bb)
    assert "berrymq.~.gone.*" in bb.following.plain
    del holder
    b.subscriptions()  # the bus notices the death on its next look
    settle(bb)
    assert bb.following.plain == {}


def test_talk_replies_come_back(pair: Pair) -> None:
    a, ba, b, bb = pair
    b.subscribe("calc:double", lambda m: m.args[0] * 2, weak=False)
    answers = Recorder()
    a.subscribe("calc:answer", answers, weak=False)
    settle(ba, bb)
    a.talk("calc:double", "calc:answer", 21)
    (answer,) = answers.wait(1)
    assert answer.args == (42,)



def test_escaped_identifiers_cross(pair: Pair) -> None:
    a, _ba, b, bb = pair
    everything = Recorder()
    b.subscribe("*", everything, weak=False)
    b.subscribe("*@a.b:*", everything, weak=False)
    settle(bb)
    for ident in ("v1.2:a>b", "café:ünï", "v1.2@a.b:x>y", "_local:no"):
        a.twitter(ident, ident)
    everything.wait(3)
    settle(bb)
    assert everything.args == ["v1.2:a>b", "café:ünï", "v1.2@a.b:x>y"]
    assert [m.identifier.namespace for m in everything.messages] == [None, None, "a.b"]


def test_receivers_run_on_the_delivery_lane(pair: Pair) -> None:
    a, ba, b, bb = pair
    threads: list[str] = []
    b.subscribe("job:*", lambda m: threads.append(threading.current_thread().name), weak=False)
    settle(bb)
    a.twitter("job:go")
    settle(ba, bb)  # the message reached the server, then b had what came before its PONG
    assert threads == ["berrymq-delivery"]
    assert "berrymq-nats" not in {t.name for t in threading.enumerate()}  # no loop of its own


def test_what_waits_on_the_lane_is_counted_with_what_each_message_holds(
        pair: Pair, nats_server: Any, poll: Callable[..., None]) -> None:
    """Counted by payload alone, small messages behind a busy receiver filled memory long
    before the lane's bound in bytes: 13-byte messages took 2.5 million (827 MB) to
    reach 31 MiB of 64. Each now counts with what it holds besides (MESSAGE_OVERHEAD)."""
    _, _, b, bb = pair
    entered, release = threading.Event(), threading.Event()
    got = []

    def busy(message: Message) -> None:
        entered.set()
        release.wait(30)
        got.append(message)

    b.subscribe("a:b", busy, weak=False)
    settle(bb)
    lane = io_loop.lane
    assert lane.wait_idle(10)
    saved, lane.max_bytes = lane.max_bytes, 2 * 2**20
    count = 40_000
    try:
        payload = b'["a:b",[],{}]'
        subject = bb.subjects.subject(parse("a:b")).encode()
        send_frames(nats_server.url, *[b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload)]
                    * count)
        assert entered.wait(10)
        poll(lambda: not lane.has_room(MESSAGE_OVERHEAD * 1000), 10, "the lane to fill up")
        assert bb.inbound.gathered < count  # reading waits for room: the rest is unread
    finally:
        lane.max_bytes = saved
        release.set()
    poll(lambda: len(got) == count, 30, "every message, once the receiver is free")


def test_a_slow_receiver_does_not_stall_nats_io(pair: Pair, poll: Callable[..., None]) -> None:
    a, ba, b, bb = pair
    entered, release = threading.Event(), threading.Event()

    def slow(message: Message) -> None:
        entered.set()
        release.wait(20)

    after = Recorder()
    b.subscribe("slow:*", slow, weak=False)
    b.subscribe("after:*", after, weak=False)
    settle(bb)
    nc = bb.client
    assert nc is not None
    try:
        a.twitter("slow:go")
        assert entered.wait(10)
        read = nc.stats["in_msgs"]
        a.twitter("after:go", 1)
        # b's connection goes on reading (and answering PINGs) while its receiver blocks.
        poll(lambda: nc.stats["in_msgs"] > read, 10, "b to read the next message")
        assert io_loop.run(nc.flush(5), 10) is None
        assert settle(ba) is None and after.messages == []
    finally:
        release.set()
    assert after.wait(1)[0].args == (1,)


def test_ask_from_a_receiver_of_a_nats_message(pair: Pair) -> None:
    a, ba, b, bb = pair
    a.subscribe("calc:double", lambda m: m.args[0] * 2, weak=False)
    answers = Recorder()
    b.subscribe("job:go", lambda m: answers(Message("job:answer", b.ask("calc:double", 21, timeout=5))),
                weak=False)
    settle(ba, bb)
    a.twitter("job:go")
    assert answers.wait(1)[0].args == (42,)


def test_a_full_lane_pauses_reading_and_loses_nothing(pair: Pair, poll: Callable[..., None]) -> None:
    a, ba, b, bb = pair
    entered, release = threading.Event(), threading.Event()
    got: list[Any] = []

    def receive(message: Message) -> None:
        if message.args[0] == 0:
            entered.set()
            release.wait(20)
        got.append(message.args[0])

    padding = "x" * 10_000  # 300 messages of 10 kB: many reads of the socket
    b.subscribe("job:*", receive, weak=False)
    settle(bb)
    lane = io_loop.lane
    saved = lane.max_items
    lane.max_items = 1
    try:
        a.twitter("job:go", 0)
        assert entered.wait(10)
        for i in range(1, 300):
            a.twitter("job:go", i, padding)
        settle(ba)
        # b's reading task waits for room in the full lane: b's connection is not read.
        poll(lambda: lane._waiters, 10, "the reading task to wait for room")
        assert lane.pending[0] == 1
    finally:
        lane.max_items = saved
        release.set()
    settle(bb)
    assert got == list(range(300))


def test_the_payloads_are_berrymqs_one_wire_form(pair: Pair, nats_server: Any,
                                                  poll: Callable[..., None]) -> None:
    """What crosses NATS is berrymq.wire's form, as over JSON-RPC: a message is
    ``[identifier, args, kwargs, extras]`` and replies are ``{"value"}``/``{"error"}``
    entries, so a plain NATS client can take part."""
    a, ba, b, bb = pair
    got = Recorder()
    b.subscribe("job:go", got, weak=False)
    b.subscribe("calc:add", lambda m: m.args[0] + 1, weak=False)
    settle(ba, bb)
    job, calc = (ba.subjects.subject(parse(text)) for text in ("job:go", "calc:add"))

    async def as_a_plain_client() -> tuple[bytes, list[bytes]]:
        nc = await nats.connect(nats_server.url)
        try:
            sub = await nc.subscribe(job)
            answers = await nc.subscribe("raw.inbox")
            await nc.flush()
            a.twitter("job:go", 1, k="v")
            sent = (await sub.next_msg(timeout=10)).data
            await nc.publish(job, b'["job:go",["raw"],{},{"hops":0}]')
            await nc.publish(job, b'["job:go",["not", "a", "message"]]')
            await nc.publish(calc, b'["calc:add",[41],{},{"uid":"raw-client-uid-0001","timeout":5}]',
                             reply="raw.inbox")
            replies = [(await answers.next_msg(timeout=10)).data for _ in range(2)]
            return sent, replies
        finally:
            await nc.close()

    sent, (ack, replies) = asyncio.run(as_a_plain_client())
    ident, args, kwargs, extras = json.loads(sent)
    assert (ident, args, kwargs) == ("job:go", [1], {"k": "v"}) and set(extras) == {"uid"}
    assert json.loads(ack) == {"k": "a", "n": b.node_id}
    assert json.loads(replies) == {"k": "r", "n": b.node_id, "r": [{"value": 42}]}
    assert got.wait(2) and got.args == [1, "raw"]
    poll(lambda: bb.losses.counts.get(UNDECODABLE) == 1, what="the broken one counted")


@pytest.mark.parametrize(("sent", "used"), [
    (0.3, 0.3), (2, 2.0), (1e300, LONGEST_ASK_TIMEOUT), (None, DEFAULT_ASK_TIMEOUT),
    (True, DEFAULT_ASK_TIMEOUT), (-1, DEFAULT_ASK_TIMEOUT), (0, DEFAULT_ASK_TIMEOUT),
    (float("nan"), DEFAULT_ASK_TIMEOUT), ("5", DEFAULT_ASK_TIMEOUT),
])
def test_an_askers_timeout_from_the_wire_is_used_only_when_usable(sent: object,
                                                                  used: float) -> None:
    """Any NATS client may send a request's ``timeout``: one that would overflow a wait
    (1e300) or make no sense counts as a day, or as the default."""
    assert asker_timeout(sent) == used


def test_a_connection_lost_while_the_receivers_are_behind_says_so(
    pair: Pair, nats_server: Any, poll: Callable[..., None], caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver slower than the sender: the lane fills, the bridge stops reading, and a
    server cuts such a connection off as a slow consumer, dropping what it held for it.
    The bridge's log said only that it lost its connection; it says why it may have, and
    on its return how long it was away, what was published meanwhile not received."""
    a, ba, b, bb = pair
    released = threading.Event()
    b.subscribe("job:*", lambda m: released.wait(20.0), weak=False)
    settle(ba, bb)
    lane = io_loop.lane
    old = lane.max_bytes
    lane.max_bytes = 64 * 1024  # a lane that a few hundred messages fill
    try:
        with caplog.at_level(logging.INFO, logger="berrymq.nats"):
            for i in range(50):  # in rounds: read in as many chunks, as many pieces of work
                for j in range(40):
                    a.twitter("job:n", i, j, "x" * 200)
                assert ba.flush(10.0)
            poll(lambda: bb.inbound.behind)
            nats_server.stop()  # as a server cuts a slow consumer off
            released.set()  # the bridge reads again, and finds its connection gone
            poll(lambda: bb.state != "connected")
    finally:
        released.set()
        lane.max_bytes = old
    lost = {r.getMessage().split()[4]: r.getMessage() for r in caplog.records
            if "lost its connection" in r.getMessage()}  # by the name of the bus
    assert "receivers were behind (the delivery lane full)" in lost[b.name], lost
    assert "slow consumer" in lost[b.name]
    assert "behind" not in lost[a.name]  # the sender was not

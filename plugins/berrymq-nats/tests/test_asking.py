"""ask through NATS (berrymq_nats.asking): replies from every process that listens,
errors as entries, a deadline; and no waiting beyond the replies that can be expected:
the bridges know which peers listen to what, probe a silent one, and only wait
``ask_gather`` for a process they did not know of."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import nats
import pytest
from berrymq_nats import NatsBridge
from berrymq_nats.inbound import answer_lane
from berrymq_nats.losses import REFUSED_HERE, REQUEST_REFUSED
from berrymq_nats.testing import Recorder, bridge_of, held_io_loop, settle
from berrymq_nats.transport import NatsTransport

from berrymq import Bus, Message, Queue, ReplyError
from berrymq.identifier import Identifier
from berrymq.testing import free_port

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]
Poll = Callable[..., None]
Pair = tuple[Bus, NatsBridge, Bus, NatsBridge]


def test_ask_through_nats(nats_server: Any, make_bus: MakeBus,
                          pair: Pair) -> None:
    a, ba, b, bb = pair
    c = make_bus("c")
    bc = bridge_of(c, nats_server.url)
    a.subscribe("calc:*", lambda m: "local", weak=False)
    b.subscribe("calc:*", lambda m: m.args[0] * 2, weak=False)
    c.subscribe("calc:double", lambda m: m.args[0] * 3, weak=False)

    def broken(message: Message) -> None:
        raise KeyError("nope")

    c.subscribe("calc:double", broken, weak=False)
    settle(ba, bb, bc)
    replies = a.ask("calc:double", 7, timeout=10)
    assert replies[0] == "local"
    remote = replies[1:]
    assert sorted(r for r in remote if not isinstance(r, ReplyError)) == [14, 21]
    (error,) = [r for r in remote if isinstance(r, ReplyError)]
    assert error.exception_type == "KeyError" and error.node == c.node_id
    # Nobody listens: NATS says "no responders", the answer is immediate.
    started = time.monotonic()
    assert a.ask("calc:half", 1, timeout=10) == ["local", 2]
    assert a.ask("nobody:here", timeout=10) == []
    assert time.monotonic() - started < 5


def test_a_full_queue_of_the_answering_process_does_not_take_its_replies(pair: Pair) -> None:
    """A queue is not a replying receiver: the answering process's full queue gives a
    ``QueueFull`` entry naming it after the replies, counted where it refused (the whole
    answer was one ``QueueFull`` entry for the process, its receivers' replies lost)."""
    a, _ba, b, bb = pair
    full = Queue("price:*", maxsize=1, on_full="refuse", bus=b)
    b.subscribe("price:quote", lambda m: m.args[0] * 9.5, weak=False)
    b.twitter("price:fill")
    settle(bb)
    reply, refusal = a.ask("price:quote", 2, timeout=10)
    assert reply == 19.0
    assert isinstance(refusal, ReplyError) and refusal.exception_type == "QueueFull"
    assert refusal.receiver == "queue price:*" and refusal.node == b.node_id
    assert bb.losses.counts == {REFUSED_HERE: 1}
    assert full.qsize() == 1


def test_ask_times_out_on_a_slow_receiver(pair: Pair) -> None:
    a, _ba, b, bb = pair
    release = threading.Event()
    b.subscribe("slow:op", lambda m: release.wait(20), weak=False)
    settle(bb)
    started = time.monotonic()
    try:
        (reply,) = a.ask("slow:op", timeout=0.5)
    finally:
        release.set()
    assert time.monotonic() - started < 2.0
    assert isinstance(reply, ReplyError) and reply.exception_type == "TimeoutError"


@pytest.mark.parametrize("local", [False, True], ids=["remote-only", "with-local"])
def test_a_slow_process_does_not_lose_the_replies_that_came(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any], poll: Poll, local: bool,
) -> None:
    """At the deadline the asker returns the replies that came and one TimeoutError entry
    naming each process that acknowledged and did not reply (not one entry for NATS as a
    whole), whether or not local receivers are asked beside NATS. (The slow responder is
    another process: the processes here share one answering thread.)"""
    a, b = make_bus("a"), make_bus("b")
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url)
    b.subscribe("price:quote", lambda m: "fast", weak=False)
    if local:
        a.subscribe("price:quote", lambda m: "local", weak=False)
    worker = workers(nats_server.url)
    worker.call("hold", "price:quote")
    worker.call("flush")
    slow = worker.call("node")
    settle(ba, bb)
    poll(knows(ba, b, "price:quote"), what="a to learn b's patterns")
    poll(lambda: ba.asking.peers.get(slow), what="a to learn the worker's patterns")
    started = time.monotonic()
    try:
        replies = a.ask("price:quote", timeout=0.5)
    finally:
        worker.call("release")
    assert time.monotonic() - started < 2.0
    if local:
        assert replies[0] == "local"
        replies = replies[1:]
    assert "fast" in replies, replies
    (silent,) = [r for r in replies if isinstance(r, ReplyError)]
    assert silent.exception_type == "TimeoutError" and silent.node == slow
    assert len(replies) == 2


def not_json(message: Message) -> object:
    """A receiver whose reply JSON cannot hold."""
    return object()


def test_a_reply_that_is_not_json_names_its_receiver(pair: Pair, poll: Poll) -> None:
    a, ba, b, bb = pair
    b.subscribe("odd:reply", lambda m: 1, weak=False)
    b.subscribe("odd:reply", not_json, weak=False)
    settle(bb)
    poll(knows(ba, b, "odd:reply"), what="a to learn b's patterns")
    ok, odd = a.ask("odd:reply", timeout=10)
    assert ok == 1
    assert isinstance(odd, ReplyError) and odd.exception_type == "TypeError"
    assert odd.receiver.endswith("not_json") and odd.node == b.node_id


def huge_reply(message: Message) -> str:
    """A reply over NATS's max_payload (1 MiB by default) as JSON."""
    return "x" * (2 * 1024 * 1024)


def test_a_reply_over_max_payload_is_an_error_entry_at_once(pair: Pair, poll: Poll) -> None:
    """nats-py would refuse the responder's answer on its I/O thread, and the asker wait its
    whole timeout: the too large reply becomes a MessageTooLarge entry naming its receiver,
    and the reply that fits still comes."""
    a, ba, b, bb = pair
    b.subscribe("big:reply", lambda m: "small", weak=False)
    b.subscribe("big:reply", huge_reply, weak=False)
    settle(bb)
    poll(knows(ba, b, "big:reply"), what="a to learn b's patterns")
    started = time.monotonic()
    small, big = a.ask("big:reply", timeout=20)
    assert time.monotonic() - started < 10
    assert small == "small"
    assert isinstance(big, ReplyError) and big.exception_type == "MessageTooLarge"
    assert big.receiver.endswith("huge_reply") and big.node == b.node_id
    assert "max_payload" in big.message
    assert bb.losses.total == 0  # nothing was handed to nats-py to fail there


def knows(bridge: NatsBridge, bus: Bus, pattern: str) -> Callable[[], bool]:
    """Whether ``bridge`` knows that ``bus`` answers ``pattern``."""
    return lambda: any(str(p) == pattern for p in bridge.asking.peers.get(bus.node_id, ()))


def test_ask_returns_once_the_expected_replies_are_in(
    nats_server: Any, make_bus: MakeBus, poll: Poll,
) -> None:
    a, b, c = make_bus("a"), make_bus("b"), make_bus("c")
    ba = bridge_of(a, nats_server.url, ask_gather=30.0)  # a fixed wait would show
    bb, bc = bridge_of(b, nats_server.url), bridge_of(c, nats_server.url)
    b.subscribe("calc:*", lambda m: "b", weak=False)
    c.subscribe("calc:add", lambda m: "c", weak=False)
    settle(bb, bc)
    poll(knows(ba, b, "calc:*"), what="a to learn b's patterns")
    poll(knows(ba, c, "calc:add"), what="a to learn c's patterns")
    assert ba.asking.expected(b.subscriptions()[0].pattern) >= {b.node_id}
    for _ in range(20):
        started = time.monotonic()
        assert sorted(a.ask("calc:add", timeout=30)) == ["b", "c"]
        assert time.monotonic() - started < 5
    assert a.ask("calc:sub", timeout=30) == ["b"]
    assert "2 peers" in ba.status()


def test_a_process_not_in_the_view_is_waited_for(
    nats_server: Any, make_bus: MakeBus, poll: Poll,
) -> None:
    a, b = make_bus("a"), make_bus("b")
    ba = bridge_of(a, nats_server.url, ask_gather=0.5)
    bb = bridge_of(b, nats_server.url)
    b.subscribe("calc:*", lambda m: "b", weak=False)
    settle(bb)
    poll(knows(ba, b, "calc:*"), what="a to learn b's patterns")
    ba.asking.peers.clear()  # as if b had joined a moment ago
    started = time.monotonic()
    assert a.ask("calc:add", timeout=10) == ["b"]
    assert time.monotonic() - started >= 0.5  # it acknowledged unannounced: a gathers


def test_a_process_not_in_the_view_is_waited_for_while_its_receivers_run(
    nats_server: Any, make_bus: MakeBus, poll: Poll,
) -> None:
    """It acknowledged and its receiver takes longer than ask_gather: the ask returned at
    ask_gather with a TimeoutError entry, and its reply was lost (found by a review of the
    probes of working peers, which only peers of the view get)."""
    a, b = make_bus("a"), make_bus("b")
    ba = bridge_of(a, nats_server.url, ask_gather=0.1)
    bb = bridge_of(b, nats_server.url)
    release = threading.Event()
    b.subscribe("calc:*", lambda m: release.wait(10) and "b", weak=False)
    settle(bb)
    poll(knows(ba, b, "calc:*"), what="a to learn b's patterns")
    ba.asking.peers.clear()  # as if b had joined a moment ago
    replies: list[Any] = []
    asker = threading.Thread(target=lambda: replies.extend(a.ask("calc:add", timeout=10)))
    asker.start()
    poll(lambda: any(b.node_id in w.acked for w in list(ba.asking._asks.values())),
         what="b to acknowledge")
    asker.join(0.5)  # five times ask_gather: it still waits for b
    assert asker.is_alive(), replies
    release.set()
    asker.join(10)
    assert replies == ["b"]

def test_a_killed_peer_is_probed_not_waited_for(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any], poll: Poll,
) -> None:
    a, c = make_bus("a"), make_bus("c")
    ba, bc = bridge_of(a, nats_server.url), bridge_of(c, nats_server.url)
    c.subscribe("calc:*", lambda m: "c", weak=False)
    settle(bc)
    before = set(ba.asking.peers)
    worker = workers(nats_server.url)
    worker.call("reply", "calc:*", '"worker"')
    worker.call("flush")
    poll(lambda: any(ba.asking.peers.get(n) for n in set(ba.asking.peers) - before),
         what="a to learn the worker's patterns")
    (dead,) = [n for n in set(ba.asking.peers) - before if ba.asking.peers[n]]
    assert sorted(a.ask("calc:add", timeout=10)) == ["c", "worker"]
    worker.process.kill()  # no goodbye
    worker.process.wait(10)
    started = time.monotonic()
    assert a.ask("calc:add", timeout=10) == ["c"]
    assert time.monotonic() - started < 5  # NATS said the worker is gone: no deadline wait
    assert dead not in ba.asking.peers


def test_a_peer_killed_while_its_receivers_run_is_noticed_before_the_deadline(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any], poll: Poll,
) -> None:
    """It acknowledged the ask, then was killed (no ``bye``) before it replied: the ask
    waited out its whole timeout and gave a TimeoutError entry (found by an outside
    audit); a process that acknowledged is probed while it works, and NATS's "no
    responders" ends its wait."""
    a, c = make_bus("a"), make_bus("c")
    ba, bc = bridge_of(a, nats_server.url), bridge_of(c, nats_server.url)
    c.subscribe("slow:*", lambda m: "c", weak=False)
    settle(bc)
    worker = workers(nats_server.url)
    worker.call("hold", "slow:*")  # its receiver returns only once released
    worker.call("flush")
    dead = worker.call("node")
    poll(lambda: ba.asking.peers.get(dead), what="a to learn the worker's patterns")
    replies: list[Any] = []
    asker = threading.Thread(target=lambda: replies.extend(a.ask("slow:x", timeout=30)))
    started = time.monotonic()
    asker.start()
    poll(lambda: any(dead in w.acked and bc.bus.node_id in w.replies
                     for w in list(ba.asking._asks.values())),
         what="the worker to acknowledge and c to reply")
    worker.process.kill()  # no goodbye, its receiver still running
    worker.process.wait(10)
    asker.join(15)
    assert not asker.is_alive()
    assert time.monotonic() - started < 10  # not the ask's 30 s
    (gone,) = [r for r in replies if isinstance(r, ReplyError)]
    assert [r for r in replies if r is not gone] == ["c"]
    assert (gone.exception_type, gone.node) == ("ConnectionClosed", dead)
    assert dead not in ba.asking.peers

def test_a_peer_reconnecting_while_its_receiver_runs_keeps_its_reply(
    nats_server: Any, make_bus: MakeBus, proxy_factory: Callable[[int], Any], poll: Poll,
) -> None:
    """Its link to NATS drops for a moment after it acknowledged (found by a review): one
    "no responders" to a probe took it for gone, its reply was lost and it left the view;
    it takes GONE_AFTER probes in a row now."""
    a, b = make_bus("a"), make_bus("b")
    ba = bridge_of(a, nats_server.url)
    relay = proxy_factory(nats_server.port)
    bb = bridge_of(b, relay.url, reconnect_wait=1.5)
    release = threading.Event()
    b.subscribe("slow:*", lambda m: release.wait(10) and "b", weak=False)
    settle(ba, bb)
    poll(lambda: ba.asking.peers.get(b.node_id), what="a to know b")
    replies: list[Any] = []
    asker = threading.Thread(target=lambda: replies.extend(a.ask("slow:x", timeout=15)))
    asker.start()
    poll(lambda: any(b.node_id in w.acked for w in list(ba.asking._asks.values())),
         what="b to acknowledge")
    relay.cut()  # b's link drops while its receiver runs, and comes back after 1.5 s
    relay.restore()
    poll(lambda: any(w.missed.get(b.node_id) for w in list(ba.asking._asks.values())),
         what="a probe to find nobody for b")
    poll(lambda: bb.outbox.connected and bb.state == "connected", what="b to reconnect")
    release.set()
    asker.join(20)
    assert replies == ["b"]
    assert b.node_id in ba.asking.peers


def test_an_ask_made_while_the_bridge_connects_waits_for_the_connection(
    nats_server: Any, make_bus: MakeBus, poll: Poll,
) -> None:
    """A program joined by its settings file does not wait for the connection, and its
    first asks failed at once with ConnectionClosed "not connected (connecting)" whatever
    their timeout (found by an outside audit), while a message sent then waits in the
    buffer. An ask waits for the first connection now, within its timeout."""
    b = make_bus("b")
    b.subscribe("q:*", lambda m: f"b{m.args[0]}", weak=False)
    bb = bridge_of(b, nats_server.url)
    settle(bb)
    nats_server.process.send_signal(signal.SIGSTOP)  # connections wait for its INFO
    try:
        a = make_bus("a")
        transport = a.transport("nats")
        assert isinstance(transport, NatsTransport)
        ba = transport.connect_broker(nats_server.url, wait=False, connect_timeout=20)
        replies: list[Any] = []
        asker = threading.Thread(target=lambda: replies.extend(a.ask("q:x", 1, timeout=30)))
        asker.start()
        asker.join(0.5)
        assert ba.state == "connecting" and asker.is_alive(), replies  # it waits
    finally:
        nats_server.process.send_signal(signal.SIGCONT)
    asker.join(30)
    assert not asker.is_alive()
    assert replies == ["b1"]


def test_an_ask_to_a_bridge_whose_attempt_failed_fails_at_once_naming_it(
        make_bus: MakeBus, poll: Poll) -> None:
    """Waiting is for a first connection under way: once an attempt failed (the server is
    down, the bridge retries for ever by default) an ask is not held for its whole
    timeout, and it names the state (found by a review)."""
    a = make_bus("a")
    transport = a.transport("nats")
    assert isinstance(transport, NatsTransport)
    ba = transport.connect_broker(f"nats://127.0.0.1:{free_port()}", wait=False,
                                  reconnect_wait=0.1)
    poll(ba.attempt_failed.is_set, what="an attempt to fail")
    started = time.monotonic()
    (entry,) = a.ask("q:x", 1, timeout=30)
    assert time.monotonic() - started < 10  # not the ask's 30 s
    assert isinstance(entry, ReplyError) and entry.exception_type == "ConnectionClosed"
    assert "is not connected (connecting; last error: " in entry.message, entry


def test_a_start_that_died_after_the_connection_was_made_is_said_and_holds_no_ask(
        make_bus: MakeBus, poll: Poll, caplog: pytest.LogCaptureFixture) -> None:
    """A server that answers the client's first PING, then nothing: the bridge's start
    fails after nats-py connected (its subscriptions are never confirmed). The state said
    "connecting" for good, nothing was logged, and every ask waited connect_timeout for
    it (found by two reviews). The state, the log and the ask name the failure, and the
    ask is refused at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def answer_once() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            held.append(conn)
            conn.sendall(b'INFO {"server_id":"mute","version":"2.10.0","proto":1,'
                         b'"headers":true,"max_payload":1048576}\r\n')
            seen = b""
            while b"PING\r\n" not in seen and (chunk := conn.recv(65536)):
                seen += chunk
            conn.sendall(b"PONG\r\n")
            while conn.recv(65536):  # and nothing more
                pass

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    try:
        a = make_bus("a")
        transport = a.transport("nats")
        assert isinstance(transport, NatsTransport)
        ba = transport.connect_broker(f"nats://127.0.0.1:{listener.getsockname()[1]}",
                                      wait=False, connect_timeout=2)
        poll(lambda: ba.tasks and ba.tasks[-1].done(), what="the bridge's start to fail")
        failure = "the start failed: TimeoutError: the NATS server did not answer a PING"
        assert ba.state.startswith(f"connecting ({failure}"), ba.state
        assert f"could not start on {ba.address}: TimeoutError" in caplog.text
        started = time.monotonic()
        (entry,) = a.ask("q:x", 1, timeout=30)
        assert time.monotonic() - started < 1.5  # not connect_timeout (2 s) again
        assert isinstance(entry, ReplyError) and entry.exception_type == "ConnectionClosed"
        assert failure in entry.message, entry
    finally:
        for sock in (*held, listener):  # (shutdown wakes a recv or accept; close does not)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread.join(10)
        assert not thread.is_alive()


def _raw_client(url: str, setup: Callable[[Any], Any]) -> Callable[[], None]:
    """A NATS client of nats-py's own on a thread, set up by ``setup(nc)``; returns what
    stops it."""
    ready, stopped = threading.Event(), threading.Event()
    holder: dict[str, Any] = {}

    async def run() -> None:
        nc = await nats.connect(url)
        stop = asyncio.Event()
        holder["stop"] = (asyncio.get_running_loop(), stop)
        await setup(nc)
        await nc.flush()
        ready.set()
        await stop.wait()
        await nc.close()
        stopped.set()

    threading.Thread(target=lambda: asyncio.run(run()), daemon=True).start()
    assert ready.wait(10)

    def stop() -> None:
        loop, event = holder["stop"]
        loop.call_soon_threadsafe(event.set)
        assert stopped.wait(10)

    return stop


@pytest.mark.parametrize("ids", ["a subject injected", "2,000 of them"])
def test_acknowledgements_with_made_up_node_ids_are_not_probed(
        nats_server: Any, make_bus: MakeBus, poll: Poll, ids: str) -> None:
    """A node id of an acknowledgement went into the subject of a probe, unchecked, and
    published without the client's check of subjects: one with CR LF in it made the
    asker's connection publish what it said; and 2,000 made-up ids made it publish 2,000
    probes a second (found by a review). Ids that are no node id's are dropped, and only
    peers in the view are probed."""
    a = make_bus("a")
    ba = bridge_of(a, nats_server.url)
    subject = ba.subjects.subject(Identifier("evil:x"))
    made_up = (["q 0\r\n\r\nPUB injected 5\r\nhello\r\nPUB r"] if ids == "a subject injected"
               else [f"{i:016x}" for i in range(2000)])
    seen: list[str] = []

    async def evil(nc: Any) -> None:
        async def acknowledge(msg: Any) -> None:
            for node in made_up:
                await nc.publish(msg.reply, json.dumps({"k": "a", "n": node}).encode())
        await nc.subscribe(subject, cb=acknowledge)

    async def watch(nc: Any) -> None:
        async def note(msg: Any) -> None:
            seen.append(msg.subject)
        await nc.subscribe("injected", cb=note)
        await nc.subscribe(ba.asking.node_prefix + ">", cb=note)

    stops = [_raw_client(nats_server.url, evil), _raw_client(nats_server.url, watch)]
    try:
        settle(ba)
        a.ask("evil:x", timeout=2.5)  # (probes would go out each second meanwhile)
        sentinel = ba.asking.node_prefix + "sentinel"  # after any probe, on one connection
        ba.outbox.put_control((sentinel, b"{}", ""))
        poll(lambda: sentinel in seen, what="the watcher to see the sentinel")
        assert seen == [sentinel]
    finally:
        for stop in stops:
            stop()

def test_a_closed_peer_leaves_the_view(nats_server: Any, make_bus: MakeBus, poll: Poll) -> None:
    a, b = make_bus("a"), make_bus("b")
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url)
    b.subscribe("calc:*", lambda m: "b", weak=False)
    settle(bb)
    poll(knows(ba, b, "calc:*"), what="a to learn b's patterns")
    bb.close()
    poll(lambda: b.node_id not in ba.asking.peers, what="b's goodbye")
    assert a.ask("calc:add", timeout=10) == []


def test_ask_from_a_oneway_bridge(nats_server: Any, make_bus: MakeBus, poll: Poll) -> None:
    a, b = make_bus("a"), make_bus("b")
    transport = a.transport("nats")
    oneway = transport.connect_oneway(nats_server.url, 60)  # type: ignore[attr-defined]
    assert oneway.style == "oneway"
    bb = bridge_of(b, nats_server.url)
    b.subscribe("calc:*", lambda m: m.args[0] + 1, weak=False)
    settle(bb)
    poll(knows(oneway, b, "calc:*"), what="the one-way bridge to learn b's patterns")
    assert a.ask("calc:inc", 41, timeout=10) == [42]
    assert oneway.following.plain == {}  # it subscribes to no messages


def test_requests_are_answered_after_the_messages_sent_before_them(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any], poll: Poll,
) -> None:
    b = make_bus("b")
    bb = bridge_of(b, nats_server.url)
    state: dict[str, Any] = {}
    entered, release = threading.Event(), threading.Event()

    def store(message: Message) -> None:
        entered.set()
        release.wait(20)
        state["value"] = message.args[0]

    b.subscribe("job:set", store, weak=False)
    b.subscribe("job:get", lambda m: state.get("value"), weak=False)
    settle(bb)
    asker = workers(nats_server.url)
    asker.call("flush")
    poll(lambda: b.node_id in asker.call("peers"), what="the asker to learn b's patterns")
    asker.call("send", "job:set", "[5]")
    answer: list[str] = []
    thread = threading.Thread(target=lambda: answer.append(asker.call("ask", "job:get", 10)))
    thread.start()
    try:
        assert entered.wait(10)
        poll(lambda: bb.inbound.requests == 1, what="the request to reach b")
    finally:
        release.set()  # only now can job:get be answered
        thread.join(20)
    assert answer == ["[5]"]


def test_a_request_that_finds_the_answering_lane_full_is_refused_and_reading_goes_on(
    pair: Pair, poll: Poll, caplog: pytest.LogCaptureFixture,
) -> None:
    """Requests wait for a receiver that does not return until the answering lane is
    full: one more is answered at once with a ``QueueFull`` entry and counted, and the
    process goes on reading NATS (a message still reaches it). Waiting for room held up
    the client's reading task, so nothing more was read, answers and messages included."""
    a, ba, b, bb = pair
    entered, release = threading.Event(), threading.Event()

    def stuck(message: Message) -> str:
        entered.set()
        release.wait(60)  # does not return until the test's end
        return "late"

    notes = Recorder()
    # two subscriptions of b match stuck:op (stuck.* and *.op): each request comes twice,
    # and is taken, or refused, once
    b.subscribe("stuck:*", stuck, weak=False)
    b.subscribe("*:op", lambda m: "other", weak=False)
    b.subscribe("note:*", notes, weak=False)
    settle(bb)
    poll(knows(ba, b, "*:op"), what="a to learn b's patterns")
    lane = answer_lane()
    assert lane.wait_idle(10)
    saved = lane.max_items
    lane.max_items = 1  # one request running, one waiting: full
    held: list[list[Any]] = []
    askers = [threading.Thread(target=lambda: held.append(a.ask("stuck:op", timeout=30)))
              for _ in range(2)]
    try:
        askers[0].start()
        assert entered.wait(10)
        askers[1].start()
        poll(lambda: lane.pending[0] == 1, 10, "the second request to wait in the lane")
        started = time.monotonic()
        (refusal,) = a.ask("stuck:op", timeout=10)
        assert time.monotonic() - started < 5  # not the deadline
        assert isinstance(refusal, ReplyError)
        assert refusal.exception_type == "QueueFull" and refusal.node == b.node_id
        assert "answering lane is full" in refusal.message
        a.twitter("note:sent", 1)  # b still reads NATS while its answering lane is full
        assert notes.wait(1, 10)[0].args == (1,)
        poll(lambda: bb.inbound.requests == 6, 10, "b to read both copies of each request")
        assert not bb.flush(10)  # (and to hand them over): flush says a loss was counted
        assert bb.flush(10)  # and only then
        assert lane.pending[0] == 1 and not release.is_set()
        assert bb.losses.counts == {REQUEST_REFUSED: 1}
        assert any(REQUEST_REFUSED in r.getMessage() for r in caplog.records)
        assert "lost 1 (1 request refused" in bb.status()
    finally:
        lane.max_items = saved
        release.set()
        for thread in askers:
            thread.join(40)
    assert held == [["late", "other"], ["late", "other"]]
    assert lane.wait_idle(10)


def test_a_killed_sole_peer_leaves_the_view_at_no_responders(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any], poll: Poll,
) -> None:
    """The only peer that follows the identifier is killed (no ``bye``): NATS answers the
    request itself with "no responders", which takes the expected peers out of the view,
    and the ask returns [] at once (it gave a TimeoutError entry, at every ask, for ever)."""
    a = make_bus("a")
    ba = bridge_of(a, nats_server.url)
    worker = workers(nats_server.url)
    worker.call("reply", "fast:*", '"worker"')
    worker.call("flush")
    dead = worker.call("node")
    poll(lambda: ba.asking.peers.get(dead), what="a to learn the worker's patterns")
    assert a.ask("fast:x", timeout=10) == ["worker"]
    worker.process.kill()  # no goodbye
    worker.process.wait(10)
    started = time.monotonic()
    assert a.ask("fast:x", timeout=10) == []
    assert time.monotonic() - started < 5
    assert dead not in ba.asking.peers
    assert a.ask("fast:x", timeout=10) == []


def test_an_ask_waits_for_room_to_send_no_longer_than_its_timeout(
    nats_server: Any, make_bus: MakeBus,
) -> None:
    """The messages waiting for the I/O thread are at ``buffer_limit`` (the thread is held
    up, as when the server stops reading): the ask waits for room until its own deadline,
    not ``send_timeout``, and then says that no answer came within its timeout."""
    a = make_bus("a")
    ba = bridge_of(a, nats_server.url, buffer_limit=3, send_timeout=10)
    with held_io_loop():
        for i in range(3):
            a.twitter("fill:up", i)
        assert ba.outbox.waiting >= 3
        started = time.monotonic()
        (reply,) = a.ask("calc:add", timeout=0.5)
        took = time.monotonic() - started
    assert took < 2.0
    assert isinstance(reply, ReplyError) and reply.exception_type == "TimeoutError"
    assert "0.5s" in reply.message


def test_a_slow_receiver_does_not_take_its_process_s_other_replies(
    pair: Pair, poll: Poll,
) -> None:
    """A process with a fast and a slow receiver answers before the asker's deadline (with
    room for the trip back) with the fast reply and a TimeoutError entry naming the slow
    receiver, as a local ask does; it answered at the asker's deadline, too late, and the
    asker had one entry naming only NATS."""
    a, ba, b, bb = pair
    release = threading.Event()

    def slow(message: Message) -> str:
        release.wait(20)
        return "slow"

    b.subscribe("q:*", lambda m: "fast", weak=False)
    b.subscribe("q:*", slow, weak=False)
    settle(bb)
    poll(knows(ba, b, "q:*"), what="a to learn b's patterns")
    started = time.monotonic()
    try:
        fast, late = a.ask("q:x", timeout=2)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    assert fast == "fast"
    assert isinstance(late, ReplyError) and late.exception_type == "TimeoutError"
    assert late.receiver.endswith("slow") and late.node == b.node_id
    assert "2s" in late.message  # the asker's timeout


def test_a_process_reached_over_nats_and_an_interconnect_answers_an_ask_once(
        pair: Pair) -> None:
    """The ask goes out over both links with one uid: the link that brings it second is
    answered at once with no replies (it waited for this process), and the receivers ran
    once (they ran twice, and the asker got their replies twice)."""
    a, ba, b, bb = pair
    calls: list[int] = []
    b.subscribe("who:*", lambda m: calls.append(m.args[0]) or "b", weak=False)
    a.transport("local").interconnect(b.transport("local").listen("local://asked-twice"), ttl=60)
    settle(ba, bb)
    for i in range(3):
        started = time.monotonic()
        assert a.ask("who:x", i, timeout=10) == ["b"]
        assert time.monotonic() - started < 5  # not a wait for the deadline
    assert calls == [0, 1, 2]



def test_asks_from_many_threads_are_answered_whatever_buffer_limit_says(
        nats_server: Any, make_bus: Callable[..., Bus], poll: Callable[..., None]) -> None:
    """The bridge's acknowledgements and replies have room of their own: bounded by
    twice buffer_limit, 40 asks at once of a process with buffer_limit 2 lost a few (the
    askers' entries said TimeoutError after 3 s)."""
    a, b = make_bus("a"), make_bus("b")
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url, buffer_limit=2)
    b.subscribe("svc:q", lambda m: "fine", weak=False)
    settle(ba, bb)
    poll(knows(ba, b, "svc:q"), what="a to learn b's patterns")
    answers: list[list[Any]] = []
    askers = [threading.Thread(target=lambda: answers.append(a.ask("svc:q", timeout=10)))
              for _ in range(40)]
    for thread in askers:
        thread.start()
    for thread in askers:
        thread.join(30)
    assert len(answers) == 40 and all(entry == ["fine"] for entry in answers), answers
    assert bb.losses.counts == {}, bb.losses.counts

"""What is not this process's own message: what other clients publish on berryMQ's
subjects (junk, or a message whose identifier is not its subject's) and the bridge's own
control messages. Each is counted under its own reason, and none makes ``flush()``, which
tells about the messages this process accepted, return False."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from berrymq_nats import NatsBridge
from berrymq_nats.losses import CONTROL_UNSENT, UNDECODABLE, WRONG_SUBJECT
from berrymq_nats.testing import Recorder, bridge_of, send_frames, settle
from helpers import publish_raw

from berrymq import Bus, Queue
from berrymq.identifier import parse

pytestmark = pytest.mark.broker

Pair = tuple[Bus, NatsBridge, Bus, NatsBridge]


def test_junk_from_another_client_is_counted_apart_and_flush_stays_true(
        pair: Pair, nats_server: Any, poll: Callable[..., None]) -> None:
    a, ba, b, bb = pair
    got = Recorder()
    b.subscribe("job:*", got, weak=False)
    settle(ba, bb)
    publish_raw(nats_server.url, bb.subjects.subject(parse("job:go")), [b"not json"])
    poll(lambda: bb.losses.counts.get(UNDECODABLE) == 1, 10, "the junk counted")
    a.twitter("job:go", 1)
    assert bb.flush(10) and ba.flush(10)  # every message of these processes got through
    assert got.wait(1) and got.args == [1]
    assert bb.losses.own == 0 and bb.losses.total == 1


@pytest.mark.parametrize("where", ["subject", "reply", "header"])
def test_a_message_that_is_not_utf8_is_counted_and_the_connection_stays(
        pair: Pair, nats_server: Any, poll: Callable[..., None], where: str) -> None:
    """The server forwards any bytes; nats-py, decoding a subject, reply subject or header
    that is not UTF-8, ended its reading task: the bridge reconnected and missed what was
    published meanwhile (one such message every 0.2 s lost 84% of a peer's), counting
    nothing."""
    a, ba, b, bb = pair
    got = Recorder()
    b.subscribe("job:*", got, weak=False)
    settle(ba, bb)
    subject = bb.subjects.subject(parse("job:go")).encode()
    header = b"NATS/1.0 \xff\xfe\xfd\r\n\r\n"
    frame = {
        "subject": b"PUB " + subject.rsplit(b".", 1)[0] + b".\xff\xfe 2\r\nhi\r\n",
        "reply": b"PUB " + subject + b" _INBOX.\xff 2\r\nhi\r\n",
        "header": b"HPUB %s %d %d\r\n%s\r\n" % (subject, len(header), len(header), header),
    }[where]
    send_frames(nats_server.url, frame)
    poll(lambda: bb.losses.counts.get(UNDECODABLE) == 1, 10, "the message counted")
    a.twitter("job:go", 1)
    assert bb.flush(10) and ba.flush(10)
    assert got.wait(1) and got.args == [1]
    assert bb.reconnects == 0 and bb.state == "connected", bb.state


def test_a_flood_of_hellos_from_another_client_leaves_a_bounded_outbox(
        nats_server: Any, make_bus: Callable[..., Bus], poll: Callable[..., None]) -> None:
    """Each hello is answered with a ``here``: 700,000 hellos from a plain client left
    692,012 answers waiting (buffer_limit 10,000), 320 MB. The bridge's own messages now
    take at most a room of their own beyond the bounds (10,000 more; 20 here); those past
    it are counted as the bridge's own, not the application's."""
    b = make_bus("b")
    bb = bridge_of(b, nats_server.url, buffer_limit=20)
    bb.outbox.control_room = 20
    settle(bb)
    hellos = (b'{"k":"hello","n":"%x","p":[]}' % (0xabc000000 + i) for i in range(20_000))
    send_frames(nats_server.url, *(b"PUB %s %d\r\n%s\r\n" % (
        bb.asking.presence_subject.encode(), len(hello), hello) for hello in hellos))
    poll(lambda: bb.losses.counts.get(CONTROL_UNSENT, 0) > 0, 10, "answers past the bound")
    assert len(bb.outbox._out) <= 40
    assert bb.flush(10) and bb.losses.own == 0
    assert not any("control" in reason for reason in b.losses.counts), b.losses.counts


def test_a_control_message_over_max_payload_is_no_loss_of_the_applications(
        nats_factory: Callable[..., Any], make_bus: Callable[..., Bus], tmp_path: Path) -> None:
    """The presence announcement lists the patterns: with many, it outgrows a small
    max_payload. It is counted as the bridge's own, not as a message of the application."""
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 2048\n", encoding="utf-8")
    server = nats_factory(args=("-c", str(config))).start()
    bus = make_bus("patterns")
    bridge = bridge_of(bus, server.url)
    settle(bridge)
    for i in range(120):
        bus.subscribe(f"pattern{i:04d}longname:act{i}", lambda m: None, weak=False)
    assert bridge.flush(10)
    assert bridge.losses.counts.get(CONTROL_UNSENT, 0) >= 1
    assert set(bridge.losses.counts) == {CONTROL_UNSENT} and bridge.losses.own == 0
    bus.twitter("pattern0001longname:act1", "still works")
    assert bridge.flush(10)


def test_an_identifier_that_is_not_its_subjects_is_dropped(
        nats_factory: Callable[..., Any], make_bus: Callable[..., Bus], tmp_path: Path) -> None:
    """A client allowed to publish only on ``berrymq.~.public.>`` names ``deploy@ops:run``
    in its payload: NATS let it through (the subject is allowed), the bridge must not
    deliver it to the receivers of ``deploy@ops:*`` (a plain subscription or a shared
    queue's group): dropped, counted, and no loss of this process."""
    config = tmp_path / "acl.conf"
    config.write_text(
        "authorization { users = [\n"
        "  { user: app, password: pw },\n"
        '  { user: guest, password: pw, permissions: { publish: "berrymq.~.public.>",'
        ' subscribe: "_INBOX.>" } } ] }\n', encoding="utf-8")
    server = nats_factory(args=("-c", str(config))).start()
    bus = make_bus("ops")
    ops, public = Recorder(), Recorder()
    bus.subscribe("deploy@ops:*", ops, weak=False)
    bus.subscribe("public:*", public, weak=False)
    shared = Queue("deploy@ops:*", shared=True, bus=bus)
    group = Queue("public:*", shared=True, bus=bus)
    bridge = bridge_of(bus, server.url, user="app", password="pw")
    settle(bridge)
    spoof = b'["deploy@ops:run",["spoofed"],{},{}]'
    plain = bridge.subjects.subject(parse("public:x"))

    async def as_guest() -> None:
        nc = await nats.connect(server.url, user="guest", password="pw")
        try:
            await nc.publish(plain, spoof)
            await nc.publish(plain, b'["public:x",["real"],{},{}]')
            await nc.flush(10)
        finally:
            await nc.close()

    asyncio.run(as_guest())
    assert public.wait(1) and public.args == ["real"]
    assert group.get(timeout=10).args == ("real",)  # the group's copy, after the spoofed one
    assert bridge.flush(10)
    assert ops.messages == [] and shared.qsize() == 0 and group.qsize() == 0
    assert bridge.losses.counts == {WRONG_SUBJECT: 2}  # the plain subscription's and the group's
    assert bridge.losses.own == 0

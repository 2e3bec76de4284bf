"""What the NATS server refuses (berrymq_nats.server_errors): publishing or subscribing
its permissions deny is reported, never silent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from berrymq_nats.losses import PUBLISH_DENIED
from berrymq_nats.testing import NatsServer, Recorder, bridge_of, settle, wait_until

from berrymq import Bus
from berrymq.testing import free_port
from berrymq.transports.ioloop import io_loop

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]


@pytest.fixture
def guarded(nats_factory: Callable[..., NatsServer], tmp_path: Path) -> NatsServer:
    """A server whose user ``app`` may not publish on ``secret:*`` nor subscribe to
    ``hidden:*`` (default namespace, default prefix)."""
    config = tmp_path / "perm.conf"
    config.write_text(
        "authorization { users = [ { user: app, password: pw, permissions: {\n"
        '  publish: { allow: ">", deny: "berrymq.~.secret.>" },\n'
        '  subscribe: { allow: ">", deny: "berrymq.~.hidden.>" } } } ] }\n', encoding="utf-8")
    return nats_factory(args=("-c", str(config))).start()


def test_messages_the_server_denies_are_counted_and_flush_says_so(
        guarded: NatsServer, make_bus: MakeBus, caplog: pytest.LogCaptureFixture) -> None:
    sender, receiver = make_bus("sender"), make_bus("receiver")
    got = Recorder()
    receiver.subscribe("*:go", got, weak=False)
    bs = bridge_of(sender, guarded.url, user="app", password="pw")
    br = bridge_of(receiver, guarded.url, user="app", password="pw")
    settle(bs, br)
    with caplog.at_level(logging.WARNING, logger="berrymq.nats"):
        for i in range(50):
            sender.twitter("secret:go", i)
        sender.twitter("open:go", "through")
        assert not bs.flush(10)  # 50 accepted messages were not delivered
        assert bs.losses.counts == {PUBLISH_DENIED: 50} and bs.losses.own == 50
        assert "lost 50 (50 denied by the NATS server's permissions)" in bs.status()
        assert got.wait(1) and got.args == ["through"]
        assert bs.flush(10)  # nothing more was lost since
    # the connection's row in /status: the denied ones are among what was sent (the
    # server refuses what the client wrote), and not lost on the way
    row = bs.status_row()
    assert (row.pending, row.sent, row.lost, row.refused) == (0, 51, 0, 50)
    lines = [r for r in caplog.records if r.name == "berrymq.nats"]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]  # one per burst, not per message
    assert "permissions violation for publish" in lines[0].getMessage()


def test_a_subscription_the_server_denies_is_reported(
        guarded: NatsServer, make_bus: MakeBus, caplog: pytest.LogCaptureFixture) -> None:
    bus = make_bus("denied")
    bus.subscribe("hidden:Go", lambda m: None, weak=False)
    with caplog.at_level(logging.ERROR, logger="berrymq.nats"):
        bridge = bridge_of(bus, guarded.url, user="app", password="pw")
        settle(bridge)  # the -ERR comes before the PONG of the flush
        assert ("2 subscriptions denied by the NATS server: berrymq.~.hidden.%2A, "
                "berrymq.~.hidden.Go" in bridge.status())  # (the case as subscribed)
    # the first denial at once; the second in the burst's line, 5 s on (status has both)
    assert any("refused the subscription to berrymq.~.hidden." in r.getMessage()
               for r in caplog.records)
    assert bridge.errors.denied.keys() == {"berrymq.~.hidden.Go", "berrymq.~.hidden.%2A"}


def test_the_reason_is_said_when_a_server_error_closes_the_client(
        nats_server: Any, make_bus: MakeBus, poll: Callable[..., None]) -> None:
    """nats-py closes the client for good after a server error such as a protocol
    violation: the state names it, not only that the client closed."""
    bus = make_bus("closing")
    bridge = bridge_of(bus, nats_server.url)
    settle(bridge)
    nc = bridge.client
    assert nc is not None

    async def bad_line() -> None:  # what the server answers with -ERR and a close
        nc._pending.append(b"SUB " + b"x" * 5000 + b" 99\r\n")  # type: ignore[attr-defined]
        await nc._flush_pending()  # type: ignore[attr-defined]

    io_loop.run(bad_line(), 10)
    poll(lambda: bridge.state.startswith("failed"), 10, "the client to close")
    assert "maximum control line exceeded" in bridge.state


def test_denied_subscriptions_the_bridge_no_longer_has_are_forgotten(
        guarded: NatsServer, make_bus: MakeBus, caplog: pytest.LogCaptureFixture) -> None:
    """A bus made to follow ever new patterns the server denies, one after another (a
    client's connect_via_queue sessions, opened and closed): each denial was kept, and
    listed in the status line, without end (34,194 kept after 34,772 sessions), and each
    was logged on a line of its own."""
    bus = make_bus("churned")
    bridge = bridge_of(bus, guarded.url, user="app", password="pw")
    settle(bridge)
    with caplog.at_level(logging.ERROR, logger="berrymq.nats"):
        for i in range(20):
            subscription = bus.subscribe(f"hidden:x{i}", lambda m: None, weak=False)
            settle(bridge)  # subscribed, and denied (the -ERR comes before the PONG)
            subscription.cancel()
            settle(bridge)  # unsubscribed
        assert "denied" not in bridge.status()
    assert bridge.errors.denied == {}
    lines = [r for r in caplog.records if "refused the subscription" in r.getMessage()]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]  # one per burst


def test_a_server_not_reached_by_a_bridge_in_the_background_is_said(
        make_bus: MakeBus, nats_factory: Callable[..., NatsServer],
        caplog: pytest.LogCaptureFixture) -> None:
    """A bridge started in the background (``servers`` in the settings file, as ``berrymq
    serve`` starts it) whose server cannot be reached logged nothing, retrying for ever
    (an outside audit); each attempt stays at debug level, and the state line says it."""
    port = free_port()
    url = f"nats://user:s3cr3t@127.0.0.1:{port}"  # nobody listens there (until later)
    with caplog.at_level(logging.DEBUG, logger="berrymq.nats"):
        bridge = make_bus().transport("nats").connect_broker(  # type: ignore[attr-defined]
            url, wait=False, connect_timeout=0.2, reconnect_wait=0.05)

        def said() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "has not reached" in r.getMessage()]

        wait_until(said, what="a warning that NATS was not reached")
        record = said()[0]
        assert record.levelno == logging.WARNING
        text = record.getMessage()
        assert "nats://***@127.0.0.1" in text and "s3cr3t" not in text
        assert "messages sent meanwhile wait in its buffer (buffer_limit 10000)" in text
        # reached after all: the burst's closing line, due a minute later (for the failed
        # attempts after the first), no longer holds
        wait_until(lambda: sum(r.levelno == logging.DEBUG for r in caplog.records) >= 3,
                   what="more failed attempts")
        server = nats_factory(port=port).start()
        assert bridge.wait_connected(20), bridge.status()
        caplog.clear()
        bridge.errors._unreached.flush()  # (what its timer, or the process's exit, would do)
        assert said() == []
        bridge.close()
        server.stop()

"""The bridge in one process: several buses, each with its own NATS connection, through a
real nats-server the test starts on a free port (as separate processes would)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from berrymq_nats import NatsBridge, NatsTransport
from berrymq_nats import plugin as nats_plugin

import berrymq
from berrymq import Bus, Message, PluginNotAvailable, Queue, ReplyError, SettingsError
from berrymq.plugins import PluginHost
from berrymq.settings import Settings, load_settings

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]


class Recorder:
    """A receiver that keeps what it gets; ``wait(n)`` waits for n messages (bounded)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.cond = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return list(self.messages)

    @property
    def ids(self) -> list[str]:
        with self.cond:
            return [str(m.identifier) for m in self.messages]


def bridge_of(bus: Bus, url: str, **options: Any) -> NatsBridge:
    transport = bus.transport("nats")
    assert isinstance(transport, NatsTransport)
    return transport.connect_broker(url, **options)


def settle(*bridges: NatsBridge) -> None:
    """Every subscription and message so far has reached the server (PING/PONG)."""
    for bridge in bridges:
        assert bridge.flush(10.0)
@pytest.fixture
def pair(nats_server: Any, make_bus: MakeBus) -> tuple[Bus, NatsBridge, Bus, NatsBridge]:
    a, b = make_bus("a"), make_bus("b")
    return a, bridge_of(a, nats_server.url), b, bridge_of(b, nats_server.url)


def test_messages_cross_with_args_and_kwargs(pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
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


def test_wildcards_both_ways(pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
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
    pair: tuple[Bus, NatsBridge, Bus, NatsBridge],
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


def test_local_names_never_leave(pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
    a, ba, b, bb = pair
    got = Recorder()
    b.subscribe("*", got, weak=False)
    settle(bb)
    assert ba._nc is not None
    before = ba._nc.stats["out_msgs"]
    a.twitter("_secret:go", 1)
    a.twitter("public:go", 2)
    got.wait(1)
    settle(ba)
    assert got.ids == ["public:go"]
    assert ba._nc.stats["out_msgs"] == before + 1


def test_namespaces_stay_apart(pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
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


def test_subscriptions_follow_registrations(pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
    a, ba, b, bb = pair
    assert bb._nc is not None
    settle(bb)
    assert bb._plain == {}  # nobody listens: no subscription, no traffic
    got = Recorder()
    handle = b.subscribe("job:*", got, weak=False)
    settle(bb)
    assert set(bb._plain) == {"berrymq.~.job.*", "berrymq.~.%2A.*"}
    before = bb._nc.stats["in_msgs"]
    a.twitter("other:go", 1)      # no interest anywhere: the server drops it
    a.twitter("job:go", 2)
    got.wait(1)
    settle(ba, bb)
    assert bb._nc.stats["in_msgs"] == before + 1
    handle.cancel()
    settle(bb)
    assert bb._plain == {}
    a.twitter("job:go", 3)
    settle(ba, bb)
    assert bb._nc.stats["in_msgs"] == before + 1
    assert got.ids == ["job:go"]


def test_weakly_held_receiver_that_dies_unsubscribes(
    pair: tuple[Bus, NatsBridge, Bus, NatsBridge],
) -> None:
    _a, _ba, b, bb = pair

    class Holder:
        def on(self, message: Message) -> None:
            pass

    holder = Holder()
    b.subscribe("gone:*", holder.on)
    settle(bb)
    assert "berrymq.~.gone.*" in bb._plain
    del holder
    b.subscriptions()  # the bus notices the death on its next look
    settle(bb)
    assert bb._plain == {}


def test_talk_replies_come_back(pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
    a, ba, b, bb = pair
    b.subscribe("calc:double", lambda m: m.args[0] * 2, weak=False)
    answers = Recorder()
    a.subscribe("calc:answer", answers, weak=False)
    settle(ba, bb)
    a.talk("calc:double", "calc:answer", 21)
    (answer,) = answers.wait(1)
    assert answer.args == (42,)


def test_ask_through_nats(nats_server: Any, make_bus: MakeBus,
                          pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
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


def test_ask_times_out_on_a_slow_receiver(pair: tuple[Bus, NatsBridge, Bus, NatsBridge]) -> None:
    a, _ba, b, bb = pair
    release = threading.Event()
    b.subscribe("slow:op", lambda m: release.wait(20), weak=False)
    settle(bb)
    try:
        (reply,) = a.ask("slow:op", timeout=0.5)
    finally:
        release.set()
    assert isinstance(reply, ReplyError) and reply.exception_type == "TimeoutError"


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


def test_settings_activate_the_bridge(nats_server: Any, tmp_path: Path) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text(
        "[berrymq.nats]\n"
        f'servers = ["{nats_server.url}"]\n'
        'subject_prefix = "app.test"\n'
        "buffer_limit = 5\n"
        "connect_timeout = 3\n",
        encoding="utf-8",
    )
    settings = load_settings(config)
    host = PluginHost(settings, entry_points=False, extra_plugins=[("nats", nats_plugin)])
    bus = Bus(plugins=host, name="configured")
    other = Bus(plugins=host, name="other")
    try:
        got = Recorder()
        other.subscribe("hello:*", got, weak=False)  # starting the bus connects it
        transport = other.transport("nats")
        assert isinstance(transport, NatsTransport) and transport.bridge is not None
        assert transport.bridge.options.buffer_limit == 5
        assert transport.bridge.wait_connected(10)
        assert transport.bridge.flush()
        assert "app.test.~.hello.*" in transport.bridge._plain
        bus.twitter("hello:world")
        assert [m.id for m in got.wait(1)] == ["hello:world"]
        report = host.status(bus)
        (line,) = report.lines["nats"]
        assert line.startswith("nats: connected; server nats://127.0.0.1:")
    finally:
        bus.close()
        other.close()


def test_status_of_a_configured_bus_shows_the_connection(nats_server: Any, tmp_path: Path) -> None:
    """What ``berrymq plugins`` prints: it is often the first use of the bus."""
    config = tmp_path / "berrymq.toml"
    config.write_text(f'[berrymq.nats]\nservers = ["{nats_server.url}"]\n', encoding="utf-8")
    host = PluginHost(load_settings(config), entry_points=False,
                      extra_plugins=[("nats", nats_plugin)])
    bus = Bus(plugins=host, name="fresh")
    try:
        (line,) = host.status(bus).lines["nats"]
        assert line.startswith(f"connected; server {nats_server.url}")
        assert "buffered 0/10000 while disconnected" in line
    finally:
        bus.close()


def test_settings_errors_name_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text('[berrymq.nats]\nservers = ["nats://127.0.0.1:1"]\nbufer = 3\n',
                      encoding="utf-8")
    with pytest.raises(SettingsError, match=r"berrymq.toml:3: unknown key 'bufer'"):
        PluginHost(load_settings(config), entry_points=False,
                   extra_plugins=[("nats", nats_plugin)])
    config.write_text('[berrymq.nats]\nbuffer_limit = "many"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="buffer_limit must be an integer"):
        PluginHost(load_settings(config), entry_points=False,
                   extra_plugins=[("nats", nats_plugin)])


def test_status_without_servers(default_bus: Bus) -> None:
    (line,) = default_bus.plugins.status(default_bus).lines["nats"]
    assert "not connected" in line


def test_connect_broker_from_the_api(nats_server: Any, default_bus: Bus, make_bus: MakeBus) -> None:
    bridge = berrymq.connect_broker(nats_server.url, subject_prefix="api")
    assert isinstance(bridge, NatsBridge)
    assert berrymq.connect_broker(nats_server.url) is bridge  # one bridge per bus
    other = make_bus("other")
    peer = bridge_of(other, nats_server.url, subject_prefix="api")
    got = Recorder()
    berrymq.regist_function("x:*", got, weak=False)
    settle(bridge)
    other.twitter("x:y")
    assert [m.id for m in got.wait(1)] == ["x:y"]
    assert bridge in default_bus.connections()
    berrymq.close_connection(nats_server.url)
    assert bridge.closed and bridge.state == "closed"
    peer.close()


def test_connection_styles_map_to_the_bridge(nats_server: Any, default_bus: Bus) -> None:
    bridge = berrymq.interconnect(nats_server.url)
    assert isinstance(bridge, NatsBridge) and bridge.style == "broker"
    assert berrymq.init_connection(nats_server.url) == nats_server.url
    assert berrymq.connect_broker(nats_server.url) is bridge
    with pytest.raises(TypeError, match=r"Queue\(pattern, shared=True\)"):
        berrymq.connect_via_queue(nats_server.url, "x:*")
    berrymq.close_connection()
    assert bridge.closed and default_bus.connections() == []


def test_bad_options_are_named(default_bus: Bus) -> None:
    with pytest.raises(TypeError, match="unknown NATS option 'bufer_limit'"):
        berrymq.connect_broker("nats://127.0.0.1:1", bufer_limit=3)
    with pytest.raises(ValueError, match="not a URL"):
        berrymq.connect_broker("nats://127.0.0.1:1,localhost:2")
    with pytest.raises(ValueError, match="connect_timeout must be a positive number"):
        berrymq.connect_broker("nats://127.0.0.1:1", connect_timeout=0)
    with pytest.raises(ValueError, match="subject_prefix"):
        berrymq.connect_broker("nats://127.0.0.1:1", subject_prefix="a.*")


def test_unreachable_server_is_a_clear_error(default_bus: Bus) -> None:
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        url = f"nats://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(berrymq.ConnectionClosed, match=f"cannot connect to NATS at {url}"):
        berrymq.connect_broker(url, connect_timeout=0.5, reconnect_wait=0.1)
    assert default_bus.connections() == []


def test_missing_plugin_names_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Bus(plugins=PluginHost(Settings(), entry_points=False), name="missing")
    monkeypatch.setenv("BERRYMQ_BLOCK_PLUGINS", "nats")
    host = PluginHost(Settings(), entry_points=False, extra_plugins=[("nats", nats_plugin)])
    blocked = Bus(plugins=host, name="blocked")
    try:
        with berrymq.use_bus(missing), pytest.raises(
            PluginNotAvailable, match=r"no transport for nats:// .*pip install \./plugins/berrymq-nats"
        ) as info:
            berrymq.connect_broker("nats://127.0.0.1:4222")
        assert info.value.plugin == "nats"
        with berrymq.use_bus(blocked), pytest.raises(
            PluginNotAvailable, match="installed but not active .blocked by BERRYMQ_BLOCK_PLUGINS"
        ):
            berrymq.connect_broker("nats://127.0.0.1:4222")
    finally:
        missing.close()
        blocked.close()


def test_unserialisable_arguments_are_reported(
    pair: tuple[Bus, NatsBridge, Bus, NatsBridge], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ba, _b, _bb = pair
    with caplog.at_level(logging.ERROR, logger="berrymq"):
        a.twitter("job:go", object())
    assert "must be JSON-serialisable" in caplog.text

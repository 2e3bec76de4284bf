"""The bridge's life (berrymq_nats.bridge): joining from settings or code, the status line,
connection styles, clear errors, and running on the process's one I/O loop: no thread of
its own, closed cleanly without stopping the loop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from berrymq_nats import NatsBridge, NatsTransport
from berrymq_nats import closing as closing_module
from berrymq_nats import plugin as nats_plugin
from berrymq_nats.link import NatsLink
from berrymq_nats.testing import Recorder, bridge_of, settle, wait_until

import berrymq
from berrymq import Bus, Message, PluginNotAvailable
from berrymq._losses import CLOSED_FIRST
from berrymq.plugins import PluginHost
from berrymq.settings import Settings, load_settings
from berrymq.transports.ioloop import io_loop
from berrymq.transports.styles import LinkConnection

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]


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
        assert "app.test.~.hello.*" in transport.bridge.following.plain
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
        assert line.startswith(f"nats: connected; server {nats_server.url}")
        assert "buffered 0/10000 while disconnected" in line
    finally:
        bus.close()


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
    assert isinstance(bridge, NatsBridge) and bridge.style == "interconnect"
    assert berrymq.init_connection(nats_server.url) == nats_server.url
    assert berrymq.connect_broker(nats_server.url) is bridge
    with pytest.raises(TypeError, match=r"Queue\(pattern, shared=True\)"):
        berrymq.connect_via_queue(nats_server.url, "x:*")
    berrymq.close_connection()
    assert bridge.closed and default_bus.connections() == []


def test_the_styles_are_the_cores_over_a_nats_link(nats_server: Any, make_bus: MakeBus) -> None:
    """interconnect and connect_oneway are the core's LinkConnection over a NatsLink, as
    for every transport: one-way carries what send sends (and ask), nothing else."""
    a, b = make_bus("a"), make_bus("b")
    transport = a.transport("nats")
    assert isinstance(transport, NatsTransport)
    oneway = transport.connect_oneway(nats_server.url, 60)
    assert isinstance(oneway, LinkConnection) and isinstance(oneway.link, NatsLink)
    assert oneway.style == "oneway" and oneway.forwarder is not oneway.link
    bb = bridge_of(b, nats_server.url)
    assert bb.style == "interconnect" and bb.forwarder is bb.link
    got = Recorder()
    b.subscribe("log:*", got, weak=False)
    settle(bb)
    a.twitter("log:twittered")  # not carried: it would arrive first (one connection's order)
    oneway.send(Message("log:sent", ("x",)))
    assert oneway.flush(10)
    (first,) = got.wait(1)[:1]
    assert first.id == "log:sent" and first.args == ("x",) and first.uid is not None
    oneway.close()
    with pytest.raises(berrymq.ConnectionClosed, match="is closed"):
        oneway.send(Message("log:sent"))


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



def test_bridges_share_the_io_loop(nats_server: Any, make_bus: MakeBus) -> None:
    first = make_bus("first")
    settle(bridge_of(first, nats_server.url))
    threads = threading.active_count()
    bridges = [bridge_of(make_bus(f"b{i}"), nats_server.url) for i in range(5)]
    settle(*bridges)
    assert threading.active_count() == threads  # connections cost no threads
    names = {t.name for t in threading.enumerate()}
    assert "berrymq-io" in names and "berrymq-nats" not in names  # no loop of its own


def test_closing_a_bus_stops_its_bridge_not_the_loop(nats_server: Any, make_bus: MakeBus) -> None:
    a, b = make_bus("a"), make_bus("b")
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url)
    got = Recorder()
    b.subscribe("job:*", got, weak=False)
    settle(bb)
    a.close()
    assert ba.closed and ba.state == "closed"
    assert ba.client is not None and ba.client.is_closed
    assert all(task.done() for task in ba.tasks)
    assert io_loop.running
    with pytest.raises(berrymq.ConnectionClosed):
        ba.send(berrymq.Message("job:go"))
    c = make_bus("c")
    bridge_of(c, nats_server.url)
    c.twitter("job:go", "after")
    assert got.wait(1)[0].args == ("after",)


def read_backlog(url: str, make_bus: MakeBus, receiver: Callable[[Message], object],
                 count: int) -> Bus:
    """A bus whose bridge has read ``count`` messages of ``slow:*`` from NATS, sent by
    another bus (and confirmed by its flush), that ``receiver`` works through."""
    sender, receiving = make_bus("sender"), make_bus("receiver")
    receiving.subscribe("slow:*", receiver, weak=False)
    from_nats = bridge_of(receiving, url)
    settle(from_nats)
    to_nats = bridge_of(sender, url)
    for i in range(count):
        sender.twitter("slow:x", i)
    assert to_nats.flush(30)
    wait_until(lambda: from_nats.inbound.gathered == count, what="the bridge to read them")
    return receiving


def test_what_a_bridge_read_is_delivered_before_its_bus_closes(
        nats_server: Any, make_bus: MakeBus) -> None:
    """The sender's flush said every message arrived; the receiving bus is closed while
    its slow receiver works through them: it gets them all before close() returns."""
    got: list[int] = []
    receiver = read_backlog(nats_server.url, make_bus,
                            lambda message: (time.sleep(0.002), got.append(1)), 300)
    receiver.close()
    assert len(got) == 300 and receiver.losses.total == 0


def test_what_comes_to_a_closed_bus_is_counted_as_lost(
        nats_server: Any, make_bus: MakeBus, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound of close()'s wait, the rest is dropped, each counted and told."""
    monkeypatch.setattr(closing_module, "CLOSE_DELIVERY_WAIT", 0.05)
    release = threading.Event()
    got: list[int] = []
    # all read: the first held by its receiver, the rest queued for the lane
    receiver = read_backlog(nats_server.url, make_bus,
                            lambda message: (release.wait(30), got.append(1)), 50)
    receiver.close()  # the first receiver still holds the lane
    release.set()
    io_loop.lane.wait_idle(30)
    assert len(got) + receiver.losses.counts[CLOSED_FIRST] == 50 and len(got) < 50


def test_a_message_over_max_payload_is_refused_by_name(
        nats_server: Any, make_bus: MakeBus) -> None:
    """Over the server's max_payload (1 MiB by default) nats-py refuses a message in the
    I/O thread, far from its sender: the bridge refuses it as it is sent, naming the
    sizes (counted and logged when forwarded by twitter, raised from send)."""
    bus = make_bus("big")
    bridge = bridge_of(bus, nats_server.url)
    settle(bridge)
    big = "x" * (1024 * 1024)
    bus.twitter("big:one", big)
    assert bus.losses.counts == {"not forwarded: MessageTooLarge": 1}
    with pytest.raises(berrymq.MessageTooLarge, match=r"over the NATS server's max_payload "
                                                      r"of 1048576 bytes; it was not sent"):
        bridge.send(Message("big:two", (big,)))
    assert bridge.losses.total == 0  # nothing was handed to nats-py to fail there
    started = time.monotonic()  # an ask too: its error entry at once, not at its timeout
    [entry] = bus.ask("big:ask", big, timeout=20)
    assert isinstance(entry, berrymq.ReplyError) and "MessageTooLarge" in str(entry)
    assert time.monotonic() - started < 10 and bridge.losses.total == 0
    bus.twitter("big:small", "fits")  # and the bridge goes on
    assert bridge.flush(10)


def test_a_message_over_max_payload_sent_before_the_connection_is_counted_with_its_sizes(
        nats_factory: Callable[..., Any], proxy_factory: Callable[[int], Any],
        make_bus: MakeBus, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before the first connection the server's max_payload is not known, so the call
    cannot refuse a message over it; nats-py refuses it once connected, and the loss
    named only ``MaxPayloadError()`` (found by an outside audit). It names the sizes."""
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 2048\n", encoding="utf-8")
    server = nats_factory(args=("-c", str(config))).start()
    relay = proxy_factory(server.port)
    relay.cut()  # not connected yet
    bus = make_bus("early")
    transport = bus.transport("nats")
    assert isinstance(transport, NatsTransport)
    bridge = transport.connect_broker(relay.url, wait=False, reconnect_wait=0.2)
    bus.twitter("big:early", "x" * 5000)  # buffered: the limit is not known yet
    relay.restore()
    assert bridge.wait_connected(10)
    assert bridge.flush(10) is False  # the loss is told
    assert bridge.losses.total == 1
    text = caplog.text
    assert "on berrymq.~.big.early: MessageTooLarge: 50" in text, text
    assert "bytes as JSON, over the NATS server's max_payload of 2048 bytes" in text


def run_plugins_command(config: Path) -> subprocess.CompletedProcess[str]:
    """``berrymq plugins`` in a process of its own, with ``config`` as its settings file."""
    env = dict(os.environ, BERRYMQ_CONFIG=str(config))
    return subprocess.run([sys.executable, "-m", "berrymq", "plugins"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=config.parent)


def test_the_plugins_command_shows_the_state_and_names_bad_settings(
    nats_server: Any, tmp_path: Path,
) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text(f'[berrymq.nats]\nservers = ["{nats_server.url}"]\n', encoding="utf-8")
    out = run_plugins_command(config)
    assert out.returncode == 0, out.stderr
    assert f"status: nats: connected; server {nats_server.url}" in out.stdout, out.stdout
    config.write_text(f'[berrymq.nats]\nservers = ["{nats_server.url}"]\nbogus = 1\n',
                      encoding="utf-8")
    bad = run_plugins_command(config)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "bogus" in bad.stderr and "berrymq.toml" in bad.stderr, bad.stderr
    config.write_text('[berrymq.nats]\nservers = ["http://127.0.0.1:1"]\n', encoding="utf-8")
    url = run_plugins_command(config)
    assert url.returncode != 0 and "Traceback" not in url.stderr
    assert "berrymq.toml" in url.stderr and "is not a URL like" in url.stderr, url.stderr
    # (a port past 65535 passed: the state said "connecting (attempt 4 failed: ... invalid
    # connect url option)" and the command exited 0)
    config.write_text('[berrymq.nats]\nservers = ["nats://127.0.0.1:99999"]\n', encoding="utf-8")
    port = run_plugins_command(config)
    assert port.returncode == 2 and "Traceback" not in port.stderr
    assert ("berrymq.toml:2: [berrymq.nats] NATS server 'nats://127.0.0.1:99999' has an "
            "invalid port (0 to 65535)") in port.stderr, port.stderr

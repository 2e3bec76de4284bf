"""SPEC 8: plugins found through entry points, activated by settings, hooks called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import berrymq
from berrymq import Bus, Message, PluginNotAvailable
from berrymq.hookspecs import hookimpl
from berrymq.plugins import BUILTIN_PLUGINS, PluginHost
from berrymq.settings import Settings, load_settings


def host_with(tmp_path: Path, text: str, **kwargs: Any) -> PluginHost:
    path = tmp_path / "berrymq.toml"
    path.write_text(text)
    return PluginHost(load_settings(path), **kwargs)


def test_builtins_come_from_the_core_distributions_entry_points() -> None:
    import importlib.metadata

    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="berrymq")}
    for name, module in BUILTIN_PLUGINS.items():
        assert names[name] == module
    infos = {i.name: i for i in PluginHost(Settings()).infos()}
    assert infos["functions"].distribution == "berrymq"
    assert infos["functions"].version == berrymq.__version__
    assert all(infos[name].active for name in BUILTIN_PLUGINS)


def test_allow_list_keeps_core_receivers(tmp_path: Path) -> None:
    host = host_with(tmp_path, '[berrymq]\nplugins = ["local"]\n')
    active = {i.name for i in host.infos() if i.active}
    assert {"local", "functions", "followers", "queues"} <= active
    inactive = {i.name: i.reason for i in host.infos() if not i.active}
    assert all("not in the plugins list" in reason for reason in inactive.values())


def test_disabled_transport_is_named_in_the_error(tmp_path: Path) -> None:
    host = host_with(tmp_path, '[berrymq]\ndisable = ["local"]\n')
    bus = Bus(plugins=host)
    with pytest.raises(PluginNotAvailable) as info:
        bus.transport("local")
    text = str(info.value)
    assert "no transport for local:// addresses" in text
    assert "plugin 'local' is installed but not active" in text
    assert "berrymq.toml" in text
    bus.close()


def test_missing_transport_plugin_says_what_to_install() -> None:
    bus = Bus(plugins=PluginHost(Settings(), entry_points=False))
    with pytest.raises(PluginNotAvailable, match=r"install the plugin .jsonrpc-tcp. \(in a berryMQ checkout: pip install \./plugins/berrymq-jsonrpc \./plugins/berrymq-jsonrpc-tcp\)"):
        with berrymq.use_bus(bus):
            berrymq.init_connection("tcp://127.0.0.1:0")
    with pytest.raises(PluginNotAvailable, match="no transport for gopher://") as info:
        bus.transport("gopher")
    assert "no installed plugin claims the scheme 'gopher'" in str(info.value)
    assert "tcp://" in str(info.value)
    bus.close()


def test_disabled_receiver_kind(tmp_path: Path) -> None:
    host = host_with(tmp_path, '[berrymq]\ndisable = ["queues", "functions"]\n')
    bus = Bus(plugins=host)
    with berrymq.use_bus(bus):
        with pytest.raises(PluginNotAvailable, match="receiver kind 'queues'.*enable it"):
            berrymq.Queue("x:*")
        with pytest.raises(PluginNotAvailable, match="receiver kind 'functions'"):
            berrymq.regist_function("x:*", print)
    bus.close()


def test_block_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERRYMQ_BLOCK_PLUGINS", "local, queues")
    infos = {i.name: i for i in PluginHost(Settings()).infos()}
    assert not infos["local"].active and "BERRYMQ_BLOCK_PLUGINS" in infos["local"].reason
    assert not infos["queues"].active


class Recorder:
    """A plugin implementing the bus hooks, registered in code."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.messages: list[str] = []

    @hookimpl
    def berrymq_bus_started(self, bus: Bus) -> None:
        self.calls.append("started")
        bus.subscribe("rec:*", self.on_message, kind="recorder")

    def on_message(self, message: Message) -> None:
        self.messages.append(message.id)

    @hookimpl
    def berrymq_bus_closing(self, bus: Bus) -> None:
        self.calls.append("closing")

    @hookimpl
    def berrymq_report_status(self, bus: Bus, report: Any) -> None:
        report.add("recorder", f"{len(self.messages)} messages")


def test_bus_hooks_called_once_and_receive() -> None:
    recorder = Recorder()
    host = PluginHost(Settings(), extra_plugins=[("recorder", recorder)])
    bus = Bus(plugins=host)
    bus.twitter("rec:one")  # the first send starts the bus
    bus.twitter("rec:two")
    assert recorder.calls == ["started"]
    assert recorder.messages == ["rec:one", "rec:two"]
    assert host.status(bus).lines["recorder"] == ["2 messages"]
    bus.close()
    bus.close()
    assert recorder.calls == ["started", "closing"]


def test_message_sent_hook_only_called_when_implemented() -> None:
    seen: list[str] = []

    class Tap:
        @hookimpl
        def berrymq_message_sent(self, bus: Bus, message: Message) -> None:
            seen.append(message.id)

    plain = Bus(plugins=PluginHost(Settings()))
    plain.twitter("x:y")
    assert plain._taps == () and plain._outbound is False
    tapped = Bus(plugins=PluginHost(Settings(), extra_plugins=[("tap", Tap())]))
    tapped.twitter("x:y")
    tapped.twitter("_local:y")
    assert seen == ["x:y", "_local:y"]
    plain.close()
    tapped.close()


def test_plugin_that_fails_to_load_is_named() -> None:
    from berrymq.errors import BerryMQError
    from berrymq.plugins import _Candidate

    host = PluginHost.__new__(PluginHost)

    def broken() -> object:
        raise ImportError("no module named 'missing_dependency'")

    PluginHost.__init__(host, Settings(), entry_points=False)
    with pytest.raises(BerryMQError, match=r"plugin .broken.*missing_dependency.*disable = \[.broken.\].*BERRYMQ_BLOCK_PLUGINS=broken"):
        host._load([_Candidate("broken", "dist-x", "1.0", "broken.module", broken)])


def test_two_plugins_claiming_one_scheme() -> None:
    class Claims:
        @hookimpl
        def berrymq_register_transports(self, registry: Any) -> None:
            registry.add("local", object, plugin="impostor")

    with pytest.raises(ValueError, match="claimed by both plugin"):
        PluginHost(Settings(), extra_plugins=[("impostor", Claims())])

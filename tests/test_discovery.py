"""berrymq._discovery: the plugins that may load (the core's own, declared once in its
distribution's metadata, and the entry points of the group ``berrymq``), the names
``BERRYMQ_BLOCK_PLUGINS`` keeps from loading, and what an error about a missing plugin
says to install."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env, plugin_site

import berrymq
from berrymq import BerryMQError, Bus, PluginNotAvailable, SettingsError
from berrymq.plugins import PluginHost, builtin_plugins
from berrymq.settings import Settings, load_settings


@pytest.mark.parametrize("entry_points", [True, False])
def test_builtins_are_declared_once_and_loaded_with_or_without_entry_points(entry_points: bool) -> None:
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="berrymq")
                if ep.dist is not None and ep.dist.metadata["Name"] == "berrymq"}
    assert declared == builtin_plugins(), "the core's plugins are its entry points (SPEC 8)"
    assert set(declared) == {"local", "functions", "followers", "queues", "timer",
                             "fileobserver"}
    infos = {i.name: i for i in PluginHost(Settings(), entry_points=entry_points).infos()}
    for name, module in declared.items():
        assert infos[name].distribution == "berrymq" and infos[name].module == module
        assert infos[name].version == berrymq.__version__
        assert infos[name].active
    with Bus(plugins=PluginHost(Settings(), entry_points=entry_points)) as bus:
        with berrymq.IntervalTimer("beat", 60, bus=bus) as timer:  # the timer is there too
            assert timer.running


def test_without_the_core_distribution_installed_the_error_says_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(BerryMQError, match=r"not installed here: install it \(pip install \.\)"):
        PluginHost(Settings())


def test_metadata_without_the_core_entry_points_says_to_install_again(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = tmp_path / "berrymq-0.4.0.dist-info"  # as an install older than the entry points
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: berrymq\nVersion: 0.4.0\n")
    monkeypatch.setattr(importlib.metadata, "distribution",
                        lambda name: importlib.metadata.PathDistribution(info))
    with pytest.raises(BerryMQError, match=r"declares none of its own plugins.*install it again"):
        PluginHost(Settings())


def test_missing_transport_plugin_says_what_to_install() -> None:
    bus = Bus(plugins=PluginHost(Settings(), entry_points=False))
    with pytest.raises(PluginNotAvailable, match=r"install the plugin .jsonrpc-tcp. \(in a berryMQ checkout: pip install \./plugins/berrymq-jsonrpc \./plugins/berrymq-jsonrpc-tcp\)"):
        with berrymq.use_bus(bus):
            berrymq.init_connection("tcp://127.0.0.1:0")
    with pytest.raises(PluginNotAvailable, match="no transport for gopher://") as info:
        bus.transport("gopher")
    assert "no active plugin claims the scheme 'gopher'" in str(info.value)
    assert "tcp://" in str(info.value)
    bus.close()


def test_a_transport_of_an_installed_plugin_that_is_not_active_names_it(tmp_path: Path) -> None:
    """An outside plugin's scheme, the plugin disabled or blocked: the error said that no
    installed plugin claims it, which was not so (found by an outside audit); it names
    the installed plugins that are not active, as an unknown command does."""
    env = plugin_site(tmp_path, "gopherish", "from berrymq.hookspecs import hookimpl\n"
                      "@hookimpl\ndef berrymq_register_transports(registry):\n"
                      "    registry.add('gopher', lambda bus, settings: None)\n")
    result = subprocess.run(
        [sys.executable, "-c", "import berrymq; berrymq.init_connection('gopher://x:1')"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=clean_env(**env, BERRYMQ_BLOCK_PLUGINS="gopherish"))
    assert result.returncode == 1
    assert ("no active plugin claims the scheme 'gopher' (berryMQ's plugins handle "
            in result.stderr), result.stderr
    assert "installed plugins that are not active may: 'gopherish'" in result.stderr


@pytest.mark.parametrize(("text", "line"), [
    ('[berrymq]\nplugins = ["local", "jsonrpc-http"]\n', 2),
    ('[berrymq]\ndisable = ["jsonrpc-http"]\n', 2),
    ('[berrymq]\n\n[berrymq.jsonrpc-http]\nport = 1\n', 3),
])
def test_one_of_berrymqs_own_plugins_not_installed_says_what_to_install(
        tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "berrymq.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:  # entry_points=False: as if not installed
        PluginHost(load_settings(path), entry_points=False)
    assert info.value.line == line
    assert str(info.value).endswith(
        "unknown plugin 'jsonrpc-http'; installed plugins: fileobserver, followers, "
        "functions, local, queues, timer; to have it, install the plugin 'jsonrpc-http' (in a "
        "berryMQ checkout: pip install ./plugins/berrymq-jsonrpc ./plugins/berrymq-jsonrpc-http)")


def test_block_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERRYMQ_BLOCK_PLUGINS", "local, queues")
    infos = {i.name: i for i in PluginHost(Settings()).infos()}
    assert not infos["local"].active and "BERRYMQ_BLOCK_PLUGINS" in infos["local"].reason
    assert not infos["queues"].active


def test_a_blocked_name_that_is_no_installed_plugin_is_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("BERRYMQ_BLOCK_PLUGINS", "local, jsnl")
    with caplog.at_level(logging.WARNING, logger="berrymq"):
        infos = {i.name: i for i in PluginHost(Settings()).infos()}
    assert not infos["local"].active
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1, warned
    assert warned[0].startswith("BERRYMQ_BLOCK_PLUGINS names 'jsnl', which is no installed "
                                "plugin: it blocks nothing (installed plugins: ")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="berrymq"):  # the installed ones unknown
        PluginHost(Settings(), entry_points=False)
    assert caplog.records == []

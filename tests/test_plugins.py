"""SPEC 8: plugins found through entry points, activated by settings, hooks called."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pluggy
import pytest
from helpers import child_env, plugin_site

import berrymq
import berrymq._starting
import berrymq.hookspecs
from berrymq import BerryMQError, Bus, Message, PluginError, PluginNotAvailable, SettingsError
from berrymq._discovery import Candidate
from berrymq._hook_checks import RENAMED_HOOKS
from berrymq._index import DIRECT
from berrymq.hookspecs import hookimpl
from berrymq.plugins import PluginHost
from berrymq.registries import Kind
from berrymq.settings import Settings, load_settings
from berrymq.sources.timer import IntervalTimer


def host_with(tmp_path: Path, text: str, **kwargs: Any) -> PluginHost:
    path = tmp_path / "berrymq.toml"
    path.write_text(text)
    return PluginHost(load_settings(path), **kwargs)


def test_a_misspelled_hook_is_an_error_naming_plugin_and_hook() -> None:
    class Typo:
        @hookimpl
        def berrymq_register_transport(self, registry: Any) -> None:
            pass

    with pytest.raises(BerryMQError, match=r"plugin 'typo'.*berrymq_register_transport") as info:
        PluginHost(Settings(), entry_points=False, extra_plugins=[("typo", Typo())])
    assert "berrymq_register_transports" in str(info.value)  # the hooks that exist


def test_a_bus_starts_when_created_or_by_start_never_on_a_send() -> None:
    recorder = Recorder()
    host = PluginHost(Settings(), extra_plugins=[("recorder", recorder)])
    with Bus(plugins=host):
        assert recorder.calls == ["started"]
    lazy = Bus(plugins=host, start=False)
    lazy.twitter("rec:one")
    assert recorder.calls == ["started", "closing"] and recorder.messages == []
    lazy.start()
    lazy.start()
    lazy.twitter("rec:two")
    assert recorder.calls == ["started", "closing", "started"]
    assert recorder.messages == ["rec:two"]
    lazy.close()


def test_bus_hooks_run_outside_the_bus_lock() -> None:
    held: list[bool] = []

    class Probe:
        @hookimpl
        def berrymq_start_bus(self, bus: Bus) -> None:
            held.append(bus._lock.locked() or bus.index.lock.locked())
            bus.subscribe("probe:*", print, weak=False)  # a hook may use the bus

        @hookimpl
        def berrymq_close_bus(self, bus: Bus) -> None:
            held.append(bus._lock.locked() or bus.index.lock.locked())

    Bus(plugins=PluginHost(Settings(), extra_plugins=[("probe", Probe())])).close()
    assert held == [False, False]


def test_a_start_hook_that_waits_for_another_starter_does_not_deadlock(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(berrymq._starting, "START_WAIT", 0.2)
    entered, other_done = threading.Event(), threading.Event()

    class WaitsForOthers:
        @hookimpl
        def berrymq_start_bus(self, bus: Bus) -> None:
            entered.set()
            other_done.wait(10)  # a hook waiting for a thread that starts the same bus

    bus = Bus(start=False, plugins=PluginHost(Settings(), extra_plugins=[("w", WaitsForOthers())]))
    first = threading.Thread(target=bus.start)
    first.start()
    assert entered.wait(10)  # the first thread is in the hook
    with caplog.at_level(logging.WARNING, logger="berrymq"):
        bus.start()  # waits a bounded time, then goes on
    other_done.set()
    first.join(10)
    assert not first.is_alive() and bus.started
    assert "have not finished starting in another thread after 0.2s" in caplog.text
    bus.close()


def test_the_process_plugin_host_is_loaded_outside_the_bus_lock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The first bus of a process loads every plugin (its register hooks run then).
    bus = Bus(start=False)
    held: list[bool] = []

    def load() -> PluginHost:
        held.append(bus._lock.locked())
        return PluginHost(Settings())

    monkeypatch.setattr(berrymq._starting, "get_plugin_host", load)
    bus.start()
    assert held == [False]
    bus.close()


def test_allow_list_keeps_core_receivers(tmp_path: Path) -> None:
    host = host_with(tmp_path, '[berrymq]\nplugins = ["local"]\n')
    active = {i.name for i in host.infos() if i.active}
    assert {"local", "functions", "followers", "queues"} <= active
    inactive = {i.name: i.reason for i in host.infos() if not i.active}
    assert all("not in the plugins list" in reason for reason in inactive.values())


def test_allow_list_leaves_the_other_plugins_inactive(tmp_path: Path) -> None:
    # Behaviour, not just the report: a source plugin left out of the list cannot be used,
    # and the same plugin works on a bus whose settings have no list.
    listed = Bus(plugins=host_with(tmp_path, '[berrymq]\nplugins = ["local"]\n'))
    with pytest.raises(PluginNotAvailable, match="timer"):
        IntervalTimer("beat", 60.0, bus=listed)
    listed.close()
    unlisted = Bus(plugins=host_with(tmp_path, "[berrymq]\n"))
    IntervalTimer("beat", 60.0, bus=unlisted).stop()
    unlisted.close()


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


def test_disabled_receiver_kind(tmp_path: Path) -> None:
    host = host_with(tmp_path, '[berrymq]\ndisable = ["queues", "functions"]\n')
    bus = Bus(plugins=host)
    with berrymq.use_bus(bus):
        with pytest.raises(PluginNotAvailable, match="receiver kind 'queues'.*enable it"):
            berrymq.Queue("x:*")
        with pytest.raises(PluginNotAvailable, match="receiver kind 'functions'"):
            berrymq.regist_function("x:*", print)
    bus.close()


def test_a_plugin_blocked_by_the_environment_says_to_unblock_it_not_to_edit_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a settings file present, the hint was "enable it in .../berrymq.toml", which
    cannot help: the variable blocks it whatever the file says."""
    monkeypatch.setenv("BERRYMQ_BLOCK_PLUGINS", "queues")
    bus = Bus(plugins=host_with(tmp_path, "[berrymq]\nhop_limit = 5\n"))
    with berrymq.use_bus(bus), pytest.raises(PluginNotAvailable) as info:
        berrymq.Queue("a:*")
    bus.close()
    assert str(info.value) == (
        "receiver kind 'queues' is not available: plugin 'queues' is installed but not active "
        "(blocked by BERRYMQ_BLOCK_PLUGINS); remove 'queues' from the environment variable "
        "BERRYMQ_BLOCK_PLUGINS")


class Recorder:
    """A plugin implementing the bus hooks, registered in code."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.messages: list[str] = []

    @hookimpl
    def berrymq_start_bus(self, bus: Bus) -> None:
        self.calls.append("started")
        bus.subscribe("rec:*", self.on_message, kind="recorder")

    def on_message(self, message: Message) -> None:
        self.messages.append(message.id)

    @hookimpl
    def berrymq_close_bus(self, bus: Bus) -> None:
        self.calls.append("closing")

    @hookimpl
    def berrymq_report_status(self, bus: Bus, report: Any) -> None:
        report.add("recorder", f"{len(self.messages)} messages")


def test_bus_hooks_called_once_and_receive() -> None:
    recorder = Recorder()
    host = PluginHost(Settings(), extra_plugins=[("recorder", recorder)])
    bus = Bus(plugins=host)  # creating the bus starts it
    assert recorder.calls == ["started"]
    bus.twitter("rec:one")
    bus.twitter("rec:two")
    assert recorder.calls == ["started"]
    assert recorder.messages == ["rec:one", "rec:two"]
    assert host.status(bus).lines["recorder"] == ["2 messages"]
    bus.close()
    bus.close()
    assert recorder.calls == ["started", "closing"]


def test_message_sent_hook_only_called_when_implemented_and_sees_talk_too() -> None:
    seen: list[str] = []

    class Tap:
        @hookimpl
        def berrymq_observe_message(self, bus: Bus, message: Message) -> None:
            seen.append(message.id)

    plain = Bus(plugins=PluginHost(Settings()))
    plain.twitter("x:y")
    assert plain.taps == () and plain.index.how == DIRECT
    tapped = Bus(plugins=PluginHost(Settings(), extra_plugins=[("tap", Tap())]))
    tapped.twitter("x:y")
    tapped.twitter("_local:y")
    assert seen == ["x:y", "_local:y"]
    seen.clear()
    with tapped.subscribe("x:question", lambda message: "an answer", weak=False):
        tapped.talk("x:question", "x:answer")  # the answer is sent from inside the talk
    assert seen == ["x:answer", "x:question"]
    plain.close()
    tapped.close()


def test_plugin_that_fails_to_load_is_named() -> None:
    host = PluginHost.__new__(PluginHost)

    def broken() -> object:
        raise ImportError("no module named 'missing_dependency'")

    PluginHost.__init__(host, Settings(), entry_points=False)
    with pytest.raises(BerryMQError, match=r"plugin .broken.*missing_dependency.*disable = \[.broken.\].*BERRYMQ_BLOCK_PLUGINS=broken"):
        host._load([Candidate("broken", "dist-x", "1.0", "broken.module", broken)])


@pytest.mark.parametrize(("hook", "raised"), [
    ("berrymq_declare_settings", RuntimeError("boom")),
    ("berrymq_register_transports", ValueError("boom")),
    ("berrymq_register_receivers", KeyError("boom")),
    ("berrymq_register_sources", TypeError("boom")),
])
def test_a_hook_that_raises_while_plugins_load_is_an_error_naming_plugin_and_hook(
        hook: str, raised: Exception) -> None:
    def fail(self: object, **kwargs: Any) -> None:
        raise raised

    fails = type("Fails", (), {hook: hookimpl(fail)})
    fail.__signature__ = inspect.signature(getattr(berrymq.hookspecs, hook))  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as info:
        PluginHost(Settings(), extra_plugins=[("fails", fails())])
    assert (info.value.plugin, info.value.hook) == ("fails", hook)
    assert info.value.__cause__ is raised
    assert str(info.value).startswith(
        f"plugin 'fails' (registered in code) raised {type(raised).__name__} in its hook "
        f"{hook}: {raised}; uninstall it, disable it in the settings file")


def test_two_plugins_claiming_one_scheme() -> None:
    class Claims:
        @hookimpl
        def berrymq_register_transports(self, registry: Any) -> None:
            registry.add("local", object, plugin="impostor")

    with pytest.raises(SettingsError, match="claimed by both plugin '(local|impostor)' and plugin '(impostor|local)'"):
        PluginHost(Settings(), extra_plugins=[("impostor", Claims())])


@pytest.mark.parametrize(("former", "new"), sorted(RENAMED_HOOKS.items()))
def test_a_former_hook_name_is_refused_with_its_new_name(former: str, new: str) -> None:
    def hook(self: object, bus: Bus) -> None:
        raise AssertionError("a former hook name was called")

    old = type("Old", (), {former: hookimpl(hook)})
    with pytest.raises(BerryMQError, match=rf"plugin 'old'.*{former}.*{former} is now {new}"):
        PluginHost(Settings(), extra_plugins=[("old", old())])


# -- a name is the plugin's that registers it ----------------------------------------------


class _Claims:
    """Registers ``name`` in the registry of ``hook``, with ``plugin=`` if given."""

    def __init__(self, hook: str, name: str, plugin: str | None = None) -> None:
        value: Any = Kind(name) if hook == "berrymq_register_receivers" else IntervalTimer

        def register(registry: Any) -> None:
            if plugin is None:
                registry.add(name, value)
            else:
                registry.add(name, value, plugin=plugin)

        setattr(self, hook, hookimpl(register))


@pytest.mark.parametrize(("hook", "name"), [("berrymq_register_transports", "local"),
                                            ("berrymq_register_receivers", "queues"),
                                            ("berrymq_register_sources", "timer")])
def test_a_plugin_cannot_register_a_name_as_another_plugins(hook: str, name: str) -> None:
    """``plugin=`` naming the plugin that owns the name took the name over silently (and
    that plugin's settings): now it is an error naming the plugin that did it."""
    with pytest.raises(PluginError) as info:
        PluginHost(Settings(), entry_points=False, extra_plugins=[("dupa", _Claims(hook, name, name))])
    assert (info.value.plugin, info.value.hook) == ("dupa", hook)
    assert (f"plugin 'dupa' (registered in code) raised ValueError in its hook {hook}: it "
            f"registers the ") in str(info.value)
    assert (f"{name!r} with plugin={name!r}, another plugin's name; a plugin registers names "
            "as its own ('dupa'): leave out plugin=") in str(info.value)


@pytest.mark.parametrize(("hook", "name"), [("berrymq_register_transports", "local"),
                                            ("berrymq_register_receivers", "queues"),
                                            ("berrymq_register_sources", "timer")])
def test_a_name_is_the_calling_plugins_so_a_taken_one_names_both(hook: str, name: str) -> None:
    with pytest.raises(SettingsError, match=r"is claimed by both plugin") as info:
        PluginHost(Settings(), entry_points=False, extra_plugins=[("dupa", _Claims(hook, name))])
    assert f"plugin {name!r}" in str(info.value) and "plugin 'dupa'" in str(info.value)


def test_plugin_may_be_left_out_or_given_as_the_callers_own() -> None:
    host = PluginHost(Settings(), entry_points=False, extra_plugins=[
        ("mine", _Claims("berrymq_register_transports", "mine")),
        ("ours", _Claims("berrymq_register_receivers", "ours", "ours"))])
    assert host.transports.plugin_for("mine") == "mine"
    assert host.receivers.plugin_for("ours") == "ours"


def test_nothing_is_registered_once_the_plugins_have_loaded() -> None:
    """A name added later (from a bus hook) could not be told whose it is."""
    class Late:
        @hookimpl
        def berrymq_start_bus(self, bus: Bus) -> None:
            bus.plugins.transports.add("local", IntervalTimer, plugin="local")

    host = PluginHost(Settings(), entry_points=False, extra_plugins=[("late", Late())])
    with pytest.raises(PluginError, match=r"plugin 'late'.*berrymq_start_bus: the URL scheme "
                                          r"'local' is registered after the plugins loaded"):
        Bus(plugins=host)
    assert host.transports.plugin_for("local") == "local"


def test_a_transport_factory_that_raises_is_an_error_naming_plugin_and_scheme() -> None:
    """It reached ``bus.transport`` (so ``init_connection``, ``interconnect``...) as a bare
    OSError, naming neither."""
    def factory(bus: Bus, settings: Any) -> Any:
        raise OSError("no such device")

    class BadNet:
        @hookimpl
        def berrymq_register_transports(self, registry: Any) -> None:
            registry.add("bad", factory)

    host = PluginHost(Settings(), entry_points=False, extra_plugins=[("badnet", BadNet())])
    with Bus(plugins=host) as bus:
        with pytest.raises(PluginError) as info:
            bus.transport("bad")
        assert str(info.value).startswith(
            "plugin 'badnet' (registered in code) raised OSError making its transport for "
            "bad:// addresses: no such device; uninstall it")
        assert info.value.plugin == "badnet" and isinstance(info.value.__cause__, OSError)
        assert bus.transports() == {}


@pytest.mark.parametrize(("kind", "lacks"), [(object(), "name and no answers"),
                                             (type("K", (), {"answers": True})(), "name"),
                                             (type("K", (), {"name": "", "answers": True})(), "name"),
                                             (type("K", (), {"name": "k"})(), "answers")])
def test_a_receiver_kind_without_name_or_answers_is_refused_when_registered(
        kind: object, lacks: str) -> None:
    """It was accepted, and failed later with an AttributeError where it was used."""
    class Registers:
        @hookimpl
        def berrymq_register_receivers(self, registry: Any) -> None:
            registry.add("odd", kind)

    with pytest.raises(PluginError) as info:
        PluginHost(Settings(), entry_points=False, extra_plugins=[("odd", Registers())])
    assert (info.value.plugin, info.value.hook) == ("odd", "berrymq_register_receivers")
    assert (f"raised TypeError in its hook berrymq_register_receivers: it registers as the "
            f"receiver kind 'odd' {kind!r}, which has no {lacks} (a ReceiverKind") in str(info.value)


def _unmarked(bus: Bus) -> None:
    raise AssertionError("never called")


@pluggy.HookimplMarker("elsewhere")
def _marked_elsewhere(bus: Bus) -> None:
    raise AssertionError("never called")


@pytest.mark.parametrize(("function", "why"), [
    (_unmarked, "is not marked with @hookimpl"),
    (_marked_elsewhere, "is marked for the hooks of 'elsewhere', not berryMQ's")])
def test_a_berrymq_function_without_hookimpl_is_an_error_naming_it(function: Any, why: str) -> None:
    """pluggy passes over it: the plugin was listed as active and its hook never called."""
    plugin = types.ModuleType("unmarked_plugin")
    plugin.berrymq_start_bus = function  # type: ignore[attr-defined]
    plugin.berrymq_jsonrpc = types.ModuleType("berrymq_jsonrpc")  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as info:
        PluginHost(Settings(), entry_points=False, extra_plugins=[("unmarked", plugin)])
    assert info.value.plugin == "unmarked"
    assert str(info.value).startswith(
        f"plugin 'unmarked' (registered in code) has a function berrymq_start_bus that {why} "
        "(from berrymq.hookspecs import hookimpl), so pluggy would never call it; uninstall it")
    del plugin.berrymq_start_bus  # a module named berrymq_* is no function: it stays
    assert PluginHost(Settings(), entry_points=False,
                      extra_plugins=[("unmarked", plugin)]).is_active("unmarked")
class _Observer:
    """A plugin's observer that keeps what it sees, or raises."""

    def __init__(self, seen: list[str], fails: bool = False) -> None:
        self.seen = seen
        self.fails = fails

    @hookimpl
    def berrymq_observe_message(self, bus: Bus, message: Message) -> None:
        self.seen.append(message.id)
        if self.fails:
            raise RuntimeError("observer broke")


def test_an_observer_that_raises_hides_neither_the_receivers_errors_nor_other_observers() -> None:
    """A probe found the receivers' ExceptionGroup (raise_errors) neither raised nor
    logged, and the other plugin's observer skipped, once one observer raised."""
    first: list[str] = []
    second: list[str] = []
    host = PluginHost(Settings(), entry_points=False, extra_plugins=[
        ("fails", _Observer(first, fails=True)), ("sees", _Observer(second))])
    with Bus(plugins=host, raise_errors=True) as bus:
        def receiver(message: Message) -> None:
            raise KeyError("receiver broke")

        bus.subscribe("y:*", receiver, weak=False)
        for send in (lambda: bus.twitter("y:1"), lambda: bus.talk("y:1", "z:answer")):
            with pytest.raises(ExceptionGroup, match=r"1 receiver\(s\) and 1 observer\(s\) of y:1 "
                                                     r"failed") as info:
                send()
            receivers, observers = info.value.exceptions
            assert isinstance(receivers, KeyError) and receivers.args == ("receiver broke",)
            assert isinstance(observers, PluginError) and observers.plugin == "fails"
        assert first == second == ["y:1", "y:1"]  # every observer saw each message

        with pytest.raises(PluginError, match="plugin 'fails'.*observer broke"):
            bus.twitter("other:1")  # no receiver: the lone observer's failure, as itself
    assert second == ["y:1", "y:1", "other:1"]


def test_the_failures_of_two_observers_come_together() -> None:
    seen: list[str] = []
    host = PluginHost(Settings(), entry_points=False, extra_plugins=[
        ("one", _Observer(seen, fails=True)), ("two", _Observer(seen, fails=True))])
    with Bus(plugins=host) as bus:
        with pytest.raises(ExceptionGroup, match=r"0 receiver\(s\) and 2 observer\(s\)") as info:
            bus.twitter("x:1")
    assert sorted(e.plugin for e in info.value.exceptions) == ["one", "two"]  # type: ignore[attr-defined]
    assert seen == ["x:1", "x:1"]


@pytest.mark.parametrize("use", ["berrymq.twitter('a:b')",
                                 "berrymq.regist_function('a:*', print, weak=False)"])
def test_a_plugin_that_uses_berrymq_as_it_is_imported_is_named_not_a_hang(
        tmp_path: Path, use: str) -> None:
    """Its import runs inside the loading of the plugins, which a send or a receiver of
    the default bus waits for: the program hung for ever at its first send."""
    env = plugin_site(tmp_path, "eager", f"import berrymq\n{use}\n")
    done = subprocess.run([sys.executable, "-c", "import berrymq\nberrymq.twitter('x:y')\n"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**child_env(), **env})
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "PluginError" in last and "'eager'" in last, done.stderr
    assert "while its plugins were being loaded" in last, done.stderr

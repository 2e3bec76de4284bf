"""berrymq.default: the default bus is made on first use and started by the API's first use.

Each check runs in a fresh interpreter (a real subprocess): the default bus of this test
process has long been made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import WAIT, child_env, plugin_site

import berrymq
from berrymq.default import _EmptyHolder, _Holder, holder

PROBE = textwrap.dedent(
    """
    import json, sys
    from berrymq.hookspecs import hookimpl
    from berrymq.plugins import PluginHost, reset_plugin_host
    from berrymq.settings import Settings

    started = []

    class Probe:
        @hookimpl
        def berrymq_start_bus(self, bus):
            started.append(bus.name)

    reset_plugin_host(PluginHost(Settings(), extra_plugins=[("probe", Probe())]))
    import berrymq
    import berrymq.default as default

    out = {"made_at_import": default._filled() is not None or bool(default._waiting)}
    bus = berrymq.get_bus()
    out["get_bus_starts"] = bool(started)
    out["same_bus"] = berrymq.get_bus() is bus
    berrymq.twitter("a:b")
    out["first_use_starts"] = started == ["default"] and berrymq.get_bus() is bus
    berrymq.twitter("a:b")
    out["started_once"] = started == ["default"]
    own = berrymq.Bus(name="own")
    with berrymq.use_bus(own):
        out["use_bus"] = berrymq.get_bus() is own
    out["restored"] = berrymq.get_bus() is bus
    print(json.dumps(out))
    """
)


def test_the_default_bus_is_made_on_first_use_and_started_by_the_api(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "made_at_import": False,
        "get_bus_starts": False,
        "same_bus": True,
        "first_use_starts": True,
        "started_once": True,
        "use_bus": True,
        "restored": True,
    }


def test_the_default_bus_closed_before_first_use_still_takes_sends(tmp_path: Path) -> None:
    """Sending to a closed bus works and reaches nobody, the default bus included: its
    first module-level use, which would start it, finds it closed and sends all the same
    (no plugin joins it)."""
    script = PROBE.split("out = {")[0] + textwrap.dedent("""
        bus = berrymq.get_bus()
        bus.close()
        berrymq.twitter("a:b")
        berrymq.twitter("a:c", 1)
        print(json.dumps({"started": started, "same": berrymq.get_bus() is bus,
                          "closed": bus.closed}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"started": [], "same": True, "closed": True}


FAILED_START = textwrap.dedent(
    """
    import json
    from berrymq.hookspecs import hookimpl
    from berrymq.plugins import PluginHost, reset_plugin_host
    from berrymq.settings import Settings

    class FailingStart:
        @hookimpl
        def berrymq_start_bus(self, bus):
            raise FileNotFoundError("nodir/m.jsonl")

    reset_plugin_host(PluginHost(Settings(), extra_plugins=[("fails", FailingStart())]))
    import berrymq

    raised = []
    for call in (lambda: berrymq.twitter("job:done"), lambda: berrymq.twitter("job:done"),
                 lambda: berrymq.Queue("job:*"), berrymq.get_bus().start):
        try:
            call()
            raised.append(None)
        except Exception as exc:
            raised.append([type(exc).__name__, str(exc), type(exc.__cause__).__name__])
    print(json.dumps({"raised": raised, "started": berrymq.get_bus().started}))
    """
)


def test_the_default_bus_whose_start_failed_raises_on_every_later_use(tmp_path: Path) -> None:
    """The first use raised the hook's error, and the next ones went through on a bus
    marked started whose plugin never joined (nothing written, flush True)."""
    done = subprocess.run([sys.executable, "-c", FAILED_START], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    error = ("plugin 'fails' (registered in code) raised FileNotFoundError in its hook "
             "berrymq_start_bus: nodir/m.jsonl; uninstall it, disable it in the settings file "
             "(disable = ['fails']) or set BERRYMQ_BLOCK_PLUGINS=fails")
    failed = (f"bus 'default' did not start: its start raised PluginError: {error}; it is "
              "not used without what failed (fix the cause, then use a new bus)")
    assert out == {"raised": [["PluginError", error, "FileNotFoundError"],
                              *[["RuntimeError", failed, "PluginError"]] * 3],
                   "started": False}


SETTINGS_BEFORE_START = textwrap.dedent(
    """
    import json
    import berrymq

    bus = berrymq.get_bus()
    out = {"before": [bus.started, bus.raise_errors, bus.hop_limit, bus.index.limit]}

    def broken(message):
        raise LookupError("receiver broke")

    bus.subscribe("job:*", broken, weak=False)
    try:
        bus.twitter("job:done")  # on the bus itself: it does not start it
        out["raised"] = None
    except ExceptionGroup as group:
        out["raised"] = [type(e).__name__ for e in group.exceptions]
    out["started"] = bus.started
    print(json.dumps(out))
    """
)


def test_the_default_bus_has_the_settings_files_values_before_it_starts(
        tmp_path: Path) -> None:
    """``get_bus()`` hands out the default bus unstarted; its ``raise_errors`` and
    ``hop_limit`` were the defaults until the first module-level send started it, and a
    send on the bus itself logged a receiver's error instead of raising it. No plugin
    starts for it."""
    (tmp_path / "berrymq.toml").write_text(
        "[berrymq]\nraise_errors = true\nhop_limit = 5\nroute_cache_size = 100\n")
    done = subprocess.run([sys.executable, "-c", SETTINGS_BEFORE_START], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"before": [False, True, 5, 100],
                                       "raised": ["LookupError"], "started": False}


def test_a_settings_file_that_does_not_load_still_lets_get_bus_hand_out_the_bus(
        tmp_path: Path) -> None:
    """Reading the file early must not make ``get_bus()`` raise (``berrymq plugins`` and
    the ``berrymq_bus`` fixture use it): the bus keeps its defaults and its start, at the
    first module-level use, raises the error as it did."""
    (tmp_path / "berrymq.toml").write_text("[berrymq]\nhop_limit = 'many'\n")
    script = textwrap.dedent("""
        import json
        import berrymq
        bus = berrymq.get_bus()
        out = [bus.started, bus.raise_errors, bus.hop_limit]
        try:
            berrymq.twitter("a:b")
        except berrymq.SettingsError as exc:
            out.append(str(exc).split(": ", 1)[1])
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [False, False, 32, "hop_limit must be an integer, got str"]


def test_a_plugin_whose_import_asks_for_the_default_bus_does_not_hang_it(
        tmp_path: Path) -> None:
    """``get_bus()`` loads the plugins to read the settings; a plugin module that calls
    ``berrymq.get_bus()`` as it is imported waited for that loading, in its own thread,
    for ever. It gets the bus as it is then; the caller's gets the settings."""
    (tmp_path / "berrymq.toml").write_text("[berrymq]\nhop_limit = 7\n")
    source = ("import threading, berrymq\nBUS = berrymq.get_bus()\n"  # this thread, and
              "helper = threading.Thread(target=berrymq.get_bus)\n"  # one it waits for
              "helper.start()\nhelper.join(30)\nassert not helper.is_alive()\n")
    env = plugin_site(tmp_path, "early", source)
    script = ("import json, berrymq\nbus = berrymq.get_bus()\n"
              "print(json.dumps([bus.hop_limit, bus.started]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=WAIT * 2, cwd=tmp_path, env={**child_env(), **env})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [7, False]


def test_senders_find_a_bus_while_the_default_bus_is_swapped() -> None:
    # The holder changes class when its slot is emptied and filled; a sender without the
    # lock must always find a bus, never an AttributeError, and once a bus is set the
    # holder is back in its class without __getattr__ (the fast one). (The ordering that
    # keeps a sender from meeting an empty slot in the fast class cannot be forced into a
    # race under the GIL; this checks sending across many swaps.)
    buses = [berrymq.Bus(name=f"swap-{i}") for i in range(2)]
    got: list[int] = []
    for i, bus in enumerate(buses):
        bus.subscribe("swap:go", lambda message, i=i: got.append(i), weak=False)
    errors: list[BaseException] = []
    stop = threading.Event()

    def send() -> None:
        try:
            while not stop.is_set():
                berrymq.twitter("swap:go")
        except BaseException as exc:
            errors.append(exc)

    senders = [threading.Thread(target=send) for _ in range(2)]
    old = berrymq.get_bus()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for thread in senders:
            thread.start()
        deadline = time.monotonic() + WAIT
        n = 0
        while (n < 2000 or len(set(got)) < 2) and time.monotonic() < deadline:
            berrymq.set_bus(buses[n % 2])
            n += 1
            if n % 100 == 0:
                time.sleep(0.001)  # not a wait: lets the senders run between swaps
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        for thread in senders:
            thread.join(WAIT)
        berrymq.set_bus(old)
        for bus in buses:
            bus.close()
    assert not errors
    assert type(holder) is _Holder and not isinstance(holder, _EmptyHolder)
    assert set(got) == {0, 1}


RACE = textwrap.dedent(
    """
    import json, threading
    from berrymq.hookspecs import hookimpl
    from berrymq.plugins import PluginHost, reset_plugin_host
    from berrymq.settings import Settings

    entered, release, got = threading.Event(), threading.Event(), []

    class SlowStart:
        @hookimpl
        def berrymq_start_bus(self, bus):
            berrymq.twitter("early:x")  # a hook may use the default bus it starts
            entered.set()
            release.wait(60)
            bus.subscribe("race:*", got.append, weak=False)  # its plugin is ready now

    reset_plugin_host(PluginHost(Settings(), extra_plugins=[("slow", SlowStart())]))
    import berrymq

    first = threading.Thread(target=berrymq.twitter, args=("first:use",))
    first.start()
    entered.wait(60)
    second_done = threading.Event()
    second = threading.Thread(
        target=lambda: (berrymq.twitter("race:second"), second_done.set()))
    second.start()
    out = {"second_waited": not second_done.wait(0.5)}  # blocked while the hook runs
    release.set()
    first.join(60)
    second.join(60)
    out["second_delivered"] = [m.id for m in got] == ["race:second"]
    print(json.dumps(out))
    """
)


def test_a_second_thread_waits_for_the_default_bus_to_start(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"second_waited": True, "second_delivered": True}


def test_use_bus_blocks_of_two_threads_overlapping_leave_the_default_as_it_was() -> None:
    """Each block's end leaves the default as it would be without that block: the first
    to begin and first to end no longer put back the bus the second had replaced."""
    original = berrymq.get_bus()
    first, second = berrymq.Bus(name="first"), berrymq.Bus(name="second")
    second_began, first_ended = threading.Event(), threading.Event()
    seen: list[berrymq.Bus] = []

    def use_second() -> None:
        with berrymq.use_bus(second):
            second_began.set()
            assert first_ended.wait(WAIT)
            seen.append(berrymq.get_bus())  # still this block's

    try:
        with berrymq.use_bus(first):
            thread = threading.Thread(target=use_second)
            thread.start()
            assert second_began.wait(WAIT)
        first_ended.set()
        thread.join(WAIT)
        assert seen == [second]
        assert berrymq.get_bus() is original
    finally:
        first.close()
        second.close()


def test_set_bus_and_use_bus_refuse_what_is_no_bus_before_changing_the_default() -> None:
    """``use_bus("not a bus")`` raised a bare AttributeError after it had emptied the
    default's slot: the default bus and its receivers were lost, every later send went to
    a new, empty bus (found by an outside audit); ``use_bus(None)`` put a new empty bus in
    for the block."""
    got: list[str] = []
    default = berrymq.get_bus()
    subscription = berrymq.regist_function("job:done", lambda m: got.append(m.id), weak=False)
    try:
        for given in ("not a bus", None):
            for refuse in (berrymq.set_bus, lambda bus: berrymq.use_bus(bus).__enter__()):
                with pytest.raises(TypeError, match="expected a berrymq.Bus, got"):
                    refuse(given)  # type: ignore[arg-type]
                assert berrymq.get_bus() is default
        berrymq.twitter("job:done")
        assert got == ["job:done"]
    finally:
        subscription.cancel()

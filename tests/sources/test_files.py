"""berrymq.sources.files: FileObserver, with real files (polling and watchdog)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, bytes_held, take_all, wait_for

import berrymq
from berrymq import Bus, FileObserver, Message, QueueFull
from berrymq.plugins import PluginHost
from berrymq.sources import running_adapters


def write_atomically(path: Path, text: str) -> None:
    """Write beside the watched name, then rename into place: one change, seen whole."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_observer_reports_created_modified_removed(
    berrymq_bus: Bus, tmp_path: Path
) -> None:
    (tmp_path / "old.txt").write_text("there before")
    (tmp_path / "ignored.log").write_text("not matched")
    events = berrymq.Queue("files:*")
    interval = 0.02
    with FileObserver(str(tmp_path / "*.txt"), "files", interval=interval):
        new = tmp_path / "new.txt"
        write_atomically(new, "one")
        created = events.get(timeout=WAIT)
        assert (created.id, created.args) == ("files:created", (str(new),))

        write_atomically(new, "two, longer")
        modified = events.get(timeout=WAIT)
        assert (modified.id, modified.args) == ("files:modified", (str(new),))

        with open(tmp_path / "old.txt", "a") as handle:
            handle.write(" and more")
        modified = events.get(timeout=WAIT)
        assert (modified.id, modified.args) == ("files:modified", (str(tmp_path / "old.txt"),))

        new.unlink()
        removed = events.get(timeout=WAIT)
        assert (removed.id, removed.args) == ("files:removed", (str(new),))

        (tmp_path / "other.log").write_text("not matched either")
        (tmp_path / "sub.txt").mkdir()  # a directory is not a file
        write_atomically(tmp_path / "last.txt", "x")
        last = events.get(timeout=WAIT)
    assert (last.id, last.args) == ("files:created", (str(tmp_path / "last.txt"),))
    assert events.empty()
    # Stopped means stopped: a change after the observer stopped sends nothing.
    write_atomically(tmp_path / "last.txt", "changed after the stop")
    with pytest.raises(berrymq.Empty):
        events.get(timeout=10 * interval)


def test_check_is_deterministic_and_ordered(berrymq_bus: Bus, tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "gone.txt", "same.txt"):
        (tmp_path / name).write_text(name)
    events = berrymq.Queue("obs:*")
    with FileObserver(str(tmp_path / "*.txt"), "obs", interval=3600) as observer:
        assert observer.check() == []
        (tmp_path / "z.txt").write_text("z")
        (tmp_path / "c.txt").write_text("c")
        (tmp_path / "b.txt").write_text("b, changed")
        (tmp_path / "a.txt").write_text("a, changed")
        (tmp_path / "gone.txt").unlink()
        expected = [
            ("created", str(tmp_path / "c.txt")),
            ("created", str(tmp_path / "z.txt")),
            ("modified", str(tmp_path / "a.txt")),
            ("modified", str(tmp_path / "b.txt")),
            ("removed", str(tmp_path / "gone.txt")),
        ]
        assert observer.check() == expected
        assert observer.check() == []
    assert [(m.action, m.args[0]) for m in take_all(events)] == expected
    assert observer.check() == []  # stopped: nothing more


def test_a_receiver_may_call_check_itself(berrymq_bus: Bus, tmp_path: Path) -> None:
    """check() holds its lock while it sends, to keep two checks' messages in order; a
    receiver that called it again deadlocked its own thread."""
    seen: list[tuple[str, Any]] = []
    with FileObserver(str(tmp_path / "*.log"), "logs", interval=3600) as observer:
        def on_change(message: Message) -> None:
            seen.append((message.action, observer.check()))  # nothing new: []

        berrymq.regist_function("logs:*", on_change, weak=False)
        (tmp_path / "a.log").write_text("x")
        done = threading.Thread(target=observer.check, daemon=True)
        done.start()
        done.join(WAIT)
        assert not done.is_alive(), "check() from a receiver of check() deadlocked"
    assert seen == [("created", [])]


def test_recursive_glob(berrymq_bus: Bus, tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    with FileObserver(str(tmp_path / "**" / "*.py"), "src", interval=3600) as observer:
        (deep / "mod.py").write_text("x = 1")
        (tmp_path / "top.py").write_text("y = 2")
        assert observer.check() == [
            ("created", str(deep / "mod.py")),
            ("created", str(tmp_path / "top.py")),
        ]


def test_watchdog_wakes_the_observer_before_the_interval(
    berrymq_bus: Bus, tmp_path: Path
) -> None:
    events = berrymq.Queue("wd:*")
    started = time.monotonic()
    with FileObserver(str(tmp_path / "*.txt"), "wd", interval=3600, watchdog=True):
        write_atomically(tmp_path / "fast.txt", "now")
        message = events.get(timeout=WAIT)  # the interval alone would take an hour
    assert (message.id, message.args) == ("wd:created", (str(tmp_path / "fast.txt"),))
    assert time.monotonic() - started < WAIT


def test_watchdog_needs_an_existing_directory(berrymq_bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FileObserver(str(tmp_path / "missing" / "*.txt"), "x", watchdog=True)
    assert running_adapters(berrymq_bus) == []


def test_polling_a_directory_that_appears_later(berrymq_bus: Bus, tmp_path: Path) -> None:
    later = tmp_path / "later"
    with FileObserver(str(later / "*.txt"), "later", interval=3600) as observer:
        later.mkdir()
        (later / "f.txt").write_text("f")
        assert observer.check() == [("created", str(later / "f.txt"))]


def test_file_observer_refuses_bad_arguments(berrymq_bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="glob"):
        FileObserver("", "x")
    with pytest.raises(ValueError, match="interval"):
        FileObserver(str(tmp_path / "*"), "x", interval=0)
    with pytest.raises(ValueError, match="id_name"):
        FileObserver(str(tmp_path / "*"), "x:created")


def test_the_failures_check_raises_are_not_kept_once_caught(berrymq_bus: Bus, tmp_path: Path) -> None:
    """check() keeps its receivers' failures in a list while the other events go out:
    had its frame still held them once the group was raised, they, their tracebacks and
    the frames in them (a receiver's 200 KB, here) would keep each other until the cyclic
    collector ran. The collector is held off here."""
    def refuse(message: Message) -> None:
        ballast = bytearray(200 * 1024)  # noqa: F841 - held by this frame, which the traceback holds
        raise QueueFull("no room")

    berrymq_bus.subscribe("obs:created", refuse, weak=False)
    for i in range(10):
        (tmp_path / f"{i}.txt").write_text("new")
    with FileObserver(str(tmp_path / "*.txt"), "obs", interval=3600) as observer:
        observer.check()  # takes the ten files as they are
        for i in range(10, 20):
            (tmp_path / f"{i}.txt").write_text("new")
        failures: list[int] = []

        def check_and_catch() -> None:
            try:
                observer.check()
            except ExceptionGroup as group:
                failures.append(len(group.exceptions))

        held = bytes_held(check_and_catch)
    assert failures == [10]
    assert held < 2 * 200 * 1024, f"{held:,} bytes held of 10 refusals"


def test_refusals_grouped_twice_are_counted_as_lost(
        berrymq_bus: Bus, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two full queues refuse the one event: the send raises both as a group, which
    check() groups again with the round's other failures. The observer's thread looked
    for refusals one level deep only: it counted neither and logged the whole as a failure
    of the observer."""
    full = [berrymq.Queue("obs:*", maxsize=1, on_full="refuse") for _ in range(2)]
    berrymq.twitter("obs:fill")  # one message each: both are full
    reason = "refused, sent by an adapter: QueueFull"
    with caplog.at_level(logging.ERROR, logger="berrymq"):
        with FileObserver(str(tmp_path / "*.txt"), "obs", interval=0.01):
            write_atomically(tmp_path / "a.txt", "new")
            wait_for(lambda: berrymq_bus.losses.counts.get(reason, 0) >= 2,
                     what=f"two losses, got {berrymq_bus.losses.counts}")
    assert berrymq_bus.losses.counts == {reason: 2}
    assert [q.qsize() for q in full] == [1, 1]
    assert not [r for r in caplog.records if "keeps running" in r.getMessage()]


def test_a_stop_from_another_thread_ends_the_round(berrymq_bus: Bus, tmp_path: Path) -> None:
    """stop() while the observer's thread sends a round: what is left of the round is
    not sent. It was: the round went on to its end, and stop() waited for it (up to 5 s,
    then returned with the thread still sending)."""
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(20):
        (staging / f"{i:02}.txt").write_text("new")
    got: list[str] = []
    sending, release = threading.Event(), threading.Event()

    def slow(message: Message) -> None:
        got.append(message.args[0])
        sending.set()
        release.wait(WAIT)

    berrymq_bus.subscribe("many:created", slow, weak=False)
    observer = FileObserver(str(tmp_path / "sub" / "*.txt"), "many", interval=0.01)
    os.replace(staging, tmp_path / "sub")  # all twenty appear at once: one round
    assert sending.wait(WAIT)  # the thread's round is in its first message
    stopping = threading.Thread(target=observer.stop)
    stopping.start()
    wait_for(lambda: not observer.running, what="stop() to begin")
    release.set()
    stopping.join(WAIT)
    assert not stopping.is_alive() and not observer._thread.is_alive()
    assert len(got) == 1, f"{len(got)} messages sent, the last after stop()"


def test_a_receiver_that_stops_the_observer_ends_the_round(
        berrymq_bus: Bus, tmp_path: Path) -> None:
    sent: list[str] = []
    with FileObserver(str(tmp_path / "*.txt"), "stopper", interval=3600) as observer:
        def stop_at_once(message: Message) -> None:
            sent.append(message.args[0])
            observer.stop()

        berrymq_bus.subscribe("stopper:created", stop_at_once, weak=False)
        for name in ("a.txt", "b.txt", "c.txt"):
            write_atomically(tmp_path / name, "new")
        assert observer.check() == [("created", str(tmp_path / "a.txt"))]
    assert sent == [str(tmp_path / "a.txt")]


def test_a_watching_observer_refused_by_a_closed_bus_leaves_nothing_running(
        berrymq_plugin_host: PluginHost, tmp_path: Path) -> None:
    """The bus is closed: the observer is refused. It was refused only after it had
    started watchdog's observer, whose thread and inotify descriptor nobody stopped."""
    bus = Bus(plugins=berrymq_plugin_host)
    bus.close()
    threads, fds = set(threading.enumerate()), set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(berrymq.BusClosed, match="is closed"):
            FileObserver(str(tmp_path / "*.txt"), "x", watchdog=True, bus=bus)
    assert set(threading.enumerate()) - threads == set()
    assert set(os.listdir("/proc/self/fd")) - fds == set()
    assert running_adapters(bus) == []


def test_a_link_back_up_does_not_send_the_walk_round(berrymq_bus: Bus, tmp_path: Path) -> None:
    # glob followed "up -> ." down to the kernel's 40 links: one new file was reported as
    # 41 files (with two such links it did not return within minutes, at 100% CPU)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("..")
    observer = FileObserver(str(tmp_path / "**" / "*.log"), "files", 3600)
    try:
        write_atomically(tmp_path / "sub" / "a.log", "x")
        assert observer.check() == [("created", str(tmp_path / "sub" / "a.log"))]
    finally:
        observer.stop()


UNREADABLE = r"""
import json, os, sys
from berrymq import FileObserver
folder = sys.argv[1]
for name in ("a.txt", "b.txt"):
    with open(os.path.join(folder, name), "w") as f:
        f.write("x")
observer = FileObserver(os.path.join(folder, "*.txt"), "files", 3600)
os.chmod(folder, 0)
hidden = observer.check()
os.chmod(folder, 0o700)
shown = observer.check()
observer.stop()
print(json.dumps([hidden, shown]))
"""


def test_a_directory_that_cannot_be_read_is_said_not_reported_removed(tmp_path: Path) -> None:
    # glob swallowed the permission error: every file was reported removed, then created
    # again once the directory could be read, and nothing said why. Run as its own
    # process, without root's power to read anything where the tests run as root.
    command = [sys.executable, "-c", UNREADABLE, str(tmp_path)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root reads any directory, and setpriv (util-linux) is not here "
                        "to drop that power")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[], []]
    assert f"FileObserver({str(tmp_path / '*.txt')!r}) cannot read {tmp_path} " \
           "(Permission denied)" in done.stderr


def test_links_are_followed_as_glob_follows_them_but_a_loop_of_links_is_not(
        berrymq_bus: Bus, tmp_path: Path) -> None:
    # a link to a directory elsewhere: what lies there is found under both paths, as glob
    # finds it (walking each directory once found it under one, and which one depended
    # on the listing's order); a loop of links (a -> b -> a) raised OSError ELOOP out of
    # the observer, where glob takes such a link for no directory
    (tmp_path / "src" / "app").mkdir(parents=True)
    (tmp_path / "app").symlink_to(tmp_path / "src" / "app")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    observer = FileObserver(str(tmp_path / "**" / "*.py"), "files", 3600)
    try:
        write_atomically(tmp_path / "src" / "app" / "main.py", "x")
        assert observer.check() == [("created", str(tmp_path / "app" / "main.py")),
                                    ("created", str(tmp_path / "src" / "app" / "main.py"))]
    finally:
        observer.stop()

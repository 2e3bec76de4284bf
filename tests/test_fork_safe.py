"""berrymq.fork_safe: a process forked while another thread holds one of berryMQ's locks.

Only the forking thread is in the child, so such a lock would stay taken there for ever,
and the child's first registration or send waited for it (about half of the forks hung:
a thread that registers and cancels receivers, or makes and closes queues, is inside the
bus's index lock most of the time, and one loading the plugins inside the plugin
host's). The forks are made in a child Python, as pytest's own process is multi-threaded
(Python 3.12+ warns of such a fork); each forked child gets a few seconds, and one that
overstays is killed and counted as hung."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import child_env

#: Forks per run: with the locks held about half of the time, the old code hung in one of
#: the first few (it is stopped at the first that hangs).
FORKS = 30

FORKING = textwrap.dedent("""
    import json, logging, os, signal, sys, threading, time
    import berrymq
    from berrymq.bursts import BurstLog
    from berrymq.plugins import get_plugin_host, reset_plugin_host

    CHURN, FORKS = sys.argv[1], int(sys.argv[2])
    berrymq.twitter("warm:up")  # the default bus and its plugins, made before the churn

    churning = threading.Event()

    other = berrymq.Bus(name="other")
    local = berrymq.get_bus().transport("local")
    logging.getLogger("churn").disabled = True  # the churn's lines would be most of its time
    burst = BurstLog(logging.getLogger("churn"), interval=60, schedule=lambda *_: None)

    def churn():
        while True:
            churning.set()
            if CHURN == "register":
                berrymq.regist_function("job:*", print, weak=False).cancel()
            elif CHURN == "queue":
                berrymq.Queue("job:*").close()
            elif CHURN == "default":  # the default bus, swapped again and again
                with berrymq.use_bus(other):
                    pass
            elif CHURN == "local":  # a local:// name, served and given up
                local.listen("local://churn")
                local.close()
            elif CHURN == "bursts":  # a burst of log lines, under way and over
                burst.warning("churn")
                burst.flush()
            else:  # the plugins, loaded again and again
                reset_plugin_host(None)
                get_plugin_host()

    def child():
        got = []
        subscription = berrymq.regist_function("child:*", got.append, weak=False)
        berrymq.twitter("child:x")
        subscription.cancel()
        berrymq.Queue("child:q").close()
        get_plugin_host()
        with berrymq.use_bus(berrymq.Bus(name="child")):
            pass
        served = berrymq.Bus(name="served")
        served.transport("local").listen("local://child")
        served.close()
        BurstLog(logging.getLogger("child"), interval=60, schedule=lambda *_: None).warning("x")
        burst.flush()
        return 0 if len(got) == 1 else 3

    threading.Thread(target=churn, daemon=True).start()
    churning.wait(5)
    codes, hung = [], 0
    for _ in range(FORKS):
        pid = os.fork()
        if pid == 0:
            code = 4
            try:
                code = child()
            finally:
                os._exit(code)
        deadline = time.monotonic() + 5
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:  # hung: killed, and no more forks
                hung += 1
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        if hung:
            break
    print(json.dumps({"hung": hung, "codes": sorted(set(codes))}), flush=True)
    os._exit(0)  # the churning thread may hold a lock that the exit would take
""")


@pytest.mark.parametrize("churn", ["register", "queue", "plugins", "default", "local", "bursts"])
def test_a_process_forked_while_another_thread_holds_a_lock_uses_berrymq(
        tmp_path: Path, churn: str) -> None:
    result = subprocess.run([sys.executable, "-c", FORKING, churn, str(FORKS)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=child_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"hung": 0, "codes": [0]}, (report, result.stderr)


def test_a_fork_safe_lock_held_by_another_thread_is_free_in_a_forked_child() -> None:
    """berrymq.fork_safe itself: a plain lock stays taken in the child, this one is new."""
    script = textwrap.dedent("""
        import os, threading
        from berrymq.fork_safe import ForkSafeLock
        lock, plain = ForkSafeLock(), threading.Lock()
        held, done = threading.Event(), threading.Event()

        def hold():
            with lock, plain:
                held.set()
                done.wait()

        threading.Thread(target=hold, daemon=True).start()
        held.wait(5)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if lock.acquire(timeout=2) and not plain.acquire(timeout=0.1) else 1)
        _, status = os.waitpid(pid, 0)
        done.set()
        print(os.waitstatus_to_exitcode(status))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=child_env(), timeout=60, check=False)
    assert result.stdout.strip() == "0", result.stderr


def test_a_fork_safe_lock_held_by_the_forking_thread_stays_its_own_in_the_child() -> None:
    """A thread that forks inside ``with lock:`` goes on in the child inside that block:
    the child's copy of the lock is still held, by it, and the block's end releases it
    (a lock made afresh there made that release raise ``RuntimeError``)."""
    script = textwrap.dedent("""
        import os, threading
        from berrymq.fork_safe import ForkSafeLock
        lock = ForkSafeLock()
        with lock:
            pid = os.fork()
            if pid == 0:
                try:
                    held = lock.locked() and not lock.acquire(timeout=0.1)
                    lock.release()
                    again = lock.acquire(timeout=2)
                    lock.release()
                    os._exit(0 if held and again else 1)
                except BaseException:
                    os._exit(2)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), lock.acquire(timeout=2))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=child_env(), timeout=60, check=False)
    assert result.stdout.strip() == "0 True", result.stderr


def test_an_ask_in_a_forked_child_gets_its_replies_when_the_parent_had_idle_helper_threads(
        ) -> None:
    """The parts of an ``ask`` run on helper threads that stay idle a while: a child
    forked meanwhile counted them as its own, gave its ask's part to a thread that is not
    there, and the ask came back empty at its timeout."""
    script = textwrap.dedent("""
        import os, time
        import berrymq
        from berrymq.ask import ASK_PARTS
        berrymq.regist_function("price:quote", lambda message: 19, weak=False)
        assert berrymq.ask("price:quote", timeout=5) == [19]  # on a helper thread
        helpers, deadline = berrymq.get_bus().state(ASK_PARTS), time.monotonic() + 10
        while helpers.idle != 1:  # the thread that ran it waits for more work now
            assert time.monotonic() < deadline, "the helper thread did not go idle"
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            started = time.monotonic()
            replies = berrymq.ask("price:quote", timeout=2)
            os._exit(0 if replies == [19] and time.monotonic() - started < 1 else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=child_env(), timeout=60, check=False)
    assert result.stdout.strip() == "0", result.stderr


def test_a_fork_from_a_receiver_on_a_helper_thread_counts_that_thread_in_the_child() -> None:
    """The forking thread goes on in the child: when it is a helper thread of ``ask`` (a
    receiver forked), the child's pool counted 0 threads, then -1 once it ended."""
    script = textwrap.dedent("""
        import os
        import berrymq
        from berrymq.ask import ASK_PARTS

        def fork_here(message):
            pid = os.fork()
            if pid == 0:
                helpers = berrymq.get_bus().state(ASK_PARTS)
                os._exit(0 if (helpers.threads, helpers.idle) == (1, 0) else 1)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)

        berrymq.regist_function("fork:here", fork_here, weak=False)
        print(berrymq.ask("fork:here", timeout=30))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=child_env(), timeout=60, check=False)
    assert result.stdout.strip() == "[0]", result.stderr

"""berrymq._pool_exit: the end of a worker pool when the process exits with work in it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from helpers import WAIT, clean_env, make_bus, serve, wait_for

N = 400

#: A program that hands the pool more than it can run before the main thread ends (each
#: receiver works 1 ms, on 2 workers), and reports, from atexit handlers registered after
#: the pool started (as a transport's exit flush is when its module is imported later),
#: what was delivered by then and what the bus counts as lost.
FILLED_THEN_EXIT = textwrap.dedent(f"""
    import atexit, os, time
    import berrymq

    seen = []
    berrymq.set_multiplicity(2)

    @berrymq.following_function("w:*")
    def slow(message):
        time.sleep(0.001)  # the work of a receiver, slower than the sender
        seen.append(message[1][0])

    for i in range({N}):
        berrymq.twitter("w:x", i)
    print("main ended with", len(seen), flush=True)

    def report():
        losses = berrymq.get_bus().losses.snapshot()
        os.write(1, f"at exit: {{len(seen)}} {{len(set(seen))}} {{losses}}\\n".encode())

    atexit.register(report)
""")


def run(program: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    child = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=timeout, env=clean_env())
    return child, time.monotonic() - start


def test_a_process_that_ends_with_work_in_its_pool_runs_it_before_the_atexit_handlers(
        ) -> None:
    """The main thread ends with most of the messages still queued: they are delivered
    before the program's atexit handlers run, none lost and none twice (the workers were
    daemon threads that died with the interpreter: 0 of 2000 delivered, nothing counted)."""
    child, _ = run(FILLED_THEN_EXIT)
    assert child.returncode == 0, child.stderr
    lines = child.stdout.splitlines()
    assert int(lines[0].split()[-1]) < N, child.stdout  # there was work left to do
    assert lines[1] == f"at exit: {N} {N} {{}}", child.stdout
    assert child.stderr == ""


#: Receivers that never return: the two workers each hold one message, the rest waits.
BLOCKED_THEN_EXIT = textwrap.dedent(f"""
    import atexit, logging, os, threading
    import berrymq
    import berrymq._pool_exit

    logging.basicConfig(format="%(levelname)s %(name)s %(message)s")
    berrymq._pool_exit.EXIT_WAIT = 0.5
    never = threading.Event()
    berrymq.set_multiplicity(2)

    @berrymq.following_function("w:*")
    def stuck(message):
        never.wait()

    for i in range({N}):
        berrymq.twitter("w:x", i)

    def report():
        os.write(1, f"{{berrymq.get_bus().losses.snapshot()}}\\n".encode())

    atexit.register(report)
""")


def test_what_a_blocked_pool_cannot_run_by_the_end_of_the_exit_wait_is_counted_and_logged(
        ) -> None:
    """Receivers that never return keep the pool from running the rest: the process exits
    once the wait at exit (0.5 s here) is over, the messages no worker took are counted in
    ``bus.losses`` and one error line names their count."""
    child, elapsed = run(BLOCKED_THEN_EXIT)
    assert child.returncode == 0, child.stderr
    reason = "dropped: the process exited before a worker ran it"
    assert child.stdout.strip() == repr({reason: N - 2}), child.stdout
    lines = child.stderr.splitlines()
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith("ERROR berrymq bus default: the process exited with "
                               f"{N - 2} message(s) in its worker pool"), child.stderr
    assert "within 0.5s (2 worker(s) still running a receiver)" in lines[0]
    assert elapsed < WAIT


#: Receivers on the pool that pass each message on to another node, over a connection
#: opened before the pool (its transport's atexit flush is registered first).
RELAY_THEN_EXIT = textwrap.dedent(f"""
    import sys, time
    import berrymq

    berrymq.connect_oneway(f"tcp://127.0.0.1:{{sys.argv[1]}}")
    berrymq.set_multiplicity(2)

    @berrymq.following_function("w:*")
    def relay(message):
        time.sleep(0.001)
        berrymq.send_message("got:x", message[1][0])

    for i in range({N}):
        berrymq.twitter("w:x", i)
""")


def test_what_pool_receivers_send_to_a_peer_while_the_process_exits_reaches_it() -> None:
    """The pool is finished before the transports' exit flush, which then sends what its
    receivers passed on: the other node gets every message."""
    bus, port = serve(make_bus, "tcp")
    try:
        got: list[int] = []
        bus.subscribe("got:*", lambda message: got.append(message[1][0]), weak=False)
        # (the connection's socket is left to the exit, unclosed: a ResourceWarning of
        # its own, whether or not a pool ran)
        env = clean_env(PYTHONWARNINGS="error,ignore::ResourceWarning")
        child = subprocess.run([sys.executable, "-c", RELAY_THEN_EXIT, str(port)],
                               capture_output=True, text=True, timeout=60, env=env)
        assert child.returncode == 0, child.stderr
        assert wait_for(lambda: len(got) >= N), len(got)
        assert sorted(got) == list(range(N))
        assert child.stderr == ""
    finally:
        bus.close()



#: A pool made after the exit hook: by a non-daemon thread still running when the main
#: thread has ended, and by an atexit handler.
POOL_AFTER_THE_HOOK = textwrap.dedent("""
    import atexit, os, threading, time
    import berrymq

    ran = {"thread": 0, "atexit": 0}

    def producer():
        main = threading.main_thread()
        main.join()  # the main thread has ended: the exit hook runs or has run
        while not berrymq._pool_exit._finished:
            time.sleep(0.001)
        bus = berrymq.Bus(multiplicity=2, name="late")
        bus.subscribe("job:x", lambda m: ran.__setitem__("thread", ran["thread"] + 1), weak=False)
        for i in range(100):
            bus.twitter("job:x", i)
        os.write(1, f"thread: {ran['thread']} {bus.losses.snapshot()}\\n".encode())

    def at_exit():
        bus = berrymq.Bus(multiplicity=4, name="atexit")
        bus.subscribe("job:x", lambda m: ran.__setitem__("atexit", ran["atexit"] + 1), weak=False)
        for i in range(50):
            bus.twitter("job:x", i)
        os.write(1, f"atexit: {ran['atexit']} {bus.losses.snapshot()}\\n".encode())

    atexit.register(at_exit)
    threading.Thread(target=producer).start()
""")


def test_a_pool_made_after_the_exit_hook_leaves_its_senders_to_run_their_receivers() -> None:
    """Nothing would finish such a pool: its daemon workers died with the interpreter
    and what was queued with them, ran 0 of 100 and 0 of 50, counted nowhere."""
    child, _ = run(POOL_AFTER_THE_HOOK)
    assert child.returncode == 0, child.stderr
    assert sorted(child.stdout.splitlines()) == ["atexit: 50 {}", "thread: 100 {}"], child.stdout

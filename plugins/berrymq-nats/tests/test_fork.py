"""A process forked from one whose NATS bridge runs: the bridge is its parent's, so a
message sent there is refused at once with the reason (counted and logged as not
forwarded), an ``ask`` answers at once, and closing the connection there returns at once
and logs nothing. Before, the message was dropped with no count, the ``ask`` waited out
its timeout and the close logged two errors. The fork is made in a child Python, as
pytest's own process is multi-threaded (Python 3.12+ warns of such a fork)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from berrymq_nats.testing import NatsServer
from helpers import clean_env

pytestmark = pytest.mark.broker

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import berrymq

    def timed(call):
        started = time.monotonic()
        try:
            outcome = repr(call())
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        return [outcome, time.monotonic() - started]

    berrymq.connect_broker(sys.argv[1])
    seen = berrymq.Queue("job:*")
    berrymq.twitter("job:before", 1)
    assert str(seen.get(timeout=10).identifier) == "job:before"
    pid = os.fork()
    if pid == 0:
        try:
            report = {
                "twitter": timed(lambda: berrymq.twitter("job:child", 2)),
                "losses": dict(berrymq.get_bus().losses.counts),
                "ask": timed(lambda: berrymq.ask("job:question", timeout=5)),
                "close": timed(berrymq.close_connection),
                "parent": os.getppid(),
            }
            print(json.dumps(report), flush=True)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    berrymq.twitter("job:after", 3)
    berrymq.flush()
    berrymq.close_connection()
""")


def test_a_forked_process_is_refused_the_parents_bridge_at_once(
        tmp_path: Path, nats_server: NatsServer) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, nats_server.url],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env=clean_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    reason = (f"this process was forked from process {report['parent']} after berryMQ's "
              "network had started there")
    assert report["twitter"][0] == "None"
    assert report["losses"] == {"not forwarded: ConnectionClosed": 1}, report
    assert "could not forward job:child through <NatsLink" in result.stderr
    assert reason in result.stderr
    replies, took = report["ask"]
    assert replies.startswith("[ReplyError(") and took < 1.0, report
    assert report["close"][0] == "None" and report["close"][1] < 1.0, report
    assert "did not shut down cleanly" not in result.stderr  # nothing of it to shut down here

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
from pathlib import Path

import pytest
from berrymq_nats.testing import NatsServer
from helpers import clean_env, forking_script

pytestmark = pytest.mark.broker

SCRIPT = forking_script("berrymq.connect_broker(sys.argv[1])")

#: "At once", for the forked child's calls: half the 5 s timeout of its ask (which waited
#: it out before), with room for a loaded machine to run a fresh child (it was 1 s)
AT_ONCE = 2.5


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
    assert replies.startswith("[ReplyError(") and took < AT_ONCE, report
    assert report["close"][0] == "None" and report["close"][1] < AT_ONCE, report
    assert report["serve"][0].startswith(f"InheritedLoopError: {reason}"), report
    assert "did not shut down cleanly" not in result.stderr  # nothing of it to shut down here

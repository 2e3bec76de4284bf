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
from typing import Any

import pytest
from berrymq_nats.testing import NatsServer
from helpers import TIMED_CALLS, clean_env, forking_script

pytestmark = pytest.mark.broker

SCRIPT = forking_script("berrymq.connect_broker(sys.argv[1])")

#: "At once", for the forked child's calls: half the 5 s timeout of its ask (which waited
#: it out before), with room for a loaded machine to run a fresh child (it was 1 s)
AT_ONCE = 2.5


def _forked_report(tmp_path: Path, script: str, *args: str
                   ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    """Run ``script`` (which forks and prints its child's report as JSON) in a child
    Python: its run, the report, and the reason a forked process is refused the network."""
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    reason = (f"this process was forked from process {report['parent']} after berryMQ's "
              "network had started there")
    return result, report, reason


def test_a_forked_process_is_refused_the_parents_bridge_at_once(
        tmp_path: Path, nats_server: NatsServer) -> None:
    result, report, reason = _forked_report(tmp_path, SCRIPT, nats_server.url)
    assert report["twitter"][0] == "None"
    assert report["losses"] == {"not forwarded: ConnectionClosed": 1}, report
    assert "could not forward job:child through <NatsLink" in result.stderr
    assert reason in result.stderr
    replies, took = report["ask"]
    assert replies.startswith("[ReplyError(") and took < AT_ONCE, report
    assert report["close"][0] == "None" and report["close"][1] < AT_ONCE, report
    assert report["serve"][0].startswith(f"InheritedLoopError: {reason}"), report
    assert "did not shut down cleanly" not in result.stderr  # nothing of it to shut down here


#: The parent joins NATS (``bridge``) or only serves TCP (``tcp``: its I/O loop runs, with
#: no bridge), then forks; the child prints what each call did there, as JSON.
CONNECT_IN_CHILD = textwrap.dedent("""
    import json, os, sys, time
    import berrymq

    URL, PARENT_HAS = sys.argv[1], sys.argv[2]
    TIMED_CALLS

    if PARENT_HAS == "bridge":
        berrymq.connect_broker(URL)
    else:
        berrymq.init_connection("tcp://127.0.0.1:0")
    assert berrymq.flush(10)
    pid = os.fork()
    if pid == 0:
        try:
            bus = berrymq.get_bus()
            report = {
                "ask": timed(lambda: berrymq.ask("job:question", timeout=5)),
                "connect": timed(lambda: berrymq.connect_broker(URL)),
                "close": timed(berrymq.close_connection),
                "again": timed(lambda: berrymq.connect_broker(URL)),
                "forwarders": repr(bus.node.forwarders),
                "parent": os.getppid(),
            }
            print(json.dumps(report), flush=True)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    berrymq.close_connection()
""").replace("TIMED_CALLS", TIMED_CALLS)


@pytest.mark.parametrize("parent_has", ["bridge", "tcp"])
def test_connect_broker_in_a_forked_process_raises_and_ask_names_the_fork(
        tmp_path: Path, nats_server: NatsServer, parent_has: str) -> None:
    """connect_broker returned the parent's bridge (``closed`` False, ``connected``), which
    sent nothing; an ask's entry said "not connected (connected)". With no bridge in the
    parent, a bridge was half made: InheritedLoopError, but its link stayed the bus's
    forwarder, and the messages sent to it went nowhere, counted nowhere."""
    _, report, reason = _forked_report(tmp_path, CONNECT_IN_CHILD, nats_server.url, parent_has)
    for call in ("connect", "again"):
        outcome, took = report[call]
        assert outcome.startswith(f"InheritedLoopError: {reason}") and took < AT_ONCE, report
    assert report["close"][1] < AT_ONCE, report
    assert report["forwarders"] == "()", report
    replies, took = report["ask"]
    if parent_has == "bridge":
        assert replies.startswith("[ReplyError(") and took < AT_ONCE, report
        assert f"is not connected ({reason}" in replies, report
    else:
        assert replies == "[]", report

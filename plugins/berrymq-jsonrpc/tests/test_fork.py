"""A process forked from a node whose network runs (``multiprocessing``'s ``fork`` start
method, a pre-forking server): its connections are its parent's, so the network refuses it
at once with the reason, and the parent's peers never see a byte from it.

Before, the child's ``twitter`` to a peer stayed unsent with no word until it closed, its
``ask`` waited out its timeout, ``close_connection`` took 22 s and ``init_connection``
failed after 10 s with a bare ``TimeoutError``. The fork is made in a child Python, as
pytest's own process is multi-threaded (Python 3.12+ warns of such a fork)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from berrymq_cli_procs import Proc
from helpers import clean_env, forking_script

SCRIPT = forking_script("berrymq.interconnect(sys.argv[1], ttl=60)")

REASON = ("this process was forked from process {} after berryMQ's network had started "
          "there: its connections are the parent's and cannot be used here; start the "
          "network in each process after it is forked, or use multiprocessing's 'spawn' or "
          "'forkserver' start method")

#: "At once", for the forked child's calls: half the 5 s timeout of its ask (which waited
#: it out before; close_connection took 22 s, init_connection 10 s), with room for a
#: loaded machine to run a fresh child (it was 1 s)
AT_ONCE = 2.5


def test_a_forked_node_is_refused_the_network_at_once_and_its_parent_goes_on(
        tmp_path: Path, procs: list[Proc]) -> None:
    peer = Proc("serve", "--tcp", "127.0.0.1:0", "--print", "job:*", cwd=tmp_path)
    procs.append(peer)
    url = peer.line().removeprefix("serving ")
    result = subprocess.run([sys.executable, "-c", SCRIPT, url], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    reason = REASON.format(report["parent"])
    assert report["twitter"][0] == "None"  # not forwarded: counted and logged, as any peer's
    assert report["losses"] == {"not forwarded: ConnectionClosed": 1}, report
    assert f"could not forward job:child through <Link tcp:interconnect -> {url}>" in result.stderr
    assert reason in result.stderr
    replies, took = report["ask"]
    assert replies.startswith("[ReplyError(") and reason in replies and took < AT_ONCE, report
    assert report["close"][0] == "None" and report["close"][1] < AT_ONCE, report
    assert report["serve"][0] == f"InheritedLoopError: {reason}", report
    assert report["serve"][1] < AT_ONCE, report
    assert peer.stop() == 0
    printed = [line.split()[0] for line in peer.rest_of("out")]
    assert printed == ["job:before", "job:after"], printed  # nothing from the child

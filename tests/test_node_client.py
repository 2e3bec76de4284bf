"""The Node.js package (examples/clients/node): its own ``node --test`` suite, which starts
real Python nodes with this interpreter (``BERRYMQ_PYTHON``), and a check from the Python
side that an in-process node and the package's CLI exchange messages and asks both ways.

Skipped where ``node`` is absent, except under ``BERRYMQ_REQUIRE_BROKERS=1`` (CI), where
that is a failure. The package's own npm checks need ``npm`` on the same terms.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Lines

import berrymq
from berrymq import Bus, Message

NODE = shutil.which("node")
REQUIRED = os.environ.get("BERRYMQ_REQUIRE_BROKERS") == "1"
pytestmark = pytest.mark.skipif(
    NODE is None and not REQUIRED,
    reason="node (Node.js) is not on PATH; set BERRYMQ_REQUIRE_BROKERS=1 to fail instead")

PACKAGE = Path(__file__).resolve().parent.parent / "examples" / "clients" / "node"
CLI = PACKAGE / "cli.js"
DEADLINE = 30.0
SUITE_DEADLINE = 280.0  # the whole node --test run (about 20 s on a quiet 2-core machine)


def node() -> str:
    if NODE is None:
        pytest.fail("node (Node.js) is not on PATH and BERRYMQ_REQUIRE_BROKERS=1 requires it")
    return NODE


@pytest.mark.slow
@pytest.mark.timeout(SUITE_DEADLINE + 20)
def test_node_package_suite(tmp_path: Path) -> None:
    """``node --test`` in the package: each style over TCP and HTTP, ask, the CLI and its
    exit codes, error paths and the npm packaging, against real Python nodes."""
    env = dict(os.environ, BERRYMQ_PYTHON=sys.executable, NO_COLOR="1")
    env.pop("NODE_OPTIONS", None)
    try:
        result = subprocess.run([node(), "--test", "--test-reporter=tap"], cwd=PACKAGE, env=env,
                                text=True, encoding="utf-8", capture_output=True,
                                timeout=SUITE_DEADLINE)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"node --test still running after {SUITE_DEADLINE} s:\n"
                             f"{exc.stdout!s}") from None
    summary = dict(re.findall(r"^# (tests|pass|fail|skipped|cancelled) (\d+)$", result.stdout,
                              re.MULTILINE))
    failed = [line for line in result.stdout.splitlines() if line.lstrip().startswith("not ok")]
    assert result.returncode == 0, "\n".join(failed) + "\n" + result.stdout[-6000:] + result.stderr
    assert summary.get("fail") == "0" and summary.get("cancelled", "0") == "0", summary
    assert int(summary.get("pass", "0")) >= 35, summary
    if REQUIRED:
        assert summary.get("skipped", "0") == "0", f"skipped under BERRYMQ_REQUIRE_BROKERS=1: {summary}"


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_interconnect_with_an_in_process_node(tmp_path: Path, berrymq_bus: Bus,
                                              scheme: str) -> None:
    """The Python side receives what the CLI sends, twitters and asks; the CLI receives and
    answers (over HTTP it runs its own server, which this node calls back)."""
    from_node: queue.SimpleQueue[Message] = queue.SimpleQueue()
    berrymq.regist_function("node:joined", from_node.put, weak=False)
    url = str(berrymq.init_connection(f"{scheme}://127.0.0.1:0"))
    client = Lines([node(), str(CLI), "interconnect", url, "--count", "1"], tmp_path, deadline=DEADLINE)
    try:
        assert client.line() == "interconnected"
        joined = from_node.get(timeout=DEADLINE)
        assert (joined.id, joined.args) == ("node:joined", ("interconnect",))
        assert berrymq.ask("node:question", 1, timeout=DEADLINE) == ["node saw node:question"]
        berrymq.twitter("news:local", {"n": [1, 2]}, flag=True)
        assert client.line() == 'news:local [{"n":[1,2]}] {"flag":true}'
        assert client.process.wait(timeout=DEADLINE) == 0
    finally:
        client.close()

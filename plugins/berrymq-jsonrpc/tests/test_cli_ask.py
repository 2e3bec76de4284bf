"""``berrymq ask``: a node's receivers asked from the shell, their replies printed as one
JSON array (berrymq-js had ``ask``; the Python command, which the Node.js docs said had the
same verbs, had no way to ask)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from berrymq_cli_procs import DEADLINE, GONE, TOKEN, one_error_line, scripted_node
from helpers import clean_env, plugin_site, serve, wait_for
from helpers import run_berrymq as run

from berrymq.bus import Bus
from berrymq.message import Message


def _answering(bus_factory: Callable[..., Bus], scheme: str) -> str:
    """A node with a receiver that answers ten times its argument and one that fails; its
    URL."""
    bus, port = serve(bus_factory, scheme)
    bus.subscribe("price:quote", lambda message: message.args[0] * 10, weak=False)

    def fail(message: Message) -> None:
        raise ValueError("refused on purpose")

    bus.subscribe("fail:now", fail, weak=False)
    return f"{scheme}://127.0.0.1:{port}"


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_ask_prints_the_replies_as_one_json_array(
        tmp_path: Path, bus_factory: Callable[..., Bus], scheme: str) -> None:
    url = _answering(bus_factory, scheme)
    result = run("ask", url, "price:quote", "2", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "[20]\n", "")
    result = run("ask", url, "nobody:here", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr


def test_a_reply_with_a_lone_surrogate_is_printed_as_its_json_escape(
        tmp_path: Path, bus_factory: Callable[..., Bus]) -> None:
    url = _answering(bus_factory, "tcp")
    result = run("ask", url, "price:quote", '"\\ud800"', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == '["' + "\\ud800" * 10 + '"]\n'
    assert json.loads(result.stdout) == ["\ud800" * 10]


def test_replies_stay_json_under_an_encoding_that_is_not_utf_8(
        tmp_path: Path, bus_factory: Callable[..., Bus]) -> None:
    """Under ``PYTHONIOENCODING=ascii`` a character the encoding lacks is JSON's escape of
    it (a backslash escape such as ``\\xe9`` would be no JSON)."""
    url = _answering(bus_factory, "tcp")
    text = "caf\u00e9 \u2603 \U0001f600"
    result = run("ask", url, "price:quote", json.dumps(text), cwd=tmp_path,
                 env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.isascii()
    assert json.loads(result.stdout) == [text * 10]


def test_a_receiver_that_failed_is_a_reply_and_json_names_the_node(
        tmp_path: Path, bus_factory: Callable[..., Bus]) -> None:
    url = _answering(bus_factory, "tcp")
    result = run("ask", "--json", url, "fail:now", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["url"] == url
    (reply,) = answer["replies"]
    assert (reply["error"]["type"], reply["error"]["message"]) == ("ValueError",
                                                                   "refused on purpose")
    assert reply["error"]["receiver"].endswith("fail")


def test_a_receiver_still_running_at_the_timeout_is_an_error_entry(
        tmp_path: Path, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, "tcp")
    release = threading.Event()
    bus.subscribe("slow:x", lambda message: release.wait(30), weak=False)
    try:
        result = run("ask", f"tcp://127.0.0.1:{port}", "slow:x", "--timeout", "0.5",
                     cwd=tmp_path)
    finally:
        release.set()
    assert result.returncode == 0, result.stderr
    (reply,) = json.loads(result.stdout)
    assert reply["error"]["type"] == "TimeoutError", reply


def test_ask_usage_errors_and_an_unreachable_node(tmp_path: Path) -> None:
    result = run("ask", "tcp://127.0.0.1:1", cwd=tmp_path)  # the usage, then the error
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == "berrymq: error: ask needs an ID (and its ARGs)"
    assert "partial wildcard" in one_error_line(run("ask", "tcp://127.0.0.1:1", "te*:x",
                                                    cwd=tmp_path))
    line = one_error_line(run("ask", "tcp://127.0.0.1:1", "a:b", "--connect-timeout", "2",
                              cwd=tmp_path), 1)
    assert "cannot reach tcp://127.0.0.1:1" in line


#: A plugin that gives every bus of the asking process a receiver of price:quote.
_LOCAL_ANSWER = """
from berrymq.hookspecs import hookimpl

@hookimpl
def berrymq_start_bus(bus):
    bus.subscribe("price:quote", lambda message: "from the asking process", weak=False)
"""


def test_ask_asks_the_node_alone(tmp_path: Path, bus_factory: Callable[..., Bus]) -> None:
    """It asked the command's whole bus: a receiver there (a plugin's), or another link
    of it (a broker's), answered beside the node."""
    url = _answering(bus_factory, "tcp")
    result = run("ask", url, "price:quote", "2", cwd=tmp_path,
                 env=plugin_site(tmp_path, "local_answer", _LOCAL_ANSWER))
    assert (result.returncode, result.stdout) == (0, "[20]\n"), result.stderr


def test_a_node_that_goes_away_during_the_ask_is_a_failure(tmp_path: Path) -> None:
    """A node killed while its receivers ran was printed as a reply entry
    (ConnectionClosed) with exit status 0: ``berrymq ask ... || alert`` took it for an
    answer."""
    url = scripted_node(lambda request: GONE if request["method"] == "ask" else TOKEN)
    line = one_error_line(run("ask", url, "price:quote", "2", cwd=tmp_path), 1)
    assert "closed" in line, line


def test_ask_stopped_by_a_signal_says_so_and_ends_its_session(
        tmp_path: Path, bus_factory: Callable[..., Bus]) -> None:
    """Ctrl-C while the node's receivers ran: exit 130 without a word, and the session
    stayed on the node for its ttl."""
    bus, port = serve(bus_factory, "tcp")
    sessions = bus.transport("tcp").service.sessions  # type: ignore[attr-defined]
    running, release = threading.Event(), threading.Event()

    def slow(message: Message) -> None:
        running.set()
        release.wait(30)

    bus.subscribe("slow:x", slow, weak=False)
    url = f"tcp://127.0.0.1:{port}"
    try:
        with subprocess.Popen([sys.executable, "-m", "berrymq", "ask", url, "slow:x",
                               "--timeout", "20"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=clean_env()) as child:
            assert running.wait(DEADLINE)
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=DEADLINE)
    finally:
        release.set()
    assert (child.returncode, out, err) == (
        128 + signal.SIGINT, "", f"berrymq: stopped by SIGINT before {url} answered\n")
    wait_for(lambda: not sessions, DEADLINE, "the ask's session ended on the node")

"""The node commands against nodes set up as operators set them up (an outside probe's
findings): a low ``max_ttl``, a mistaken address or option, a ``--monitor`` address.

Real processes: ``berrymq serve`` nodes and the commands run against them.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from berrymq_cli_procs import DEADLINE, Proc, listen, one_error_line
from helpers import run_berrymq as run
from helpers import send_body

from berrymq.bus import Bus
from berrymq.errors import TransportError
from berrymq.testing import free_port

#: The settings of a node whose sessions may live at most 100 s, on both transports.
CAPPED_TTL = """\
[berrymq.jsonrpc-tcp]
max_ttl = 100

[berrymq.jsonrpc-http]
max_ttl = 100
"""


@pytest.fixture
def capped_node(tmp_path: Path, procs: list[Proc]) -> dict[str, str]:
    """A ``berrymq serve`` with ``max_ttl = 100`` (its own directory, its own settings
    file): {"tcp": URL, "http": URL}."""
    home = tmp_path / "capped"
    home.mkdir()
    (home / "berrymq.toml").write_text(CAPPED_TTL)
    proc = Proc("serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", cwd=home)
    procs.append(proc)
    urls = [proc.line().removeprefix("serving ") for _ in range(2)]
    return {url.partition("://")[0]: url for url in urls}


# -- a node whose max_ttl is below the ttl a command asks for ---------------------------------


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_send_and_listen_work_with_a_node_whose_max_ttl_is_low(
        tmp_path: Path, procs: list[Proc], capped_node: dict[str, str], scheme: str) -> None:
    url = capped_node[scheme]
    first = listen(tmp_path, procs, url, "job:*", "--count", "1")
    second = listen(tmp_path, procs, url, "job:*", "--count", "2")
    # one message, with a --timeout (and so a ttl) above the node's max_ttl
    result = run("send", "--timeout", "200", url, "job:one", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run("send", url, "-", input="job:two 2\n", cwd=tmp_path)  # stdin: ttl 1000
    assert result.returncode == 0, result.stderr
    assert first.process.wait(timeout=DEADLINE) == 0
    assert first.rest_of("out") == ["job:one []"]
    assert second.process.wait(timeout=DEADLINE) == 0
    assert second.rest_of("out") == ["job:one []", "job:two [2]"]


# -- status, and --timeout values that bound nothing -------------------------------------------


def test_status_of_a_tcp_port_says_so_and_names_the_nodes_http_address(
        tmp_path: Path, node: tuple[Proc, str, str]) -> None:
    """Given as http:// (exit 1: read and failed) or as tcp:// (exit 2: a usage error),
    the node's TCP port is named as such, with the http:// address the node says it serves
    (asked with the method ``network``)."""
    _, tcp, http_url = node
    line = one_error_line(run("status", tcp.replace("tcp://", "http://"), cwd=tmp_path), 1)
    assert "that port speaks TCP, not HTTP" in line, line
    assert line.endswith(f"at {http_url}, which that node serves"), line
    line = one_error_line(run("status", tcp, cwd=tmp_path), 2)
    assert line.endswith(f"give the node's http:// address ({http_url}, which that node "
                         "serves)"), line


def test_status_of_a_node_serving_tcp_alone_says_how_to_serve_http(
        tmp_path: Path, procs: list[Proc]) -> None:
    proc = Proc("serve", "--tcp", "127.0.0.1:0", cwd=tmp_path)
    procs.append(proc)
    tcp = proc.line().removeprefix("serving ")
    line = one_error_line(run("status", tcp, cwd=tmp_path), 2)
    assert line.endswith("(the node's --http port or its --monitor address)"), line
    closed = f"tcp://127.0.0.1:{free_port()}"  # nothing listens: the same advice, at once
    line = one_error_line(run("status", closed, cwd=tmp_path), 2)
    assert line.endswith("(the node's --http port or its --monitor address)"), line


class _NotANode(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the body the test's server carries."""

    def do_GET(self) -> None:
        send_body(self, self.server.body)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


def test_status_of_a_server_that_is_no_node_says_so(tmp_path: Path) -> None:
    """JSON nested past what Python decodes ended in a RecursionError, reported as a
    plugin's failure."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotANode)
    server.body = b"[" * 100_000 + b"]" * 100_000  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run("status", f"http://127.0.0.1:{server.server_port}", cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    line = one_error_line(result, 1)
    assert "RecursionError" not in line and "(plugin " not in line, line
    assert "did not answer with JSON" in line, line


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("command", [
    ("status", "http://127.0.0.1:1"), ("graph", "http://127.0.0.1:1"),
    ("send", "tcp://127.0.0.1:1", "job:x"), ("listen", "tcp://127.0.0.1:1", "job:*")])
def test_a_timeout_that_bounds_no_wait_is_a_usage_error(
        tmp_path: Path, command: tuple[str, ...], value: str) -> None:
    result = run(*command, "--timeout", value, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "expected a number of seconds above 0" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [
    ("status", "http://127.0.0.1:1"), ("graph", "http://127.0.0.1:1"),
    ("send", "tcp://127.0.0.1:1", "job:x")])
def test_a_timeout_longer_than_any_wait_is_a_usage_error(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    """1e10 seconds passed the check and ended in a traceback (OverflowError)."""
    result = run(*command, "--timeout", "1e10", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "expected at most 4611686018 seconds" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# -- a wrong secret ---------------------------------------------------------------------------


def test_a_wrong_secret_is_called_wrong_and_a_missing_one_missing(
        tmp_path: Path, procs: list[Proc]) -> None:
    server = Proc("serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", cwd=tmp_path,
                  env={"BERRYMQ_SECRET": "correct horse"})
    procs.append(server)
    tcp, http = (server.line().removeprefix("serving ") for _ in range(2))
    commands = [("send", tcp, "job:x"), ("listen", http, "job:*", "--no-reconnect"),
                ("graph", tcp), ("status", http)]
    for command in commands:
        line = one_error_line(run(*command, cwd=tmp_path, env={"BERRYMQ_SECRET": "wrong"}), 1)
        assert "the secret given was refused (a wrong secret" in line, line
        assert "set BERRYMQ_SECRET" not in line, line
        line = one_error_line(run(*command, cwd=tmp_path), 1)
        assert "no secret was given" in line and "BERRYMQ_SECRET" in line, line
    line = one_error_line(run("status", http, "--secret", "wrong", cwd=tmp_path), 1)
    assert "the secret given was refused" in line, line


# -- serve --monitor ----------------------------------------------------------------------------


def test_graph_of_a_monitor_address(tmp_path: Path, procs: list[Proc]) -> None:
    server = Proc("serve", "--tcp", "127.0.0.1:0", "--monitor", "127.0.0.1:0", cwd=tmp_path)
    procs.append(server)
    tcp = server.line().removeprefix("serving ")
    monitor = server.line().removeprefix("monitor ")
    assert monitor.startswith("http://127.0.0.1:"), monitor
    result = run("graph", monitor, "--json", cwd=tmp_path)  # no JSON-RPC there: GET /network
    assert result.returncode == 0, result.stderr
    transports = json.loads(result.stdout)["transports"]
    assert any(tcp in t["status"] for t in transports), transports


def test_serve_json_names_the_monitor_address(tmp_path: Path, procs: list[Proc]) -> None:
    server = Proc("serve", "--tcp", "127.0.0.1:0", "--monitor", "127.0.0.1:0", "--json",
                  cwd=tmp_path)
    procs.append(server)
    served = json.loads(server.line())
    assert served["serving"][0].startswith("tcp://127.0.0.1:"), served
    assert served["monitor"].startswith("http://127.0.0.1:"), served
    result = run("status", served["monitor"], "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert server.stop() == 0
    assert server.rest_of("out") == []  # stdout: the one JSON object


@pytest.mark.parametrize("bad", [
    ("--http", "http://127.0.0.1:99999"),
    ("--http", "http://127.0.0.1:0/status"),
    ("--http", "192.0.2.1:0"),  # not loopback, and no secret
    ("--http", "a/b:0"),  # no host (its ValueError was a traceback)
    ("--http", "u@127.0.0.1:0"),
    ("--monitor", "127.0.0.1:99999"),
    ("--monitor", "http://127.0.0.1:99999"),
    ("--monitor", "192.0.2.1:0"),
])
def test_serve_checks_every_address_before_it_binds_any(
        tmp_path: Path, bad: tuple[str, str]) -> None:
    for first in (("--tcp", "127.0.0.1:0"), ("--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0")):
        if bad[0] in first:
            continue
        result = run("serve", *first, *bad, cwd=tmp_path, timeout=DEADLINE)
        one_error_line(result, 2)
        assert result.stdout == "", result.stdout  # nothing was served


@pytest.mark.parametrize("options", [
    ("--tcp", "{port}", "--tcp", "127.0.0.1:{port}"),
    ("--tcp", "{port}", "--http", "127.0.0.1:{port}"),
    ("--http", "localhost:{port}", "--tcp", ":{port}"),
    ("--tcp", "{port}", "--monitor", "{port}"),
    ("--tcp", "localhost:{port}", "--monitor", "127.0.0.1:{port}"),
])
def test_serve_refuses_two_options_naming_one_address_before_it_binds_any(
        tmp_path: Path, options: tuple[str, ...]) -> None:
    """The first was served, then the second failed to bind (exit 1)."""
    port = free_port()
    args = [option.format(port=port) for option in options]
    result = run("serve", *args, cwd=tmp_path, timeout=DEADLINE)
    line = one_error_line(result, 2)
    assert line.endswith(f"are the same address 127.0.0.1:{port}: serve binds each address "
                         "once"), line
    assert result.stdout == "", result.stdout  # nothing was served


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_serving_a_host_name_that_names_no_address_says_so(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    """It said the address was not loopback and needed a shared secret: the user was sent
    to set one, for a name that resolves to nothing (``host`` mistyped)."""
    bus = bus_factory()
    with pytest.raises(TransportError, match=r"the host name 'nosuchhost.invalid' names no "
                                             r"address \("):
        bus.transport(scheme).listen(f"{scheme}://nosuchhost.invalid:0")

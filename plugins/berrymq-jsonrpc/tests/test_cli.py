"""SPEC 9 / issue 3 point 6: ``berrymq serve``, ``send`` and ``listen`` as real processes.

A node runs in one subprocess (``serve``), a listener in another (``listen``), and each
message comes from a third (``send``); output is read line by line with deadlines.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from berrymq_cli_procs import DEADLINE, Proc, listen, one_error_line
from berrymq_jsonrpc.cli import server_url
from berrymq_jsonrpc.cli_send import message_from_json
from berrymq_jsonrpc.cli_support import format_message, parse_value
from berrymq_jsonrpc.serve_stop import SAME_STOP_WINDOW
from helpers import clean_env, plugin_site
from helpers import run_berrymq as run

from berrymq.message import Message
from berrymq.testing import free_port

# -- the three commands together --------------------------------------------------------------


def test_serve_listen_send_over_tcp_and_http(tmp_path: Path, procs: list[Proc],
                                             node: tuple[Proc, str, str]) -> None:
    server, tcp, http = node
    listener = listen(tmp_path, procs, tcp, "job:*")

    result = run("send", tcp, "job:done", "42", "hello", "[1,2]", '"7"', "--kw", "user=bob",
                 "--kw", "n=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert listener.line() == 'job:done [42, "hello", [1, 2], "7"] {"user": "bob", "n": 3}'

    result = run("send", http, "job:start", cwd=tmp_path)  # over HTTP to the same node
    assert result.returncode == 0, result.stderr
    assert listener.line() == "job:start []"

    assert run("send", tcp, "other:thing", "x", cwd=tmp_path).returncode == 0
    assert run("send", tcp, "*:stop", cwd=tmp_path).returncode == 0  # a wildcard name matches
    assert listener.line() == "*:stop []"  # other:thing did not match job:*

    assert listener.stop(signal.SIGINT) == 0
    assert listener.rest_of("out") == []
    assert server.stop(signal.SIGINT) == 0
    assert server.rest_of("err")[-1] == "stopped"


def test_listen_json_and_namespaces(tmp_path: Path, procs: list[Proc],
                                    node: tuple[Proc, str, str]) -> None:
    _, tcp, http = node
    listener = listen(tmp_path, procs, http, "job@ops:*", "--json")
    assert run("send", tcp, "job:run", "ignored", cwd=tmp_path).returncode == 0  # default ns
    assert run("send", tcp, "job@ops:run", "né", "--kw", "x=null", cwd=tmp_path).returncode == 0
    record = json.loads(listener.line())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.pop("time"))
    assert record == {"identifier": "job@ops:run", "args": ["né"], "kwargs": {"x": None}}
    assert listener.stop(signal.SIGTERM) == 0


def test_two_listeners_each_get_every_message(tmp_path: Path, procs: list[Proc],
                                              node: tuple[Proc, str, str]) -> None:
    _, tcp, _ = node
    first = listen(tmp_path, procs, tcp, "tick")
    second = listen(tmp_path, procs, tcp, "*:*")
    for i in range(3):
        assert run("send", tcp, "tick:now", str(i), cwd=tmp_path).returncode == 0
    assert [first.line() for _ in range(3)] == [f"tick:now [{i}]" for i in range(3)]
    assert [second.line() for _ in range(3)] == [f"tick:now [{i}]" for i in range(3)]


def test_serve_prints_messages_it_sees(tmp_path: Path, procs: list[Proc]) -> None:
    server = Proc("serve", "--tcp", "0", "--print", "log:*", cwd=tmp_path)
    procs.append(server)
    url = server.line().removeprefix("serving ")
    assert run("send", url, "log:info", "started", cwd=tmp_path).returncode == 0
    assert server.line() == 'log:info ["started"]'
    assert server.stop(signal.SIGTERM) == 0


def test_a_lone_surrogate_is_printed_escaped_and_the_printing_goes_on(
        tmp_path: Path, procs: list[Proc]) -> None:
    """JSON carries a lone surrogate (``"\\ud800"``) and the node takes it; written to a
    strict UTF-8 stdout it failed the write: ``serve --print`` lost its printer for good
    (later messages acknowledged, never printed) and every ``listen`` of it ended. Now it
    is its JSON escape, and the next message is printed too."""
    server = Proc("serve", "--tcp", "0", "--print", "job:*", cwd=tmp_path)
    procs.append(server)
    url = server.line().removeprefix("serving ")
    listening = [listen(tmp_path, procs, url, "job:*", *more) for more in ((), ("--json",))]
    for args in (('"\\ud800"',), ("2",)):
        assert run("send", url, "job:x", *args, cwd=tmp_path).returncode == 0
    assert [server.line() for _ in range(2)] == ['job:x ["\\ud800"]', "job:x [2]"]
    plain, as_json = listening
    assert [plain.line() for _ in range(2)] == ['job:x ["\\ud800"]', "job:x [2]"]
    assert [json.loads(as_json.line())["args"] for _ in range(2)] == [["\ud800"], [2]]
    assert server.stop(signal.SIGTERM) == 0


@contextlib.contextmanager
def _printing_node(tmp_path: Path, pattern: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``berrymq serve --tcp 127.0.0.1:0 --print PATTERN`` with its output piped to the
    test, and its URL once it serves; killed at the end if it is still running."""
    server = subprocess.Popen([sys.executable, "-m", "berrymq", "serve", "--tcp",
                               "127.0.0.1:0", "--print", pattern], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    try:
        assert server.stdout is not None
        assert select.select([server.stdout], [], [], DEADLINE)[0], "serve printed nothing"
        yield server, server.stdout.readline().strip().removeprefix("serving ")
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_serve_print_stops_serve_when_the_reader_of_its_output_went_away(
        tmp_path: Path) -> None:
    """``serve --print P | head -2``: the printer thread died in a BrokenPipeError
    traceback, and the node went on serving, printing nothing. It stops as on SIGTERM."""
    with _printing_node(tmp_path, "h:*") as (server, url):
        assert server.stdout is not None
        server.stdout.close()  # the reader goes away
        deadline = time.monotonic() + DEADLINE
        while server.poll() is None and time.monotonic() < deadline:  # until it stops
            run("send", url, "h:x", cwd=tmp_path)  # (refused once the node stopped)
        _, err = server.communicate(timeout=DEADLINE)
    assert server.returncode == 0, err
    assert "Traceback" not in err and err.endswith("stopped\n"), err


def test_serve_print_stopped_prints_what_it_acknowledged_before_it_ends(
        tmp_path: Path) -> None:
    """A node stopped while its reader of stdout lagged behind ended at once: its printer
    thread (a daemon) still held most of the messages the node had acknowledged, and
    they were gone without a word (288 of 5,000 printed)."""
    with _printing_node(tmp_path, "job:*") as (server, url):
        # 2,000 lines of 200 bytes: more than a pipe holds, so the printer waits for the
        # reader, which reads nothing until the node was told to stop
        lines = "\n".join(f"job:n {i} {'x' * 180}" for i in range(2000)) + "\n"
        sent = subprocess.run([sys.executable, "-m", "berrymq", "send", url, "-"], input=lines,
                              text=True, capture_output=True, cwd=tmp_path, env=clean_env(),
                              timeout=DEADLINE)
        assert sent.returncode == 0, sent.stderr  # every line acknowledged by the node
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=DEADLINE)
    assert server.returncode == 0, err
    printed = [json.loads(line.split(" ", 1)[1])[0] for line in out.splitlines()]
    assert printed == list(range(2000)), err


def test_serve_print_counts_the_message_it_was_writing_when_the_output_stayed_unread(
        tmp_path: Path) -> None:
    """Its reader reads nothing until the node said what it did not print (10 s after the
    stop), and the node is gone then: the message the printer was writing, blocked,
    counts as not printed too (it was in no count: acknowledged, never printed, never
    reported)."""
    with _printing_node(tmp_path, "job:*") as (server, url):
        lines = "\n".join(f"job:n {i} {'x' * 180}" for i in range(2000)) + "\n"
        sent = subprocess.run([sys.executable, "-m", "berrymq", "send", url, "-"], input=lines,
                              text=True, capture_output=True, cwd=tmp_path, env=clean_env(),
                              timeout=DEADLINE)
        assert sent.returncode == 0, sent.stderr
        server.send_signal(signal.SIGTERM)
        assert server.stderr is not None
        said = []
        while not said or "not printed" not in said[-1]:  # stdout is left unread till then
            said.append(server.stderr.readline())
            assert said[-1], said
        server.kill()  # as it was then: what the pipe holds was printed, the rest was not
        out, err = server.communicate(timeout=DEADLINE)
    unprinted = int(said[-1].removeprefix("berrymq: ").split(" ", 1)[0])
    printed = 0
    for line in out.splitlines():
        with contextlib.suppress(ValueError):  # a line cut short at the exit
            json.loads(line.split(" ", 1)[1])
            printed += 1
    # each counted once, or the one being written, if it was whole, both printed and counted
    assert 2000 <= printed + unprinted <= 2001, (printed, unprinted, said, err)


def _pending(stream: object) -> int:
    """How many bytes wait unread in the pipe ``stream`` reads."""
    return struct.unpack("i", fcntl.ioctl(stream, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_listen_stopped_while_writing_says_the_message_it_held_was_not_printed(
        tmp_path: Path, node: tuple[Proc, str, str]) -> None:
    """Its output unread: ``listen`` holds a message it took from the node, blocked in
    writing it, when SIGTERM comes. The node counts what it still queued; that one message
    was in no count (listen ended with 0 and not a word)."""
    _, url, _ = node
    listener = subprocess.Popen([sys.executable, "-m", "berrymq", "listen", url, "job:*"],
                                cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=clean_env())
    try:
        assert listener.stderr is not None and listener.stdout is not None
        assert listener.stderr.readline().startswith("listening to job:*")
        lines = "\n".join(f"job:n {i} {'x' * 180}" for i in range(2000)) + "\n"
        sent = subprocess.run([sys.executable, "-m", "berrymq", "send", url, "-"], input=lines,
                              text=True, capture_output=True, cwd=tmp_path, env=clean_env(),
                              timeout=DEADLINE)
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + DEADLINE  # the pipe full: listen is blocked writing
        while _pending(listener.stdout) < 60_000:
            assert time.monotonic() < deadline, _pending(listener.stdout)
            time.sleep(0.01)
        listener.send_signal(signal.SIGTERM)
        said = listener.stderr.read()  # to its end: stdout stays unread until it exits
        assert listener.wait(timeout=DEADLINE) == 0, said
    finally:
        if listener.poll() is None:
            listener.kill()
        listener.communicate()
    assert ("berrymq: 1 message of job:* taken from the node was not printed: the output "
            "was not read") in said, said


@pytest.mark.parametrize("which", ["tcp", "http"])
def test_listen_no_reconnect_ends_saying_the_node_went_away(
        tmp_path: Path, procs: list[Proc], node: tuple[Proc, str, str], which: str) -> None:
    server, tcp, http = node
    url = tcp if which == "tcp" else http
    listener = listen(tmp_path, procs, url, "job:*", "--no-reconnect")
    assert server.stop(signal.SIGTERM) == 0
    code = listener.process.wait(timeout=DEADLINE)
    rest = listener.rest_of("err")
    assert code == 1, rest
    assert len(rest) == 1, rest
    assert rest[0].startswith(f"berrymq: error: the node at {url} went away"), rest
    assert "Unknown or expired token" not in rest[0]


# -- errors: one clear line, a non-zero exit ------------------------------------------------------


def test_send_to_an_unreachable_node(tmp_path: Path) -> None:
    port = free_port()
    line = one_error_line(run("send", f"tcp://127.0.0.1:{port}", "job:x", cwd=tmp_path), 1)
    assert f"cannot reach tcp://127.0.0.1:{port}" in line
    line = one_error_line(run("send", f"http://127.0.0.1:{port}", "job:x", cwd=tmp_path), 1)
    assert f"127.0.0.1:{port}" in line


def test_listen_to_an_unreachable_node(tmp_path: Path) -> None:
    port = free_port()
    line = one_error_line(run("listen", f"tcp://127.0.0.1:{port}", "job:*", cwd=tmp_path), 1)
    assert f"cannot reach tcp://127.0.0.1:{port}" in line


@pytest.mark.parametrize(("identifier", "expected"), [
    ("jo b", "invalid identifier 'jo b'"),
    ("te*:x", "invalid identifier 'te*:x'"),
    ("_secret:x", "'_secret:x' is local"),
])
def test_send_bad_identifier(tmp_path: Path, node: tuple[Proc, str, str], identifier: str,
                             expected: str) -> None:
    _, tcp, _ = node
    assert expected in one_error_line(run("send", tcp, identifier, cwd=tmp_path))


def test_listen_bad_or_local_pattern(tmp_path: Path) -> None:
    # checked on the command line: a usage error, before any connection (none runs here)
    for pattern, expected in (("a:b:c", "invalid identifier 'a:b:c'"), ("_x:*", "is local")):
        result = run("listen", "tcp://127.0.0.1:1", pattern, cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_listen_with_its_pattern_missing_says_so(tmp_path: Path) -> None:
    """The URL alone was taken for the pattern: "invalid identifier 'tcp://...': it has
    more than one ':'"."""
    result = run("listen", "tcp://127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "berrymq listen: error: argument PATTERN: 'tcp://127.0.0.1:1' is a node's address, "
        "not a pattern such as 'job:*' (listen takes the URL first, then the PATTERN)"
    ), result.stderr


@pytest.mark.parametrize(("table", "line", "expected"), [
    ("jsonrpc-tcp", "queue_size = 0", "jsonrpc-tcp.queue_size must be a positive number, got 0"),
    ("jsonrpc-tcp", "read_timeout = inf", "jsonrpc-tcp.read_timeout must be a positive number"),
    # past the platform's longest wait: an OverflowError at the first call that waited
    ("jsonrpc-tcp", "timeout = 1e10", "jsonrpc-tcp.timeout must be at most 4611686018 seconds"),
    ("jsonrpc-http", "max_get_wait = 1e10", "jsonrpc-http.max_get_wait must be at most"),
    ("jsonrpc-tcp", "outbox_wait = 1e308", "jsonrpc-tcp.outbox_wait must be at most"),
    # a message may take max_size less 512 bytes: with 512 every send was refused
    ("jsonrpc-tcp", "max_size = 512", "jsonrpc-tcp.max_size must be at least 1024 bytes (a "
     "message may take max_size less the 512 bytes of the request around it), got 512"),
    ("jsonrpc-http", "max_size = 0", "jsonrpc-http.max_size must be a positive number, got 0"),
    ("jsonrpc-tcp", f'secret = "{"s" * 257}"', "jsonrpc-tcp.secret is 257 bytes as a request "
     "writes it, over the 256 a secret may take"),
    ("jsonrpc-http", "max_connections = -5",
     "jsonrpc-http.max_connections must be a positive number, got -5"),
    ("jsonrpc-tcp", 'callback_hosts = ["10.0.0.0/99"]',
     "jsonrpc-tcp.callback_hosts holds '10.0.0.0/99', which is not a CIDR block"),
    ("jsonrpc-tcp", 'host = ""',
     "jsonrpc-tcp.host must be a host name or address, such as 127.0.0.1, got ''"),
    ("jsonrpc-http", 'host = "a/b"',
     "jsonrpc-http.host must be a host name or address, such as 127.0.0.1, got 'a/b'"),
    ("jsonrpc-http", 'names = [1, ""]',
     "jsonrpc-http.names holds 1: each entry must be a host name (a string, not empty)"),
    ("jsonrpc-tcp", 'names = ["node.example", " "]',
     "jsonrpc-tcp.names holds ' ': each entry must be a host name (a string, not empty)"),
    ("jsonrpc-tcp", 'callback_hosts = ["10.0.0.0/8", 7]',
     "jsonrpc-tcp.callback_hosts holds 7: each entry must be a host name"),
    ("jsonrpc-http", 'callback_hosts = [""]',
     "jsonrpc-http.callback_hosts holds '': each entry must be a host name"),
])
def test_a_bad_value_in_a_transport_table_names_the_file_and_line(
        tmp_path: Path, table: str, line: str, expected: str) -> None:
    settings = tmp_path / "berrymq.toml"
    settings.write_text(f"[berrymq]\n\n[berrymq.{table}]\n{line}\n")
    error = one_error_line(run("serve", "--tcp", "0", "--http", "0", cwd=tmp_path))
    assert f"{settings}:4: {expected}" in error
    # berrymq plugins, which reports which settings file applies, checks the values too
    assert f"{settings}:4: {expected}" in one_error_line(run("plugins", cwd=tmp_path))


def test_address_without_scheme(tmp_path: Path) -> None:
    line = one_error_line(run("send", "127.0.0.1:7000", "job:x", cwd=tmp_path))
    assert "has no scheme" in line


def test_an_address_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    line = one_error_line(run("send", "tcp://[::1:7000", "job:x", cwd=tmp_path))
    assert line == "berrymq: error: address 'tcp://[::1:7000' cannot be read: Invalid IPv6 URL"


def test_address_with_a_scheme_no_plugin_claims(tmp_path: Path) -> None:
    result = run("send", "nosuch://127.0.0.1:7000", "job:x", cwd=tmp_path)
    line = one_error_line(result)
    assert "no transport for nosuch://" in line and "tcp://" in line
    assert result.stdout == ""


def test_missing_plugin_is_named(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text('[berrymq]\ndisable = ["jsonrpc-tcp"]\n')
    line = one_error_line(run("send", "tcp://127.0.0.1:7000", "job:x", cwd=tmp_path))
    assert "jsonrpc-tcp" in line
    line = one_error_line(run("serve", "--tcp", "0", cwd=tmp_path))
    assert "jsonrpc-tcp" in line


def test_serve_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(run("serve", "--tcp", f"127.0.0.1:{port}", cwd=tmp_path), 1)
    assert f"cannot serve tcp://127.0.0.1:{port}" in line


def test_serve_announces_nothing_when_its_second_address_is_busy(tmp_path: Path) -> None:
    """It printed ``serving tcp://...`` for the first address, then failed on the second:
    a script reading stdout took a node that had exited for one that was up."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--tcp", "127.0.0.1:0", "--http", f"127.0.0.1:{port}",
                     cwd=tmp_path)
    assert f"cannot serve http://127.0.0.1:{port}" in one_error_line(result, 1)
    assert result.stdout == ""


def test_serve_refuses_a_public_address_without_secret(tmp_path: Path) -> None:
    line = one_error_line(run("serve", "--tcp", "0.0.0.0:0", cwd=tmp_path))
    assert "secret" in line


def test_bad_command_line_arguments(tmp_path: Path) -> None:
    result = run("send", "tcp://127.0.0.1:7000", "job:x", "--kw", "novalue", cwd=tmp_path)
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr
    result = run("serve", "--tcp", "notaport", cwd=tmp_path)
    assert "expected HOST:PORT" in one_error_line(result)
    result = run("serve", "--http", "tcp://127.0.0.1:0", cwd=tmp_path)
    assert "--http takes a http:// address" in one_error_line(result)


def test_a_node_with_a_secret(tmp_path: Path, procs: list[Proc]) -> None:
    env = dict(os.environ, BERRYMQ_SECRET="correct horse")
    server = subprocess.Popen([sys.executable, "-m", "berrymq", "serve", "--tcp", "0"],
                              cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip().removeprefix("serving ")
        line = one_error_line(run("send", url, "job:x", cwd=tmp_path), 1)  # no secret here
        assert "-32004" in line and "Unauthorised" in line and "BERRYMQ_SECRET" in line
        result = subprocess.run([sys.executable, "-m", "berrymq", "send", url, "job:x"],
                                cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=DEADLINE) == 0
        assert server.stdout is not None
        server.stdout.close()


def test_serve_stops_cleanly_on_a_second_signal(node: tuple[Proc, str, str]) -> None:
    """Whether the second signal is taken while the node closes (it then ends at once,
    128 + its number; both may be pending, and either taken first) or after (0): no
    traceback, and a last line that says which."""
    server, _, _ = node
    server.process.send_signal(signal.SIGTERM)
    server.process.send_signal(signal.SIGINT)
    status = server.process.wait(timeout=DEADLINE)
    err = server.rest_of("err")
    assert "Traceback" not in "\n".join(err), err
    if status != 0:
        second = signal.Signals(status - 128)
        assert second in (signal.SIGINT, signal.SIGTERM), (status, err)
        assert err[-1].startswith(f"berrymq: stopped by a second {second.name} while "), err
    else:
        assert err[-1] == "stopped", err


#: An outside plugin whose transport, started with every bus, never returns from close().
_HANGING_PLUGIN = """
import sys, threading
from berrymq.hookspecs import hookimpl
from berrymq.transports.base import Transport

class Hanging(Transport):
    def listen(self, address):
        return address
    def interconnect(self, address, ttl):
        raise TypeError("no connections")
    connect_oneway = interconnect
    def connect_via_queue(self, address, pattern, ttl):
        raise TypeError("no connections")
    def close(self):
        print("hang: closing", file=sys.stderr, flush=True)
        threading.Event().wait()

@hookimpl
def berrymq_register_transports(registry):
    registry.add("hang", Hanging, plugin="hang")

@hookimpl
def berrymq_start_bus(bus):
    bus.transport("hang").listen("hang://here")  # before serve's own: closed first, once
"""


def _serve_with_a_hanging_plugin(tmp_path: Path, procs: list[Proc], *options: str) -> tuple[Proc, int]:
    """``serve --tcp`` with that plugin, stopped by SIGTERM; returns once the plugin's close
    began, after the node's own TCP server closed (it is refused at once), and the window
    in which a SIGTERM is the same stop again is over."""
    server = Proc("serve", "--tcp", "127.0.0.1:0", *options, cwd=tmp_path,
                  env=plugin_site(tmp_path, "hang", _HANGING_PLUGIN))
    procs.append(server)
    port = int(server.line().rsplit(":", 1)[1])
    assert server.line("err") == "press Ctrl-C to stop"
    server.process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert server.line("err") == "hang: closing"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
    time.sleep(max(0.0, stopped + SAME_STOP_WINDOW + 0.1 - time.monotonic()))
    return server, port


def test_the_stop_signal_sent_twice_at_once_is_one_stop(tmp_path: Path,
                                                         procs: list[Proc]) -> None:
    """GNU ``timeout`` and process supervisors signal the process and its group at once
    (one sender, twice): ``serve`` ended 143 in 2 of 6 such stops, blaming its transport
    ("stopped by a second SIGTERM while closing: the tcp:// transport ... has not
    returned")."""
    for _ in range(6):
        server = Proc("serve", "--tcp", "127.0.0.1:0", cwd=tmp_path)
        procs.append(server)
        server.line()
        assert server.line("err") == "press Ctrl-C to stop"
        server.process.send_signal(signal.SIGTERM)
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(timeout=DEADLINE)
        assert (status, server.rest_of("err")[-1:]) == (0, ["stopped"])


def test_serve_stops_within_its_stop_timeout_when_a_plugin_does_not_close(
        tmp_path: Path, procs: list[Proc]) -> None:
    """A probe found ``serve`` with such a plugin unstoppable but by SIGKILL, silently:
    still running 31 s after SIGTERM, SIGTERM and SIGINT."""
    server, _ = _serve_with_a_hanging_plugin(tmp_path, procs, "--stop-timeout", "3")
    assert server.process.wait(timeout=DEADLINE) == 1
    assert server.rest_of("err") == [
        "berrymq: error: the node did not close within 3s: the hang:// transport of plugin "
        "'hang' has not returned from close(); exiting without it"]


def test_a_second_stop_from_another_process_just_after_the_first_is_a_second_stop(
        tmp_path: Path, procs: list[Proc]) -> None:
    """Only a copy from the same sender is the same stop: ``kill -TERM $p; kill -TERM $p``
    in a script (two processes) ends ``serve`` at once, as two Ctrl-C would."""
    server = Proc("serve", "--tcp", "127.0.0.1:0", cwd=tmp_path,
                  env=plugin_site(tmp_path, "hang", _HANGING_PLUGIN))
    procs.append(server)
    server.line()
    assert server.line("err") == "press Ctrl-C to stop"
    pid = str(server.process.pid)
    # (two kill programs: the shell's own kill would send both from one process)
    subprocess.run(["sh", "-c", f"env kill -TERM {pid}; env kill -TERM {pid}"], check=True,
                   timeout=10)
    assert server.process.wait(timeout=DEADLINE) == 128 + signal.SIGTERM
    err = server.rest_of("err")  # (the plugin's "hang: closing" may come before or after)
    assert any(line.startswith("berrymq: stopped by a second SIGTERM while ") for line in err), err


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_ends_serve_at_once_while_a_plugin_does_not_close(
        tmp_path: Path, procs: list[Proc], second: signal.Signals) -> None:
    server, _ = _serve_with_a_hanging_plugin(tmp_path, procs)  # the stop timeout: 20 s
    server.process.send_signal(second)
    assert server.process.wait(timeout=DEADLINE) == 128 + second
    assert server.rest_of("err") == [
        f"berrymq: stopped by a second {second.name} while closing: the hang:// transport of "
        "plugin 'hang' has not returned from close()"]


def test_serve_stops_on_sigterm_while_clients_are_connected(
        tmp_path: Path, procs: list[Proc], node: tuple[Proc, str, str]) -> None:
    server, _, http = node
    listen(tmp_path, procs, http, "job:*")
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    assert server.rest_of("err")[-1] == "stopped"


# -- the pieces, in process ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42), ("-1.5", -1.5), ("true", True), ("null", None), ('"42"', "42"),
    ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}), ("hello", "hello"), ("", ""),
    ("NaN", "NaN"), ("Infinity", "Infinity"), ("1 2", "1 2"),
])
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


@pytest.mark.parametrize("command", ["send", "ask"])
def test_a_number_too_large_for_json_is_a_usage_error_naming_it(
        tmp_path: Path, command: str) -> None:
    """``1e400`` is JSON that Python reads as infinity, which no message can carry: ``ask``
    failed with "the command 'ask' (plugin 'jsonrpc-tcp') failed: ValueError: Out of range
    float values are not JSON compliant" (exit 1), ``send`` named no word; ``1e400]``,
    no JSON, stays a string; ``send -`` lines are held to the same rule."""
    for value, number in (("1e400", "1e400"), ("[1, -1e400]", "-1e400")):
        line = one_error_line(run(command, "tcp://127.0.0.1:1", "a:b", value, cwd=tmp_path))
        assert line == (f"berrymq: error: the value {value} holds the number {number}, "
                        "too large for JSON (a double): it cannot be sent"), line
    result = run(command, "tcp://127.0.0.1:1", "a:b", "--kw", "x=1e999", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = result.stderr.splitlines()[-1]  # (after argparse's usage)
    assert line.endswith("argument --kw: --kw x: the value 1e999 holds the number 1e999, "
                         "too large for JSON (a double): it cannot be sent"), line
    assert parse_value("1e400]") == "1e400]"
    deep = "[1e400," + "[" * 3000 + "]" * 3000 + "]"  # (a RecursionError escaped: exit 1)
    with pytest.raises(ValueError, match="nests arrays and objects too deeply"):
        parse_value(deep)
    with pytest.raises(ValueError, match="the line nests arrays and objects too deeply"):
        message_from_json(f'["a:b", {deep}]')
    with pytest.raises(ValueError, match="the line holds the number 1e400, too large"):
        message_from_json('["a:b", [1e400]]')
    with pytest.raises(ValueError, match="NaN is not JSON"):  # (json.loads took it)
        message_from_json('["a:b", [NaN]]')


@pytest.mark.parametrize(("scheme", "addr", "url"), [
    ("tcp", "127.0.0.1:7000", "tcp://127.0.0.1:7000"),
    ("tcp", ":7000", "tcp://127.0.0.1:7000"),
    ("http", "8000", "http://127.0.0.1:8000"),
    ("http", "::1:8000", "http://[::1]:8000"),
    ("http", "[::1]:8000", "http://[::1]:8000"),
    ("tcp", "tcp://localhost:1", "tcp://localhost:1"),
])
def test_server_url(scheme: str, addr: str, url: str) -> None:
    assert server_url(scheme, addr) == url


def test_format_message() -> None:
    assert format_message(Message("a:b", (1, "x"), {})) == 'a:b [1, "x"]'
    assert format_message(Message("a@ns:b", (), {"k": [1]})) == 'a@ns:b [] {"k": [1]}'
    assert format_message(Message("a:b", (1,), {}), as_json=True) == (
        '{"identifier": "a:b", "args": [1], "kwargs": {}}')


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_serve_binds_the_host_setting_of_the_plugin(scheme: str, tmp_path: Path,
                                                    procs: list[Proc]) -> None:
    (tmp_path / "berrymq.toml").write_text(f'[berrymq.jsonrpc-{scheme}]\nhost = "127.0.0.2"\n')
    proc = Proc("serve", f"--{scheme}", ":0", cwd=tmp_path)
    procs.append(proc)
    url = proc.line().removeprefix("serving ")
    assert url.startswith(f"{scheme}://127.0.0.2:"), url
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.2", port), timeout=DEADLINE):
        pass  # listening there
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=DEADLINE):
        pass  # and not on another loopback address
    assert run("send", url, "host:ok", cwd=tmp_path).returncode == 0
    assert proc.stop() == 0

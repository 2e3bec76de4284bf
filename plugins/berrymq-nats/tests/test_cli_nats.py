"""``berrymq listen nats://...`` and ``send nats://...`` through the bridge (issue 12):
a real nats-server, the commands as subprocesses."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEADLINE = 30.0


def berrymq(*args: str, cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BERRYMQ_CONFIG", "BERRYMQ_URL")}
    return subprocess.Popen([sys.executable, "-m", "berrymq", *args], cwd=cwd, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_listen_and_send_through_a_nats_broker(tmp_path: Path, nats_server: Any) -> None:
    url = nats_server.url
    listener = berrymq("listen", url, "job:*", "--count", "2", "--json", cwd=tmp_path)
    try:
        assert listener.stderr is not None
        # printed once this process joined the broker with its queue
        assert listener.stderr.readline().strip() == f"listening to job:* at {url}"
        for args in (("job:one", "1"), ("other:x",), ("job:two", "--kw", "k=v")):
            sender = berrymq("send", url, *args, cwd=tmp_path)
            out, err = sender.communicate(timeout=DEADLINE)
            assert sender.returncode == 0, err
        out, err = listener.communicate(timeout=DEADLINE)
        assert listener.returncode == 0, err
        lines = out.splitlines()
        assert [line.split(', "time"')[0] for line in lines] == [
            '{"identifier": "job:one", "args": [1], "kwargs": {}',
            '{"identifier": "job:two", "args": [], "kwargs": {"k": "v"}',
        ]
        assert "Traceback" not in err
    finally:
        if listener.poll() is None:
            listener.send_signal(signal.SIGKILL)
        listener.communicate(timeout=DEADLINE)


def test_listen_to_a_broker_that_is_not_there(tmp_path: Path,
                                              nats_factory: Callable[..., Any]) -> None:
    url = nats_factory().url  # made, not started: nothing listens on its port
    started = time.monotonic()
    listener = berrymq("listen", url, "job:*", "--connect-timeout", "1", cwd=tmp_path)
    out, err = listener.communicate(timeout=DEADLINE)
    assert time.monotonic() - started < 8  # the wait is bounded by --connect-timeout
    assert listener.returncode == 1 and out == ""
    assert err.startswith(f"berrymq: error: cannot connect to NATS at {url}"), err
    assert "Traceback" not in err and len(err.splitlines()) == 1


RESPONDER = """
import sys, berrymq
berrymq.regist_function("price:quote", lambda message: 9.5 * message.args[0], weak=False)
berrymq.connect_broker(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
"""


def test_ask_through_a_nats_broker(tmp_path: Path, nats_server: Any) -> None:
    """``berrymq ask nats://...`` asks every process that follows the identifier there (it
    failed with an internal error: the command called a JSON-RPC method on the bridge)."""
    url = nats_server.url
    responder = subprocess.Popen([sys.executable, "-c", RESPONDER, url], cwd=tmp_path,
                                 text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert responder.stdout is not None and responder.stdout.readline() == "ready\n"
        asker = berrymq("ask", url, "price:quote", "2", cwd=tmp_path)
        out, err = asker.communicate(timeout=DEADLINE)
        assert (asker.returncode, out, err) == (0, "[19.0]\n", "")
        asker = berrymq("ask", url, "nobody:here", "--json", cwd=tmp_path)
        out, err = asker.communicate(timeout=DEADLINE)
        assert (asker.returncode, out, err) == (0, f'{{"url": "{url}", "replies": []}}\n', "")
    finally:
        responder.communicate("\n", timeout=DEADLINE)


class SilentServer:
    """A TCP server that accepts connections and never says a word (no NATS INFO)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"nats://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: queue.Queue[None] = queue.Queue()  # an item per connection taken
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.sock.accept()[0])
                self.accepted.put(None)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # (wakes the accept)
        self.sock.close()
        self.thread.join(DEADLINE)
        for conn in self.held:
            conn.close()


def test_send_to_a_silent_server_keeps_to_its_timeout(tmp_path: Path) -> None:
    """``send --timeout 1`` bounds the wait for NATS too (it waited the settings file's
    connect_timeout, here 10 s, and then as long again while closing: 20 s)."""
    config = tmp_path / "berrymq.toml"
    config.write_text("[berrymq.nats]\nconnect_timeout = 10\n")
    server = SilentServer()
    try:
        started = time.monotonic()
        sender = berrymq("send", "--timeout", "1", server.url, "job:a", cwd=tmp_path)
        out, err = sender.communicate(timeout=DEADLINE)
        took = time.monotonic() - started
    finally:
        server.close()
    assert sender.returncode == 1 and out == ""
    assert err.startswith(f"berrymq: error: cannot connect to NATS at {server.url}"), err
    assert took < 8, took


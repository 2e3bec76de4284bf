"""The floors of bench/ipc.py, with the standard library only: a raw NDJSON echo server,
a raw NDJSON counting server and the raw sender that feeds it.

bench/ipc.py runs this file as a child process (``--role echo|count|rawsend``, see
:mod:`children`). The floors are a file of their own so that their processes import
nothing beyond the standard library. bench/ipc.py imports berryMQ at its top; that starts
no thread, reads no settings file and loads no plugin, but a process that has loaded it
takes some 0.5 s longer to start and 60-100 ms longer to end. At the end of a throughput
round 100 raw senders end at once while the counting server still reads what they sent:
run from bench/ipc.py, their ends kept the two CPUs from it for seconds (the count came
7-9 s after the go instead of 2.5-3 s), which is no part of the floor.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any


def request_line(token: str, i: int, with_id: bool = True) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": "send_message",
                           "params": {"token": token, "identifier": "bench:tick",
                                      "args": [i], "kwargs": {}}}
    if with_id:
        obj["id"] = i
    return json.dumps(obj, separators=(",", ":")).encode()


def role_echo() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    print("ready", server.getsockname()[1], flush=True)
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")
        for line in reader:
            conn.sendall(line)
        reader.close()
        conn.close()


def role_count() -> None:
    """Count decoded lines from every connection; print the count when asked."""
    server = socket.create_server(("127.0.0.1", 0), backlog=1024)
    server.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    count = 0
    rests: dict[socket.socket, bytes] = {}
    print("ready", server.getsockname()[1], flush=True)
    asked = threading.Event()

    def wait_for_question() -> None:
        sys.stdin.readline()
        asked.set()

    threading.Thread(target=wait_for_question, daemon=True).start()
    loads = json.loads
    while not asked.is_set() or rests:
        for key, _ in sel.select(0.05):
            sock = key.fileobj
            if sock is server:
                conn, _ = server.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                rests[conn] = b""
                continue
            assert isinstance(sock, socket.socket)
            data = sock.recv(1 << 18)
            if not data:
                sel.unregister(sock)
                sock.close()
                del rests[sock]
                continue
            lines = (rests[sock] + data).split(b"\n")
            rests[sock] = lines.pop()
            for line in lines:
                loads(line)
                count += 1
        if asked.is_set() and not rests:
            break
    print("count", count, flush=True)


def role_rawsend(port: str, seconds: str) -> None:
    sock = socket.create_connection(("127.0.0.1", int(port)))
    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + float(seconds)
    sent = 0
    while time.monotonic() < deadline:
        sock.sendall(b"\n".join(request_line("t", sent + i, False) for i in range(100)) + b"\n")
        sent += 100
    sock.close()
    print("sent", sent, flush=True)


def main() -> None:
    roles: dict[str, Callable[..., None]] = {"echo": role_echo, "count": role_count,
                                             "rawsend": role_rawsend}
    if len(sys.argv) < 3 or sys.argv[1] != "--role" or sys.argv[2] not in roles:
        raise SystemExit(f"usage: {sys.argv[0]} --role {{{','.join(roles)}}} ARGS...")
    with suppress(BrokenPipeError, KeyboardInterrupt):  # the parent gave up: end quietly
        roles[sys.argv[2]](*sys.argv[3:])


if __name__ == "__main__":
    main()

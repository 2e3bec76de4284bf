"""A fake node on loopback for the client's side: it answers each JSON-RPC request with
whatever the test's ``answer(method, params, id)`` returns (the probe's fake servers, made
small), over TCP (one line per request) or HTTP (one POST per request, kept alive)."""

from __future__ import annotations

import contextlib
import http.server
import json
import secrets
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: ``answer(method, params, id)``: the reply, as an object to encode or the bytes of its
#: text; None leaves the request unanswered; CLOSE closes the connection instead.
Answer = Callable[[str, Any, Any], Any]
CLOSE = b"<close>"

WAIT = 10.0


def token() -> str:
    return secrets.token_urlsafe(32)


def normal(method: str, params: Any, rid: Any) -> dict[str, Any]:
    """The answer a well-behaved node gives to the client's usual requests."""
    result: Any = "ok"
    if method in ("connect_oneway", "connect_via_queue", "interconnect"):
        result = token()
    elif method in ("get", "get_nowait"):
        result = ["job:x", [1], {}]
    return {"jsonrpc": "2.0", "result": result, "id": rid}


class FakeNode:
    """What the fake saw: ``methods``, the method of each request in order."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.methods: list[str] = []
        self.url = ""

    def reply(self, body: bytes) -> bytes | None:
        try:
            request = json.loads(body)
        except ValueError:
            return None  # not a request (a keep-alive): not this fake's business
        if not isinstance(request, dict) or "method" not in request:
            return None
        self.methods.append(request["method"])
        if "id" not in request:
            return None  # a notification
        reply = self.answer(request["method"], request.get("params"), request["id"])
        if reply is None or isinstance(reply, bytes):
            return reply
        return json.dumps(reply).encode()


@contextlib.contextmanager
def fake_node(scheme: str, answer: Answer) -> Iterator[FakeNode]:
    """A fake node over ``scheme`` (``tcp`` or ``http``) that answers with ``answer``;
    its address is the yielded node's ``url``."""
    node = FakeNode(answer)
    server: socketserver.TCPServer
    if scheme == "tcp":
        class LineHandler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:  # until the client closes
                    data = node.reply(line)
                    if data is CLOSE:
                        return
                    if data is not None:
                        try:
                            self.wfile.write(data + b"\n")
                        except OSError:  # the client stopped reading
                            return

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), LineHandler)
    else:
        class PostHandler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                try:
                    super().handle()
                except OSError:  # the client reset the connection
                    pass

            def do_POST(self) -> None:
                data = node.reply(self.rfile.read(int(self.headers["Content-Length"])))
                if data is CLOSE:
                    self.close_connection = True
                    return
                if data is None:
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client stopped reading (an answer over its limit)
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PostHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    node.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    try:
        yield node
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)

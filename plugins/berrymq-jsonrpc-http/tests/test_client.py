"""client.py: berryMQ's HTTP client against a node that closes a kept-alive connection
after reading a request (without answering it): the request is never sent twice, and
what it carried is counted lost, as over TCP (an outside audit found a batch delivered
twice, and the message a ``get`` took given to nobody, with ``flush()`` saying True)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from helpers import Buses

import berrymq
from berrymq.identifier import Identifier

TOKEN = "t" * 43


class ClosingNode:
    """A scripted node over HTTP: on each connection it answers the first request (a
    token for ``connect_*``, ``"ok"`` or a message otherwise) and reads the second whole,
    then closes without answering it. It counts every request by method."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed: the test is over
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            for turn in range(2):
                head = [reader.readline()]
                while head[-1] not in (b"\r\n", b""):
                    head.append(reader.readline())
                if head[-1] == b"":
                    return
                length = next(int(line.split(b":")[1]) for line in head
                              if line.lower().startswith(b"content-length:"))
                request = json.loads(reader.read(length))
                with self.lock:
                    self.seen[request["method"]] = self.seen.get(request["method"], 0) + 1
                if turn == 1:
                    return  # read, maybe run: closed without an answer
                result = (TOKEN if request["method"].startswith("connect_") else
                          ["job:taken", [], {}] if request["method"].startswith("get") else "ok")
                body = json.dumps({"jsonrpc": "2.0", "result": result,
                                   "id": request["id"]}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def close(self) -> None:
        """Stop accepting (the threads of connections still open end with them)."""
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # (wakes the accept: close alone does not)
        self.server.close()
        self.threads[0].join(10)


@pytest.fixture
def closing_node() -> Iterator[ClosingNode]:
    node = ClosingNode()
    yield node
    node.close()


def test_a_batch_is_not_sent_again_when_the_node_closes_before_answering(
        buses: Buses, closing_node: ClosingNode) -> None:
    client = buses()
    connection = client.transport("http").connect_oneway(closing_node.url, 60)
    connection.send(berrymq.Message("job:run", (1,)))  # the second request on the connection
    assert client.flush(10) is False  # counted lost: the node may or may not have it
    with closing_node.lock:
        assert closing_node.seen == {"connect_oneway": 1, "send_messages": 1}


def test_a_get_is_not_sent_again_when_the_node_closes_before_answering(
        buses: Buses, closing_node: ClosingNode) -> None:
    client = buses()
    connection = client.transport("http").connect_via_queue(closing_node.url,
                                                            Identifier("job:*"), 60)
    with pytest.raises(berrymq.TransportError, match="closed the connection without an answer"):
        connection.get_nowait()
    with closing_node.lock:
        assert closing_node.seen == {"connect_via_queue": 1, "get_nowait": 1}

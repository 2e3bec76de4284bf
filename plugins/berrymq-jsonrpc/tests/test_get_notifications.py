"""A ``get`` or ``get_nowait`` sent as a notification (no ``id``) takes no message, and
a ``connect_oneway`` or ``connect_via_queue`` one opens no session (the last test).

Its one effect would be taking a message to answer with, and a notification is answered
nothing: the message would be gone, reported nowhere (a loss the node's status never
counted), and a blocking one kept waiting for a client long gone. The node does not run
such a call at all (docs/protocol.md, Notifications), over TCP and HTTP, alone or in a
batch, in JSON-RPC 2.0 and 1.0.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from probe_tools import post_body, send_request

from berrymq.bus import Bus

SCHEMES = ["tcp", "http"]
WAIT = 10.0


def call(scheme: str, port: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One request with an id on a connection of its own: the answer, parsed."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    if scheme == "http":
        answer: dict[str, Any] = post_body(port, body)
        return answer
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(body + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
    answer = json.loads(data)
    return answer


def note(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


#: A ``get``/``get_nowait`` notification as a client may write it, for a token.
FORMS: dict[str, Callable[[str], Any]] = {
    "get": lambda token: note("get", {"token": token, "block": True, "timeout": 6 * WAIT}),
    "get-by-position": lambda token: note("get", [token, True, 6 * WAIT]),
    "get-no-block": lambda token: note("get", {"token": token, "block": False}),
    "get_nowait": lambda token: note("get_nowait", {"token": token}),
    "get-in-a-batch": lambda token: [note("get", {"token": token, "timeout": 6 * WAIT}),
                                     dict(note("network", {}), id=2)],
    "get_nowait-in-a-batch": lambda token: [note("get_nowait", [token])],
    "json-rpc-1.0": lambda token: {"method": "get", "params": [token, True, 6 * WAIT]},
}


def sent_and_taken(sock: socket.socket, scheme: str, notification: Any) -> None:
    """Send ``notification`` (or a batch) on ``sock`` and wait until the node took it in:
    over HTTP its answer (204, or 200 for a batch with a request: made once the whole
    batch ran); over TCP the answer to a request sent after it on the same connection."""
    send_request(sock, scheme, json.dumps(notification).encode())
    if scheme == "tcp":
        sock.sendall(json.dumps(dict(note("network", {}), id="after")).encode() + b"\n")
        ends = b'"id":"after"}\n'
    else:
        ends = b"\r\n\r\n"
    data = b""
    while ends not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed without an answer"
        data += chunk


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("form", list(FORMS))
def test_a_get_notification_leaves_a_queued_message_in_the_queue(
        scheme: str, form: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    bus, port = server(scheme)
    token = call(scheme, port, "connect_via_queue", {"identifier": "gn:*"})["result"]
    bus.twitter("gn:first", 1)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sent_and_taken(sock, scheme, FORMS[form](token))
        answer = call(scheme, port, "get_nowait", {"token": token})
    assert answer.get("result") == ["gn:first", [1], {}], answer
    assert bus.transport(scheme).service.stats.losses() == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("form", ["get", "get-by-position", "get-in-a-batch", "json-rpc-1.0"])
@pytest.mark.parametrize("ending", ["close", "half-close"])
def test_a_client_gone_after_a_get_notification_leaves_the_next_message_queued(
        scheme: str, form: str, ending: str, server: Callable[[str], tuple[Bus, int]],
        wait_for: Callable[..., Any]) -> None:
    """The reported loss: a blocking ``get`` notification on an empty queue, the client
    closes (or half-closes: over TCP the node then closed its side at once, where it
    kept the connection open for the whole wait), then a message comes: it is the answer
    to the client's next ``get``, not taken by the notification."""
    bus, port = server(scheme)
    token = call(scheme, port, "connect_via_queue", {"identifier": "gone:*"})["result"]
    admission = bus.transport(scheme).admission  # type: ignore[attr-defined]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        send_request(sock, scheme, json.dumps(FORMS[form](token)).encode())
        wait_for(lambda: admission.open == 1, WAIT, "the connection to be open")
        if ending == "half-close":
            sock.shutdown(socket.SHUT_WR)
            wait_for(lambda: admission.open == 0, WAIT, "the node to close its side")
    wait_for(lambda: admission.open == 0, WAIT, "the node to see the connection end")
    bus.twitter("gone:next", 2)
    answer = call(scheme, port, "get_nowait", {"token": token})
    assert answer.get("result") == ["gone:next", [2], {}], answer


#: Notifications of the methods that open a session, as a client may write them.
OPENING = {
    "connect_oneway": note("connect_oneway", {"ttl": 600}),
    "connect_via_queue": note("connect_via_queue", {"identifier": "*:*", "ttl": 600}),
    "a-batch-of-both": [note("connect_oneway", {}), note("connect_via_queue", ["*:*", 600]),
                        note("network", {})],
    "json-rpc-1.0": {"method": "connect_via_queue", "params": ["*:*", 600]},
}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("form", list(OPENING))
def test_a_notification_that_would_open_a_session_opens_none(
        scheme: str, form: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    """A session opened so has a token nobody holds: it kept a place of max_sessions, and
    a queue of ``*:*`` a share of max_queued_bytes, until its ttl; one line of 10,000 such
    notifications locked every other client out (found by fuzzing)."""
    bus, port = server(scheme)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sent_and_taken(sock, scheme, OPENING[form])
    assert bus.transport(scheme).service.sessions == {}  # type: ignore[attr-defined]

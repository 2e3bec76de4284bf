"""The servers of the JSON-RPC transports are the transport contract's listeners
(berrymq_jsonrpc.listener): each knows its bound address and closes from any thread."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from berrymq.bus import Bus
from berrymq.transports.base import Listener


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_transport_s_server_is_a_listener_that_closes(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any], scheme: str) -> None:
    bus = bus_factory()
    transport = bus.transport(scheme)
    url = transport.listen(f"{scheme}://127.0.0.1:0")
    (server,) = transport._servers  # type: ignore[attr-defined]
    assert isinstance(server, Listener)
    assert server.address == url
    port = int(url.rsplit(":", 1)[1])
    accepted = socket.create_connection(("127.0.0.1", port), timeout=5)
    open_ones = server.channels if scheme == "tcp" else server.connections
    wait_for(lambda: len(open_ones) == 1, 10, "the server to take the connection")
    try:
        server.close()  # the listening socket and the connection it accepted
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert accepted.recv(1) == b""  # closed by the node
    finally:
        accepted.close()

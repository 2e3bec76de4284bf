"""The servers of the JSON-RPC transports are the transport contract's listeners
(berrymq_jsonrpc.listener): each knows its bound address and closes from any thread."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from berrymq.bus import Bus
from berrymq.errors import TransportError
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


def _connect_until(port: int, stop: threading.Event, made: list[socket.socket]) -> None:
    while not stop.is_set() and len(made) < 3000:
        try:
            made.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            return  # refused: the listener is closed


def _still_open(sockets: list[socket.socket], within: float) -> int:
    """How many of ``sockets`` the node has neither closed nor reset ``within`` seconds."""
    poller = select.poll()
    waiting = {sock.fileno() for sock in sockets}
    for fd in waiting:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + within
    while waiting and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            waiting.discard(fd)
            poller.unregister(fd)
    return len(waiting)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_connections_that_come_while_a_node_closes_are_closed_with_it(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any], scheme: str) -> None:
    """asyncio accepts up to its backlog (1,024) at once and makes each a connection in a
    task of its own: those made after the node's close left it served until read_timeout,
    and those whose task ran after the listening socket closed failed inside asyncio and
    stayed open until the cyclic collector found them (about 1,000 a close, before)."""
    for _ in range(3):
        bus = bus_factory(**{f"jsonrpc_{scheme}": {"read_timeout": 120}})
        url = bus.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
        port = int(url.rsplit(":", 1)[1])
        made: list[socket.socket] = []
        stop = threading.Event()
        clients = [threading.Thread(target=_connect_until, args=(port, stop, made))
                   for _ in range(4)]
        for client in clients:
            client.start()
        try:
            wait_for(lambda: len(made) >= 300, 10, "clients to connect")
            bus.close()
        finally:
            stop.set()
            for client in clients:
                client.join()
        for sock in made:  # a request's first byte: one the kernel had not handed to
            with contextlib.suppress(OSError):  # the node yet (the backlog was full)
                sock.send(b"{")               # is reset, as the node never knew it
        try:
            assert _still_open(made, 5.0) == 0, f"of {len(made)} connections"
        finally:
            for sock in made:
                sock.close()


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_serving_a_busy_port_is_a_transport_error_naming_the_address(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    """A taken port came out as the bare ``OSError`` of asyncio's bind, which
    ``except berrymq.BerryMQError`` does not catch (the docs say a transport's socket
    errors are :class:`~berrymq.TransportError`)."""
    bus = bus_factory()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        url = f"{scheme}://127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(TransportError, match=f"cannot serve {url}: .*in use") as caught:
            bus.transport(scheme).listen(url)
    assert isinstance(caught.value.__cause__, OSError)
    assert bus.transport(scheme).urls == []  # nothing half-served

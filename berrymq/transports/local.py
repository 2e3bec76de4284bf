"""The built-in ``local`` transport: ``local://NAME`` links buses inside one process.

It follows the same contract as the network transports, without sockets: useful to
split a program into buses that talk as separate nodes would, and to test code written
for ``interconnect`` without a network. ``ttl`` is accepted for the same signatures; an
in-process link has no idle resources to expire, so it is kept until closed.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from berrymq.errors import ConnectionClosed
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.registries import TransportRegistry
from berrymq.transports.base import Connection, Transport

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.receivers.queues import Queue

__all__ = ["LocalTransport"]

_nodes: weakref.WeakValueDictionary[str, LocalTransport] = weakref.WeakValueDictionary()
_nodes_lock = threading.Lock()


def _name_of(address: str) -> str:
    return address.split("://", 1)[1].strip("/")


class _Link:
    """One direction of an interconnection: hands this bus's messages to the peer."""

    def __init__(self, peer: Bus) -> None:
        self.peer = peer
        self.back: _Link | None = None

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        self.peer.receive(message, self.back, reply_to)


class LocalConnection(Connection):
    def __init__(self, transport: LocalTransport, peer: LocalTransport, address: str, style: str,
                 queue: Queue | None = None) -> None:
        self.transport = transport
        self.peer = peer
        self.address = address
        self.style = style
        self.queue = queue
        self.closed = False
        self.links: tuple[_Link, _Link] | None = None

    def send(self, message: Message) -> None:
        if self.closed:
            raise ConnectionClosed(f"connection to {self.address} is closed")
        self.peer.bus.receive(self.transport.bus.stamp(message))

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        if self.queue is None:
            return super().get(block, timeout)
        if self.closed:
            raise ConnectionClosed(f"connection to {self.address} is closed")
        return self.queue.get(block, timeout)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.links is not None:
            here, there = self.links
            self.transport.bus.remove_forwarder(here)
            self.peer.bus.remove_forwarder(there)
        if self.queue is not None:
            self.queue.close()
        self.transport.bus.untrack_connection(self)


class LocalTransport(Transport):
    """Serves a bus under a name in this process and connects to buses served so."""

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)
        self.names: list[str] = []

    def listen(self, address: str) -> str:
        name = _name_of(address)
        if name in ("", "0"):
            name = f"node-{secrets.token_hex(6)}"
        with _nodes_lock:
            existing = _nodes.get(name)
            if existing is not None and existing is not self:
                raise OSError(f"local://{name} is already served by another bus")
            _nodes[name] = self
        self.names.append(name)
        return f"local://{name}"

    def _peer(self, address: str) -> LocalTransport:
        peer = _nodes.get(_name_of(address))
        if peer is None:
            raise ConnectionClosed(f"no bus serves {address} in this process")
        return peer

    def interconnect(self, address: str, ttl: float) -> Connection:
        peer = self._peer(address)
        here, there = _Link(peer.bus), _Link(self.bus)
        here.back, there.back = there, here
        connection = LocalConnection(self, peer, address, "interconnect")
        connection.links = (here, there)
        self.bus.add_forwarder(here)
        peer.bus.add_forwarder(there)
        return connection

    def connect_oneway(self, address: str, ttl: float) -> Connection:
        return LocalConnection(self, self._peer(address), address, "oneway")

    def connect_via_queue(self, address: str, pattern: Identifier, ttl: float) -> Connection:
        from berrymq.receivers.queues import Queue

        peer = self._peer(address)
        return LocalConnection(self, peer, address, "queue", Queue(str(pattern), bus=peer.bus))

    def status(self) -> str:
        return "serving " + ", ".join(f"local://{n}" for n in self.names) if self.names else "idle"

    def close(self) -> None:
        with _nodes_lock:
            for name in self.names:
                if _nodes.get(name) is self:
                    del _nodes[name]
        self.names.clear()


@hookimpl
def berrymq_register_transports(registry: TransportRegistry) -> None:
    registry.add("local", LocalTransport, plugin="local")

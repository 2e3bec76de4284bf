"""The built-in ``local`` transport: ``local://NAME`` links buses inside one process.

It follows the same contract as the network transports, without sockets, on the
in-memory links of :func:`~berrymq.transports.base.memory_link_pair`: useful to split a
program into buses that talk as separate nodes would, and to test code written for
``interconnect`` without a network. ``ttl`` is accepted for the same signatures; an
in-process link has no idle resources to expire, so it is kept until closed.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from berrymq.errors import ConnectionClosed
from berrymq.fork_safe import ForkSafeLock
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier
from berrymq.receivers.queues import Queue
from berrymq.registries import TransportRegistry
from berrymq.transports.base import Connection, Transport, memory_link_pair
from berrymq.transports.styles import LinkConnection

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["LocalTransport"]

_nodes: weakref.WeakValueDictionary[str, LocalTransport] = weakref.WeakValueDictionary()
_nodes_lock = ForkSafeLock()


def _name_of(address: str) -> str:
    return address.split("://", 1)[1].strip("/")


class LocalTransport(Transport):
    """Serves a bus under a name in this process and connects to buses served so."""

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)
        self.names: list[str] = []
        # the buses interconnected to this one, by their link here: (address, style)
        self._incoming: dict[int, tuple[str, str]] = {}

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

    @property
    def name(self) -> str:
        """The first name this bus is served under (``unnamed`` when it serves none)."""
        return self.names[0] if self.names else "unnamed"

    def _connect(self, address: str, style: str, pattern: Identifier | None = None
                 ) -> LinkConnection:
        """A connection over a :func:`memory_link_pair`; an interconnection also adds the
        way back to the peer's bus, a queue connection a :class:`Queue` on the peer."""
        peer = self._peer(address)
        here, back = memory_link_pair(self.bus, peer.bus, f"local://{self.name}", address)
        inbox = None if pattern is None else Queue(str(pattern), bus=peer.bus)
        if style == "interconnect":
            peer.bus.add_forwarder(back)
            peer._incoming[id(back)] = (f"local://{self.name}", style)

        def on_close(polite: bool) -> None:
            peer.bus.remove_forwarder(back)
            peer._incoming.pop(id(back), None)
            back.close()

        return LinkConnection(self.bus, here, style, address=address, inbox=inbox,
                              on_close=on_close)

    def interconnect(self, address: str, ttl: float) -> Connection:
        return self._connect(address, "interconnect")

    def connect_oneway(self, address: str, ttl: float) -> Connection:
        return self._connect(address, "oneway")

    def connect_via_queue(self, address: str, pattern: Identifier, ttl: float) -> Connection:
        return self._connect(address, "queue", pattern)

    def peers(self) -> list[tuple[str, str]]:
        return list(self._incoming.values())

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

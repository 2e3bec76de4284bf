"""The methods a :class:`~berrymq.Bus` has for transports and peers, each handing over to
the bus's :class:`~berrymq.node.Node`.

:class:`NodeSide` is a base class of the bus, as :class:`~berrymq._subscribing.Subscribing`
is, so that ``bus.add_forwarder(...)`` stays one call. It is apart from :mod:`berrymq.node`
because it is the bus's face, not the network side itself: it makes the node on first need
(a bus with no peers has none), and what it asks of the node is only the node's public
methods and attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from berrymq._losses import LOSSES, Losses
from berrymq._pending import sweep_closed_loops
from berrymq.node import Forwarder, Node

if TYPE_CHECKING:
    from berrymq._index import CachedRoute
    from berrymq.bus import Bus
    from berrymq.fork_safe import ForkSafeLock
    from berrymq.identifier import Identifier
    from berrymq.message import Message
    from berrymq.plugins import PluginHost
    from berrymq.state import BusState
    from berrymq.transports.base import Connection, Transport

__all__ = ["NodeSide"]


class NodeSide:
    """The methods a :class:`~berrymq.Bus` has for transports and peers; each hands over
    to the bus's :class:`Node`, made on first use."""

    if TYPE_CHECKING:
        bus: Bus
        node: Node | None
        _lock: ForkSafeLock
        routes: dict[object, CachedRoute]
        taps: tuple[Any, ...]
        hop_limit: int
        extensions: BusState

        @property
        def plugins(self) -> PluginHost: ...

        def _update_direct(self) -> None: ...

        def refuse_if_closed(self, action: str) -> None: ...

    def ensure_node(self) -> Node:
        """The network side of this bus (:attr:`node`), made now if it is not yet: by
        what gives the bus peers or a transport, never by sending."""
        node = self.node
        if node is None:
            self.refuse_if_closed("add a transport or a peer")
            with self._lock:
                if self.node is None:
                    self.node = Node(self.bus)
                    # Transports call bus.receive for every message coming in: from now
                    # on that is the node's own method, one call less.
                    self.receive = self.node.receive  # type: ignore[method-assign]
                node = self.node
        return node

    @property
    def losses(self) -> Losses:
        """The messages this bus could not deliver, by reason (``losses.counts``,
        ``losses.total``): past the hop limit, not taken by a forwarder, refused in a
        worker thread, cancelled or left on a closed event loop in an ``async def``
        receiver (a closed loop's are looked for now, as at :meth:`Bus.flush`, at close
        and when a send finds the loop closed). Each is also logged, once per burst (see
        :mod:`berrymq._losses`)."""
        sweep_closed_loops()
        return self.extensions.get(LOSSES)

    def add_forwarder(self, forwarder: Forwarder) -> None:
        """Hand every non-local message sent on this bus to ``forwarder.forward``."""
        self.refuse_if_closed("add a peer")
        self.ensure_node().add_forwarder(forwarder)
        self._update_direct()

    def remove_forwarder(self, forwarder: Forwarder) -> None:
        """Stop handing messages to ``forwarder`` (idempotent)."""
        if self.node is not None:
            self.node.remove_forwarder(forwarder)
            self._update_direct()

    def requesters(self) -> list[Any]:
        """The forwarders that can carry ``ask`` requests to peers."""
        return [] if self.node is None else self.node.requesters()

    def first_request(self, uid: str) -> bool:
        """Whether a peer's ``ask`` with ``uid`` is the first this node sees of it: an
        asker asks over every link to it (two ``interconnect``, a ``connect_oneway``), and
        the receivers here run once per ask as per forwarded message (the same memory)."""
        return self.ensure_node().first_sight(uid)

    def stamp(self, message: Message) -> Message:
        """Return ``message`` with a unique id, given once when it first leaves the bus."""
        return self.ensure_node().stamp(message)

    def receive(self, message: Message, origin: Forwarder | None = None,
                reply_to: Identifier | None = None) -> bool:
        """Take in a message from another node: deliver it here and pass it on.

        A message whose ``uid`` was seen before is dropped (it went round a cycle); returns
        whether the message was taken. ``hops`` counts one more for the crossing.
        """
        node = self.node
        if node is None:
            node = self.ensure_node()
        return node.receive(message, origin, reply_to)

    def transport(self, scheme: str) -> Transport:
        """This bus's transport for a URL scheme, created by its plugin on first use."""
        node = self.ensure_node()
        transport = node.transports.get(scheme)
        if transport is None:
            with node.lock:
                transport = node.transports.get(scheme)
            if transport is None:
                self.refuse_if_closed(f"add a {scheme} transport")
                made = self.plugins.create_transport(scheme, self.bus)
                with node.lock:
                    transport = node.transports.setdefault(scheme, made)
                if transport is not made:
                    made.close()  # another thread made one first
        return transport

    def track_connection(self, connection: Connection) -> None:
        """Keep ``connection`` so that :meth:`close` closes it."""
        self.refuse_if_closed("add a connection")
        self.ensure_node().track(connection)

    def untrack_connection(self, connection: Connection) -> None:
        if self.node is not None:
            self.node.untrack(connection)

    def connections(self) -> list[Connection]:
        """The open connections made from this bus (a snapshot)."""
        node = self.node
        if node is None:
            return []
        with node.lock:
            return list(node.connections)

    def transports(self) -> dict[str, Transport]:
        """This bus's transports by URL scheme (a snapshot)."""
        node = self.node
        if node is None:
            return {}
        with node.lock:
            return dict(node.transports)

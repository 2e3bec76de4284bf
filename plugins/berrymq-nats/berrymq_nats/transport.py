"""The ``nats`` transport: one :class:`NatsBridge` per bus, made from settings or code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from berrymq.errors import ConnectionClosed, TransportError
from berrymq.fork_safe import ForkSafeLock
from berrymq.identifier import Identifier
from berrymq.state import StateKey
from berrymq.transports.base import Connection, Transport
from berrymq.transports.ioloop import InheritedLoopError, io_loop
from berrymq_nats.bridge import NatsBridge
from berrymq_nats.options import BrokerOptions

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["NatsTransport", "transport_of"]

#: The bus's NATS transport, once made (per-bus state: it goes away with the bus).
_TRANSPORT: StateKey[list[NatsTransport]] = StateKey("nats transport", lambda bus: [])


def transport_of(bus: Bus) -> NatsTransport | None:
    """The bus's NATS transport, if it was made (and the bus is not closed)."""
    made = bus.extensions.peek(_TRANSPORT)
    return made[0] if made else None


class NatsTransport(Transport):
    """Links a bus to NATS. ``listen``, ``interconnect`` and :meth:`connect_broker` all
    join the bus to the NATS servers at the address (the broker is the "node" that every
    process connects to); ``connect_oneway`` publishes what ``send`` sends and asks, as
    style 02 does over every transport. ``connect_via_queue`` is refused with a
    ``TypeError``: the broker keeps no queue per client.

    :param settings: the ``[berrymq.nats]`` table; its keys are the defaults of
        :meth:`connect_broker`.
    """

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)
        self.bridge: NatsBridge | None = None
        #: the longest wait of a connection attempt, in seconds: the ``connect_timeout``
        #: setting, which a command's ``--timeout`` lowers for its run (an option given
        #: to :meth:`connect_broker` comes before both)
        self.timeout = float(settings.get("connect_timeout", BrokerOptions.connect_timeout))
        self._lock = ForkSafeLock()
        bus.state(_TRANSPORT)[:] = [self]

    def connect_broker(
        self,
        servers: str | list[str] | tuple[str, ...] | None = None,
        *,
        wait: bool = True,
        subscribe: bool = True,
        **options: Any,
    ) -> NatsBridge:
        """Join this bus to NATS and return the bridge (one per bus).

        :param servers: NATS URLs (a list, or one string, comma-separated for several);
            the ``servers`` setting when omitted.
        :param wait: wait up to ``connect_timeout`` for the first connection and raise
            :class:`berrymq.ConnectionClosed` if it fails; otherwise connect in the
            background (messages wait in the buffer meanwhile).
        :param subscribe: false for a bridge that only publishes.
        :param options: the keys of :class:`BrokerOptions`, over the settings file's.
        :raises InheritedLoopError: in a process forked from one whose bridge (or other
            network) ran: that bridge is the parent's (see :meth:`Outbox.forked
            <berrymq_nats.outbox.Outbox.forked>`), and no new one can start here.
        """
        merged = {k: v for k, v in self.settings.items() if k != "servers"}
        merged["connect_timeout"] = self.timeout
        credentials = merged.get("credentials")
        if isinstance(credentials, str):
            # a relative path in the settings file is relative to that file's folder
            merged["credentials"] = self.bus.plugins.settings.file_path(credentials)
        merged.update(options)
        if servers is None:
            servers = self.settings.get("servers")
            if not servers:
                raise ValueError(
                    "no NATS servers given: pass a URL or set servers in [berrymq.nats]"
                )
        opts = BrokerOptions.build(servers, merged)
        with self._lock:
            bridge = self.bridge
            forked = bridge.outbox.forked_error if bridge is not None else None
            if forked is not None:  # made in the parent, closed here or not: never usable
                raise InheritedLoopError(str(forked))
            if bridge is not None and not bridge.closed:
                if bridge.options.servers == opts.servers:
                    return bridge
                raise TransportError(
                    f"bus {self.bus.name} is already bridged to NATS at {bridge.address}; "
                    "close that bridge first"
                )
            # The loop first: in a process forked while it ran, InheritedLoopError before a
            # bridge is half made (its link the bus's forwarder, its messages sent nowhere).
            io_loop.loop  # noqa: B018 - started now if it was not
            bridge = self.bridge = NatsBridge(self.bus, opts, subscribe=subscribe)
            bridge.errors.in_background = not wait
        self.bus.track_connection(bridge)
        if wait and not bridge.wait_connected(opts.connect_timeout + 0.5):
            cause = bridge.down_reason
            bridge.close()
            raise ConnectionClosed(f"cannot connect to NATS at {bridge.address}: {cause}")
        return bridge

    def listen(self, address: str) -> str:
        """``init_connection("nats://...")``: join the bus to NATS; returns ``address``."""
        self.connect_broker(address)
        return address

    def interconnect(self, address: str, ttl: float) -> Connection:
        """``interconnect("nats://...")``: join the bus to NATS (``ttl`` is not used: the
        broker connection lives until closed)."""
        return self.connect_broker(address)

    def connect_oneway(self, address: str, ttl: float) -> Connection:
        """``connect_oneway("nats://...")``: publish what ``send`` sends and ask through
        NATS, subscribe to nothing."""
        return self.connect_broker(address, subscribe=False)

    def connect_via_queue(self, address: str, pattern: Identifier, ttl: float) -> Connection:
        raise TypeError(
            "connect_via_queue does not apply to NATS: join the broker with "
            "berrymq.connect_broker(url) and pull from Queue(pattern, shared=True)"
        )

    @property
    def connections(self) -> tuple[Connection, ...]:
        """The bridge while it is open (``/status`` lists it: :meth:`NatsBridge.status_row`);
        a closed bridge is forgotten, as the JSON-RPC transports forget closed connections."""
        bridge = self.bridge
        return () if bridge is None or bridge.closed else (bridge,)

    def status(self) -> str:
        bridge = self.bridge
        if bridge is None or bridge.closed:
            return "not connected (set servers in [berrymq.nats] or call berrymq.connect_broker)"
        return bridge.status()

    def flush(self, timeout: float | None = None) -> bool:
        """See :meth:`NatsBridge.flush`; True when there is no bridge."""
        bridge = self.bridge
        return True if bridge is None or bridge.closed else bridge.flush(timeout)

    def close(self) -> None:
        bridge = self.bridge
        if bridge is not None:
            bridge.close()

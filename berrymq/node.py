"""What a bus gains once a transport is used: links to peers, de-duplication, connections.

A bus makes its :class:`Node` on first need (a forwarder, a transport, a connection, a
stamped message); a bus with no peers has none and pays nothing for it. The bus's own
methods that hand over to its node are :class:`~berrymq._node_side.NodeSide`'s.

Cycle detection: a message leaving this node gets a ``uid``; one coming in is checked on
receipt only, against the node's :class:`~berrymq._uids.UidMemory`.

A forwarder that fails to take a message (its link failed a moment ago) costs that peer
the message: it is counted in ``bus.losses`` (``not forwarded: ConnectionClosed``) and
logged once per burst (see :mod:`berrymq._losses`); a full link's ``QueueFull`` is also
raised to the sender.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from berrymq._delivery import deliver_talk, forward_first, looping
from berrymq._hook_calls import one_line
from berrymq._losses import CLOSED_FIRST, FORWARD_FAILED, LOSSES
from berrymq._uids import UidMemory
from berrymq.errors import PluginError, QueueFull
from berrymq.fork_safe import ForkSafeLock
from berrymq.identifier import Identifier
from berrymq.message import Message, new_message
from berrymq.stats import stats_for

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.transports.base import Connection, Transport

__all__ = ["Forwarder", "Node", "Requester"]

logger = logging.getLogger("berrymq")

class Forwarder(Protocol):
    """Something the bus hands every non-local message to (one per linked peer)."""

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Send ``message`` on; ``reply_to`` is set for :func:`berrymq.talk` messages."""


@runtime_checkable
class Requester(Protocol):
    """A forwarder that can also carry :func:`berrymq.ask` requests to its peer.

    The bus asks every forwarder that is one (it has ``request``), each in a thread of
    its own; which forwarders are is noted once, when they are added.

    :attr keeps_deadline: (optional; False when absent) True when :meth:`request` returns
        or raises within its ``timeout`` whatever the peer does (give or take the moment
        an answer the peer makes at that timeout takes to come back, well within the
        asker's grace for it, ``berrymq.ask._KEPT_GRACE``). A lone such requester,
        with no local receiver to ask beside it, is asked in the asker's own thread: two
        thread hand-offs fewer per ``ask``.
    """

    def request(self, message: Message, timeout: float) -> list[Any]:
        """Deliver ``message`` to the peer's receivers and return their replies, as the
        peer's :meth:`Bus.ask_local <berrymq.Bus.ask_local>` returned them (a receiver
        that raised is a :class:`berrymq.ReplyError`). Raise
        :class:`berrymq.TransportError` (or ``TimeoutError``) when the peer cannot answer
        within ``timeout`` seconds."""


class Node:
    """The network side of one bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.routes = bus.routes
        #: the uids this node gives and those it has seen (cycle detection)
        self.uids = UidMemory()
        #: this node's next uid (no lock; bound here for the hot path of a send)
        self.new_uid = self.uids.new_uid
        #: whether a peer's uid is new here (see :meth:`UidMemory.first_sight`)
        self.first_sight = self.uids.first_sight
        self.lock = ForkSafeLock()
        #: set once closed: a message from a peer that comes after is counted as lost
        self.closed = False
        #: the links this bus's non-local messages go out through
        self.forwarders: tuple[Forwarder, ...] = ()
        #: the forwarders that are also :class:`Requester` (``ask`` reaches their peers)
        self.requesting: tuple[Requester, ...] = ()
        #: this bus's transports by URL scheme, made by their plugins on first use
        self.transports: dict[str, Transport] = {}
        #: open connections made from this bus
        self.connections: list[Connection] = []
        #: the connection made last, kept after it closed: an error can then say which
        #: connection closed and why, not only that none is open
        self.last_made: Connection | None = None
        #: what :meth:`close` is closing at this moment, ``(what, scheme)`` such as
        #: ``("transport", "tcp")``, else None: for a caller that waits for a close with a
        #: deadline (``berrymq serve``) to name what keeps it
        self.closing: tuple[str, str] | None = None

    # -- going out ---------------------------------------------------------------------

    def stamp(self, message: Message) -> Message:
        """``message`` with this node's next uid, unless it already has one."""
        if message[4] is not None:
            return message
        return new_message((message[0], message[1], message[2], message[3], self.new_uid()))

    def forward(self, message: Message, origin: Forwarder | None,
                reply_to: Identifier | None = None) -> None:
        """Hand ``message`` to every forwarder but the one it came in through.

        A full outgoing buffer's :class:`QueueFull` is raised after every other forwarder
        had the message; any other failure of one peer does not stop the rest. Either way
        the message that did not go is counted in ``bus.losses`` (reason ``not forwarded:
        ERROR-TYPE``); a failure that is not raised is also logged, once per burst.
        """
        if message[4] is None:
            message = self.stamp(message)
        refused: QueueFull | None = None
        for forwarder in self.forwarders:
            if forwarder is not origin:
                try:
                    forwarder.forward(message, reply_to)
                except Exception as exc:  # noqa: BLE001 - one dead peer must not stop the rest
                    kind = type(exc).__name__
                    if isinstance(exc, QueueFull):
                        refused, kind = exc, "QueueFull"  # whatever its subclass
                    self.bus.state(LOSSES).add(FORWARD_FAILED.format(kind), logging.ERROR,
                                               "could not forward %s through %r: %s", message[0],
                                               forwarder, exc)
        if refused is not None:
            refused.not_forwarded = True  # counted above: not to be counted again
            try:
                raise refused
            finally:
                refused = None  # this frame, in its traceback, must not hold it (see raise_errors)

    def wants(self, ident: Identifier) -> bool:
        """Whether any forwarder may carry a message of ``ident`` somewhere it matters.

        A forwarder with a ``follows(ident)`` method (an in-process link, which sees its
        peer) can say no; any other is taken to want everything. A route built with no
        forwarder wanting its identifier sends as if the bus had no peers, until the
        forwarders change or a peer's watcher refreshes it.
        """
        for forwarder in self.forwarders:
            follows = getattr(forwarder, "follows", None)
            if follows is None or follows(ident):
                return True
        return False

    def requesters(self) -> list[Requester]:
        """The forwarders that can also carry ``ask`` requests."""
        return list(self.requesting)

    # -- coming in ---------------------------------------------------------------------

    def receive(self, message: Message, origin: Forwarder | None = None,
                reply_to: Identifier | None = None) -> bool:
        """See :meth:`Bus.receive <berrymq.Bus.receive>`."""
        ident = message[0]
        if self.closed:
            self.bus.state(LOSSES).add(CLOSED_FIRST, logging.WARNING, "bus %s closed before "
                                       "message %s from a peer was delivered", self.bus.name, ident)
            return True
        if reply_to is None:
            # Nobody here wants it and there is nowhere to pass it on: done, at the cost
            # of two look-ups (the common case of a peer that follows other things).
            forwarders = self.forwarders
            if not forwarders or (forwarders[0] is origin and len(forwarders) == 1):
                cached = self.routes.get(ident.text)
                if cached is not None and not cached[1] and not self.bus.taps:
                    return True
        uid = message[4]
        if uid is not None and not self.first_sight(uid):
            stats_for(self.bus).duplicate()  # came back round a cycle: /status counts it
            return False
        bus = self.bus
        hops = message[3] + 1
        if looping(bus, ident, hops):
            return False
        message = new_message((ident, message[1], message[2], hops, uid))
        if reply_to is not None:
            deliver_talk(bus, message, reply_to, forward_first(bus, message, origin, reply_to),
                         from_peer=True)
            return True
        bus.dispatch(message, bus.index.lookup(ident, from_peer=True), origin)
        return True

    # -- bookkeeping -------------------------------------------------------------------

    def add_forwarder(self, forwarder: Forwarder) -> None:
        with self.lock:
            if forwarder not in self.forwarders:
                self.forwarders = (*self.forwarders, forwarder)
                if isinstance(forwarder, Requester):
                    self.requesting = (*self.requesting, forwarder)

    def remove_forwarder(self, forwarder: Forwarder) -> None:
        gone: object = forwarder
        with self.lock:
            self.forwarders = tuple(f for f in self.forwarders if f is not gone)
            self.requesting = tuple(f for f in self.requesting if f is not gone)

    def track(self, connection: Connection) -> None:
        with self.lock:
            self.connections.append(connection)
            self.last_made = connection

    def untrack(self, connection: Connection) -> None:
        with self.lock:
            if connection in self.connections:
                self.connections.remove(connection)

    def close(self) -> PluginError | None:
        """Close every connection, then every transport (each delivers what it took from
        its peers before it returns, within a bound); what comes in later is counted as
        lost (:data:`~berrymq._losses.CLOSED_FIRST`).

        One that raises does not keep the others open: each failure is logged (error, on
        the ``berrymq`` logger) as the :class:`~berrymq.PluginError` naming the plugin
        that provides it, and the first is returned, for :meth:`Bus.close
        <berrymq.Bus.close>` to raise once the rest of the bus is closed too."""
        first: PluginError | None = None
        for connection in list(self.connections):
            failure = self._close_one(connection, "connection", _scheme_of(connection))
            first = first or failure
        self.connections.clear()
        for scheme, transport in list(self.transports.items()):
            failure = self._close_one(transport, "transport", scheme)
            first = first or failure
        self.transports.clear()
        self.closed = True
        return first

    def _close_one(self, closing: Connection | Transport, what: str,
                   scheme: str) -> PluginError | None:
        """Close ``closing`` (a ``what`` of ``scheme``); what it raises is the
        :class:`PluginError` naming its plugin, logged and returned."""
        self.closing = (what, scheme)
        try:
            closing.close()
        except Exception as exc:  # one plugin's failure must not stop the rest: logged
            failure = _close_failure(self.bus, closing, what, scheme, exc)
            logger.error("bus %s: %s", self.bus.name, failure, exc_info=exc)
            return failure
        finally:
            self.closing = None
        return None


def _scheme_of(connection: Connection) -> str:
    """The URL scheme of ``connection``'s peer address, or ``"?"``."""
    try:
        return urlsplit(str(getattr(connection, "address", ""))).scheme.lower() or "?"
    except ValueError:
        return "?"


def _close_failure(bus: Bus, closing: object, what: str, scheme: str,
                  exc: Exception) -> PluginError:
    """The error of a ``what`` (``"connection"``, ``"transport"``) of ``scheme`` whose
    ``close()`` raised ``exc``: it names the plugin that provides the scheme, and its
    distribution when known."""
    try:
        plugins = bus.plugins
        plugin = plugins.provider(scheme)
        origin = plugins.origin(plugin)
    except Exception:  # noqa: BLE001 - a host that cannot load names no plugin
        plugin, origin = scheme, ""
    address = getattr(closing, "address", None)
    if address is not None:
        what = f"{what} to {address}"
    error = PluginError(
        f"plugin {plugin!r}{origin}: its {scheme}:// {what} raised "
        f"{type(exc).__name__} in close(): {one_line(exc)}; the bus's other connections and "
        f"transports were closed", plugin)
    error.__cause__ = exc
    return error

"""The bridge's status line, as ``berrymq plugins`` and a node's ``/status`` show it, and
its row among the node's ``connections``.

One line that says whether the bridge works and what it holds: its state, the server it
is connected to, its subscriptions, what waits in the disconnect buffer, the peers it
knows, its reconnections, what it lost (with the reasons), and the last error while it
is not connected. Made from the bridge's public state only.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from berrymq.transports.base import ConnectionRow
from berrymq.transports.styles import LinkConnection
from berrymq_nats.losses import OUTGOING, PUBLISH_DENIED

if TYPE_CHECKING:
    from berrymq_nats.bridge import NatsBridge

__all__ = ["status_line", "status_row"]


def status_line(bridge: NatsBridge) -> str:
    """One line: the state, the server, subscriptions, buffered and lost messages."""
    parts = [bridge.state]
    server = bridge.server
    if server:
        parts.append(f"server {server}")
    following = bridge.following
    parts.append(f"{len(following.plain)} subjects, {len(following.queued)} queue-group "
                 "subscriptions")
    held, held_bytes = bridge.outbox.held
    options = bridge.options
    parts.append(f"buffered {held}/{options.buffer_limit} while disconnected "
                 f"({held_bytes}/{options.buffer_bytes} bytes)")
    parts.append(f"{len(bridge.asking.peers)} peers")
    if bridge.reconnects:
        parts.append(f"{bridge.reconnects} reconnects")
    lost = bridge.losses.summary()
    if lost:
        parts.append(lost)
    if bridge.last_error and bridge.state != "connected":
        parts.append(f"last error: {bridge.last_error}")
    return "; ".join(parts)


def status_row(bridge: NatsBridge) -> ConnectionRow:
    """The bridge as a node's ``/status`` lists it among its ``connections`` (see
    :meth:`Connection.status_row <berrymq.transports.base.Connection.status_row>`):
    scheme ``nats``, its servers' address, its style (``interconnect``, or ``oneway``
    for a bridge that only publishes), ``pending`` the messages waiting to be
    published (the disconnect buffer, and what waits for the I/O thread), ``sent``
    those handed to the NATS client and not counted lost since, ``lost`` those lost
    on their way out (in flight when the connection dropped, not sent at close, refused
    by the client), ``refused`` those the server's permissions denied (among ``sent``),
    and ``state``: ``connecting``, ``connected``, ``reconnecting``, ``failed`` or
    ``closed``."""
    counts = bridge.losses.snapshot()
    state = "closed" if bridge.closed else bridge.state.split(maxsplit=1)[0].rstrip(":")
    return dataclasses.replace(  # the address, style and age as every connection's
        LinkConnection.status_row(bridge), scheme="nats", pending=bridge.outbox.waiting,
        sent=bridge.outbox.sent, lost=sum(counts.get(reason, 0) for reason in OUTGOING),
        refused=counts.get(PUBLISH_DENIED, 0), state=state)

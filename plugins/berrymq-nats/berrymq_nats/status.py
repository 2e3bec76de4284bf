"""The bridge's status line, as ``berrymq plugins`` and a node's ``/status`` show it.

One line that says whether the bridge works and what it holds: its state, the server it
is connected to, its subscriptions, what waits in the disconnect buffer, the peers it
knows, its reconnections, what it lost (with the reasons), and the last error while it
is not connected. Made from the bridge's public state only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berrymq_nats.bridge import NatsBridge

__all__ = ["status_line"]


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

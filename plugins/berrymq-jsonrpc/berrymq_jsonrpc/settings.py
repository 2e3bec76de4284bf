"""The settings of the JSON-RPC transports: each transport plugin (``jsonrpc-tcp``,
``jsonrpc-http``) has a table of its own in the settings file, and every table takes these
(:func:`declare_settings`); :class:`~berrymq_jsonrpc.transport.RemoteTransport` reads them.

``host``
    the host a server binds when the caller names none (``berrymq serve`` reads it as
    ``transport.default_host``; default 127.0.0.1).
``secret``
    the shared secret; required to serve a non-loopback address; sent in every request.
    Also read from the environment variable ``BERRYMQ_SECRET``.
``max_size``
    the largest request accepted and sent, in bytes (default 1 MiB).
``timeout``
    seconds a client waits to connect and for a reply (default 10).
``read_timeout``
    seconds a server waits for the rest of a started request (default 30).
``queue_size``
    the bound of each style-03 queue kept for a client (default 10 000).
``max_get_wait``
    the cap of a blocking ``get`` on the server, in seconds (default 30).
``max_waiting``
    how many requests that may wait (``ask``, a blocking ``get``) run at once on one TCP
    connection (default 16); one more is answered *Limit reached* at once, and the
    requests behind it are read and answered as usual.
``names``
    more host names the node answers to in the HTTP ``Host`` header (status pages and
    JSON-RPC POSTs), besides the address it is bound to, ``localhost``, ``127.0.0.1`` and
    ``[::1]``.
``max_connections``, ``max_connections_per_client``
    the most connections the node's servers keep open at once, in all and from one client
    address (default 10 000 and 6 000); one more is answered once and closed.
``max_sessions``
    the most sessions (tokens) open at once (default 10 000).
``max_queued_bytes``
    the most bytes (messages as JSON) held at once in all the node's ``connect_via_queue``
    queues (default 256 MiB); a message over it is refused like one for a full queue.
``callback_hosts``
    the hosts and CIDR blocks ``interconnect`` may make the node call back (default:
    loopback addresses only).
``outbox_size``, ``outbox_bytes``, ``outbox_wait``
    the bounds of each connection's outbox, the messages waiting to be sent to one peer:
    in messages (default 2 000) and in bytes of message text (default 64 MiB); a sender
    past either waits up to ``outbox_wait`` seconds (default 10) for room, then gets
    :class:`berrymq.QueueFull` naming the setting. Nothing waiting is dropped to make room.
``liveness_interval``
    how often, in seconds, the node checks that the peers of its interconnections are
    still there (default 5): an HTTP peer that is gone has its session closed then, not
    only at the next message or at its ttl.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from berrymq.registries import SettingsSchema

__all__ = ["DEFAULT_TIMEOUT", "SETTINGS", "declare_settings", "read_number"]

#: Seconds a client waits to connect and for a reply (setting ``timeout``), and a sender
#: for room in a full outbox (``outbox_wait``).
DEFAULT_TIMEOUT = 10.0

#: Each setting and the types its value may have.
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "secret": str,
    "max_size": int,
    "timeout": (int, float),
    "read_timeout": (int, float),
    "queue_size": int,
    "max_get_wait": (int, float),
    "max_waiting": int,
    "names": list,
    "max_connections": int,
    "max_connections_per_client": int,
    "max_sessions": int,
    "callback_hosts": list,
    "liveness_interval": (int, float),
    "max_queued_bytes": int,
    "outbox_size": int,
    "outbox_bytes": int,
    "outbox_wait": (int, float),
}


def declare_settings(schema: SettingsSchema, plugin: str) -> None:
    """Declare the settings table every JSON-RPC transport plugin accepts."""
    schema.add(plugin, **SETTINGS)


def read_number(settings: Mapping[str, Any], name: str, default: float, plugin: str) -> float:
    """The setting ``name`` of ``plugin``'s table, a positive number; ``default`` when it
    is not set; ValueError naming the setting and the plugin otherwise."""
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"setting {name} of plugin {plugin} must be a positive number, "
                         f"got {value!r}")
    return value

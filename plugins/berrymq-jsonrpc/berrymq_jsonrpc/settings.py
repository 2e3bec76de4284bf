"""The settings of the JSON-RPC transports: each transport plugin (``jsonrpc-tcp``,
``jsonrpc-http``) has a table of its own in the settings file, and every table takes these
(:func:`declare_settings`); :class:`~berrymq_jsonrpc.transport.RemoteTransport` reads them.

``host``
    the host a server binds when the caller names none (``berrymq serve`` reads it as
    ``transport.default_host``; default 127.0.0.1): a host name or an address, not empty.
``secret``
    the shared secret; required to serve a non-loopback address; sent in every request.
    Also read from the environment variable ``BERRYMQ_SECRET``. At most
    :data:`LONGEST_SECRET` bytes as it is written in a request.
``max_size``
    the largest request accepted and sent, in bytes (default 1 MiB; at least
    :data:`SMALLEST_MAX_SIZE`, as a message may take it less 512 bytes).
``timeout``
    seconds a client waits to connect and for a reply (default 10).
``read_timeout``
    seconds a server waits for the rest of a started request (default 30).
``queue_size``
    the bound of each style-03 queue kept for a client (default 10 000).
``max_get_wait``
    the cap of a blocking ``get`` on the server, in seconds (default 30).
``max_waiting``
    how many requests that may wait (``ask``, a blocking ``get``, each such member of a
    batch) run at once on one connection (default 16); one more is answered *Limit
    reached* at once, and the requests behind it are read and answered as usual. An HTTP
    connection carries one request at a time, so there the cap is on one batch: a batch
    with more such members is refused whole (each one waits on the node, and one body of
    ``max_size`` holds thousands of them).
``names``
    more host names (strings, not empty) the node answers to in the HTTP ``Host`` header (status pages and
    JSON-RPC POSTs), besides the address it is bound to, ``localhost``, ``127.0.0.1`` and
    ``[::1]``.
``max_connections``, ``max_connections_per_client``
    the most connections the node's servers keep open at once, in all and from one client
    address (default 10 000 and 6 000); one more is answered once and closed.
``max_sessions``
    the most sessions (tokens) open at once (default 10 000).
``max_interconnects_per_connection`` (TCP only: :data:`STREAM_SETTINGS`)
    the most ``interconnect`` sessions whose messages the node sends back over the
    connection the peer opened them on (default 16); one more is answered *Limit reached*.
    Each such link may hold a request of up to ``max_size`` on the connection, so this
    bounds what a peer that stops reading one connection makes the node hold. Over HTTP
    the node never sends over a connection a client opened (it calls the client's
    server back on a connection of its own), so the ``jsonrpc-http`` table does not take
    the key.
``max_ttl``
    the longest ``ttl`` a session may ask for, in seconds (default 86 400, a day).
``max_queued_bytes``
    the most bytes (messages as JSON) held at once in all the node's ``connect_via_queue``
    queues (default 256 MiB); a message over it is refused like one for a full queue.
``max_reading_bytes``
    the most bytes of requests the node holds while it reads them, all connections
    together (default 64 MiB): a request over 64 KiB takes a share of it while it is read
    (:mod:`berrymq_jsonrpc.reading`); a connection finding no room is not read until
    there is.
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

import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import Any

from berrymq.registries import SettingsSchema
from berrymq.settings import Settings
from berrymq.timeouts import too_long
from berrymq.wire import byte_size, dumps
from berrymq_jsonrpc.addresses import netloc, split_url
from berrymq_jsonrpc.sizes import ENVELOPE

__all__ = ["DEFAULT_TIMEOUT", "LONGEST_SECRET", "SETTINGS", "SMALLEST_MAX_SIZE", "STREAM_SETTINGS",
           "cidr_blocks", "secret_check",
           "declare_settings", "host_address", "host_names", "max_size_check", "number_check",
           "positive_number", "positive_seconds", "read_hosts", "read_number"]

#: Seconds a client waits to connect and for a reply (setting ``timeout``), and a sender
#: for room in a full outbox (``outbox_wait``).
DEFAULT_TIMEOUT = 10.0

#: The smallest ``max_size``: a message may take ``max_size`` less the 512 bytes kept for
#: the request around it (:mod:`berrymq_jsonrpc.sizes`), so this leaves it 512 bytes.
SMALLEST_MAX_SIZE = 2 * ENVELOPE

#: The longest ``secret``, in bytes as a request writes it (a JSON string, escapes
#: included, without its quotes): it travels in every request, in the ENVELOPE bytes kept
#: for what is around a message, beside the method, token, id and hops (about 170 bytes).
LONGEST_SECRET = 256

#: Each setting and the types its value may have.
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "secret": str,
    "max_size": int,
    "timeout": (int, float),
    "read_timeout": (int, float),
    "queue_size": int,
    "max_get_wait": (int, float),
    "names": list,
    "max_connections": int,
    "max_connections_per_client": int,
    "max_sessions": int,
    "max_ttl": (int, float),
    "callback_hosts": list,
    "liveness_interval": (int, float),
    "max_queued_bytes": int,
    "outbox_size": int,
    "outbox_bytes": int,
    "outbox_wait": (int, float),
    "max_waiting": int,
    "max_reading_bytes": int,
}

#: The settings only a transport whose connections are streams of requests takes (TCP):
#: requests both ways (the node sends an interconnection's messages back over the
#: connection it came on).
STREAM_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "max_interconnects_per_connection": int,
}


def declare_settings(schema: SettingsSchema, plugin: str, *, stream: bool = False) -> None:
    """Declare the settings table every JSON-RPC transport plugin accepts: the keys, their
    types, and the checks of their values (every number is positive, ``host`` is a host,
    ``callback_hosts`` holds no bad CIDR block), so that a bad value is named when the plugins load. With
    ``stream`` (a transport whose connections carry many requests at once, both ways),
    :data:`STREAM_SETTINGS` too."""
    keys = {**SETTINGS, **STREAM_SETTINGS} if stream else SETTINGS
    schema.add(plugin, **keys)
    for name, kind in keys.items():
        if kind is int or kind == (int, float):
            schema.add_check(plugin, name, number_check(kind, name))
    schema.add_check(plugin, "secret", secret_check)
    schema.add_check(plugin, "host", host_address)
    schema.add_check(plugin, "callback_hosts", cidr_blocks)
    schema.add_check(plugin, "names", host_names)


def secret_check(value: Any) -> str | None:
    """The problem with ``secret``: a string of at most :data:`LONGEST_SECRET` bytes as a
    request writes it. A longer one left a message of the largest size no room in its
    request: the peer refused the request as over max_size, and the link failed."""
    if not isinstance(value, str):
        return f"must be a string, got {value!r}"
    size = byte_size(dumps(value)) - len('""')
    if size > LONGEST_SECRET:
        return (f"is {size} bytes as a request writes it, over the {LONGEST_SECRET} a secret "
                f"may take (it travels in the {ENVELOPE} bytes of every request kept for what "
                "is around a message)")
    return None


def host_address(value: Any) -> str | None:
    """The problem with ``host``: it must make a ``scheme://host:port`` address (an empty
    one passed, and ``berrymq serve`` then failed on the address it made of it)."""
    problem = f"must be a host name or address, such as 127.0.0.1, got {value!r}"
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        return problem
    try:
        split_url(f"tcp://{netloc(value, 1)}", "tcp")
    except ValueError:
        return problem
    return None


def positive_number(value: Any) -> str | None:
    """The problem with a number setting's ``value`` (see :func:`declare_settings`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        return f"must be a positive number, got {value!r}"
    return None


def number_check(kind: type | tuple[type, ...], name: str = "") -> Callable[[Any], str | None]:
    """The check of the number setting ``name`` whose types are ``kind`` (as in
    :data:`SETTINGS`): seconds when a float is allowed, else a count; ``max_size`` is a
    count with a floor (:func:`max_size_check`)."""
    if name == "max_size":
        return max_size_check
    return positive_seconds if kind == (int, float) else positive_number


def max_size_check(value: Any) -> str | None:
    """The problem with ``max_size``: a count of at least :data:`SMALLEST_MAX_SIZE` (with
    ``max_size = 512`` no message had room, and every send was refused as too large)."""
    problem = positive_number(value)
    if problem is None and value < SMALLEST_MAX_SIZE:
        problem = (f"must be at least {SMALLEST_MAX_SIZE} bytes (a message may take "
                   f"max_size less the {ENVELOPE} bytes of the request around it), "
                   f"got {value!r}")
    return problem


def positive_seconds(value: Any) -> str | None:
    """The problem with a setting of seconds: a positive number, and at most
    :data:`~berrymq.timeouts.LONGEST_WAIT` (:func:`~berrymq.timeouts.too_long`), past which
    a wait for it raises OverflowError deep inside (``timeout = 1e10`` did, at the first
    call)."""
    problem = positive_number(value)
    bound = None if problem is not None else too_long(value)
    return problem if bound is None else f"must be {bound}, got {value!r}"


def host_names(hosts: Any) -> str | None:
    """The problem with ``names`` (and ``callback_hosts``): a list of host names, each a
    string, not empty (a number or ``""`` was taken as its ``str()``)."""
    if not isinstance(hosts, list):
        return f"must be a list of host names, got {hosts!r}"
    for entry in hosts:
        if not isinstance(entry, str) or not entry.strip():
            return f"holds {entry!r}: each entry must be a host name (a string, not empty)"
    return None


def cidr_blocks(hosts: Any) -> str | None:
    """The problem with ``callback_hosts``: host names, addresses and CIDR blocks (each a
    string, not empty), where an entry with a ``/`` that is no CIDR block is refused
    rather than taken for a host name."""
    problem = host_names(hosts)
    if problem is not None:
        return problem
    for entry in hosts:
        text = entry.strip().strip("[]")
        if "/" in text:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                return f"holds {entry!r}, which is not a CIDR block (such as 10.0.0.0/8)"
    return None


def read_number(settings: Mapping[str, Any], name: str, default: float, plugin: str,
                source: Settings | None = None) -> float:
    """The setting ``name`` of ``plugin``'s table, a positive number; ``default`` when it
    is not set. Otherwise a :class:`~berrymq.SettingsError` naming the setting (with the
    file and line of ``source``, the settings the table came from), or a ValueError
    without a ``source`` (settings given in code, not read from a file)."""
    value = settings.get(name, default)
    problem = number_check(SETTINGS.get(name, int), name)(value)
    if problem is not None:
        raise _invalid(f"{plugin}.{name} {problem}", name, plugin, source)
    number: float = value  # (an int or a float, as given)
    return number


def read_hosts(settings: Mapping[str, Any], name: str, plugin: str,
               source: Settings | None = None,
               check: Callable[[Any], str | None] = host_names) -> list[str] | None:
    """The setting ``name``, a list of hosts checked by ``check`` (``names``:
    :func:`host_names`; ``callback_hosts``: :func:`cidr_blocks`); None when it is not
    set. A bad value is an error as for :func:`read_number`."""
    hosts = settings.get(name)
    if hosts is None:
        return None
    problem = check(hosts)
    if problem is not None:
        raise _invalid(f"{plugin}.{name} {problem}", name, plugin, source)
    return list(hosts)


def _invalid(problem: str, name: str, plugin: str, source: Settings | None) -> Exception:
    return ValueError(problem) if source is None else source.error(problem, name, plugin)

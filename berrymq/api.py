"""The module-level API: the seed's names, each a thin layer over the default bus."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

from berrymq.ask import ask_async_on
from berrymq.bus import Guard, Receiver, Subscription
from berrymq.default import holder
from berrymq.errors import ConnectionClosed
from berrymq.identifier import Identifier, parse
from berrymq.message import Message
from berrymq.receivers.functions import FUNCTIONS
from berrymq.transports.base import Address, Connection, normalize_address
from berrymq.transports.places import place_of, same_place

__all__ = [
    "ask",
    "ask_async",
    "close_connection",
    "connect_broker",
    "connect_oneway",
    "connect_via_queue",
    "following_function",
    "get",
    "get_nowait",
    "init_connection",
    "interconnect",
    "join",
    "regist_function",
    "regist_method",
    "send_message",
    "set_multiplicity",
    "talk",
    "twitter",
    "unfollow",
]

logger = logging.getLogger("berrymq")

F = TypeVar("F")


# -- sending -------------------------------------------------------------------------------


#: Send a message: every receiver whose pattern matches ``identifier`` gets it. Without a
#: worker pool (:func:`set_multiplicity`) the receivers have run, in registration order
#: and in this thread, when ``twitter`` returns. (A bound method of the default-bus
#: holder, so that sending costs no extra call; see :func:`berrymq.bus.send`.)
twitter = holder.twitter


def talk(identifier: str | Identifier, callback_identifier: str | Identifier, /,
         *args: Any, **kwargs: Any) -> None:
    """Send like :func:`twitter`, then send each receiver's non-None return value to
    ``callback_identifier`` as ``args[0]``."""
    holder.bus.talk(identifier, callback_identifier, *args, **kwargs)


def ask(identifier: str | Identifier, /, *args: Any, timeout: float = 5.0,
        **kwargs: Any) -> list[Any]:
    """Send a request and return every matching receiver's reply, locally and from
    connected nodes (see :meth:`Bus.ask <berrymq.Bus.ask>` for the order and errors)."""
    return holder.bus.ask(identifier, *args, timeout=timeout, **kwargs)


async def ask_async(identifier: str | Identifier, /, *args: Any, timeout: float = 5.0,
                    **kwargs: Any) -> list[Any]:
    """Like :func:`ask`, awaited: the replies of every matching receiver.

    The request runs in a worker thread, so neither the receivers nor the wait for
    connected nodes block the event loop. Plain receivers therefore run in that worker
    thread; ``async def`` receivers run on their own loops (this one included) and their
    return values are awaited, up to ``timeout`` seconds. The order and the error entries
    are those of :func:`ask`.
    """
    return await ask_async_on(holder.bus, identifier, *args, timeout=timeout, **kwargs)


def set_multiplicity(n: int) -> None:
    """Run receivers on a pool of ``n`` threads (``twitter`` returns at once); 0 runs them
    in the sender's thread again. A negative ``n`` raises :class:`ValueError`, and so does
    one the system cannot start as many threads for (the pool is then left as it was)."""
    holder.bus.set_multiplicity(n)


def join(timeout: float | None = None) -> bool:
    """Wait until the worker pool has delivered what was sent so far (see
    :meth:`Bus.join <berrymq.Bus.join>`); :class:`RuntimeError` from a receiver running
    in the pool, which would wait for itself."""
    return holder.bus.join(timeout)


# -- receivers -----------------------------------------------------------------------------


def following_function(pattern: str, guard_condition: Guard | None = None, *,
                       weak: bool = True) -> Callable[[F], F]:
    """Decorator: the function receives every message matching ``pattern``.

    Returns the function unchanged. Works on functions, ``@staticmethod`` and
    ``@classmethod`` (write ``@following_function`` above them). ``guard_condition(message)``
    returning false skips the function for that message. The function is held by weak
    reference unless ``weak=False`` (use that for lambdas and closures).
    """
    ident = parse(pattern)

    def decorate(function: F) -> F:
        bus = holder.bus
        bus.plugins.receiver("functions")  # says which plugin to enable if it is off
        return FUNCTIONS.decorate(bus, ident, function, guard_condition, weak=weak)

    return decorate


def regist_function(pattern: str, function: Receiver, guard_condition: Guard | None = None,
                    *, weak: bool = True) -> Subscription:
    """Register ``function`` for ``pattern`` at run time; ``cancel()`` the handle to undo.

    Each registration is a subscription of its own: a function registered twice for
    matching patterns is called twice per message (unlike blinker and pyee, which keep
    one). A receiver that cannot be called with one argument, the message, is refused
    with a ``TypeError`` here."""
    bus = holder.bus
    bus.plugins.receiver("functions")  # says which plugin to enable if it is off
    return FUNCTIONS.follow(bus, pattern, function, guard_condition, weak=weak)


def regist_method(pattern: str, method: Receiver, guard_condition: Guard | None = None,
                  *, weak: bool = True) -> Subscription:
    """Register a bound method for ``pattern``; held through its object, weakly by default."""
    if (owner := getattr(method, "__self__", None)) is None or inspect.ismodule(owner):
        raise TypeError(f"regist_method needs a bound method, got {method!r}")
    return regist_function(pattern, method, guard_condition, weak=weak)


def unfollow(target: object) -> int:
    """Stop a function, a bound method, an object (all its methods) or a class (all its
    instances, and the class methods and static methods it defines) from following
    anything; returns how many subscriptions were cancelled."""
    return holder.bus.unfollow(target)


# -- between processes -----------------------------------------------------------------------

class _DefaultTtl(float):
    """The ``ttl`` of a connection whose caller named none: 1000 seconds, or the node's
    cap (its ``max_ttl``) where that is lower, as a client that leaves ``ttl`` out of the
    request gets. A transport tells it from a 1000 the caller gave by identity
    (``ttl is DEFAULT_TTL``): a ttl the caller chose over the node's cap is refused."""

    __slots__ = ()

    def __copy__(self) -> _DefaultTtl:
        return self  # one default, told by identity

    def __deepcopy__(self, memo: object) -> _DefaultTtl:
        return self

    def __reduce__(self) -> str:
        return "DEFAULT_TTL"  # unpickled as berrymq.api.DEFAULT_TTL


#: See :class:`_DefaultTtl`.
DEFAULT_TTL: float = _DefaultTtl(1000)


def init_connection(addr: Address = ("localhost", 0)) -> Address:
    """Serve the default bus at ``addr`` so that other processes can connect.

    ``addr`` is a ``(host, port)`` tuple (JSON-RPC over HTTP) or a URL whose scheme picks
    the transport plugin (``http://``, ``tcp://``, ``local://``). Port 0 picks a free port.
    Returns the bound address, in the form it was given: a tuple for a tuple, a URL for a
    URL. Servers listen on loopback unless told otherwise; another address needs the
    plugin's ``secret`` setting. A scheme whose plugin is missing or disabled raises
    :class:`berrymq.PluginNotAvailable` naming the plugin.
    """
    scheme, url = normalize_address(addr)
    bound = holder.bus.transport(scheme).listen(url)
    if isinstance(addr, tuple):
        host, _, port = bound.split("://", 1)[1].rpartition(":")
        return host.strip("[]"), int(port.rstrip("/"))
    return bound


def _connect(addr: Address, style: str, ttl: float, pattern: str | None = None) -> Connection:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf:
        raise ValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    scheme, url = normalize_address(addr)
    bus = holder.bus
    transport = bus.transport(scheme)
    if style == "interconnect":
        connection = transport.interconnect(url, ttl)
    elif style == "oneway":
        connection = transport.connect_oneway(url, ttl)
    else:
        assert pattern is not None
        connection = transport.connect_via_queue(url, parse(pattern), ttl)
    bus.track_connection(connection)
    return connection


def interconnect(addr: Address, ttl: float = DEFAULT_TTL) -> Connection:
    """Style 01: forward every non-local message both ways with the node at ``addr``.

    Without ``ttl``, 1000 seconds, or a node's ``max_ttl`` where that is lower (so for
    each style); a ``ttl`` given over a node's ``max_ttl`` is refused."""
    return _connect(addr, "interconnect", ttl)


def connect_oneway(addr: Address, ttl: float = DEFAULT_TTL) -> Connection:
    """Style 02: send to the node at ``addr`` with :func:`send_message`."""
    return _connect(addr, "oneway", ttl)


def connect_via_queue(addr: Address, pattern: str, ttl: float = DEFAULT_TTL) -> Connection:
    """Style 03: the node at ``addr`` keeps a queue of ``pattern`` for this process, pulled
    with :func:`get` and :func:`get_nowait`."""
    return _connect(addr, "queue", ttl, pattern)


def _client_connection(need_queue: bool = False) -> Connection:
    # Read the bus's list without copying it (this is on the path of every
    # send_message); a list read is atomic, and a connection closed meanwhile says so.
    bus = holder.bus
    node = bus.node  # None: this bus never connected
    connections = node.connections if node is not None else ()
    for index in range(len(connections) - 1, -1, -1):
        try:
            connection = connections[index]
        except IndexError:
            continue
        if not need_queue or connection.style == "queue":
            return connection
    how = "call connect_via_queue(addr, pattern)" if need_queue else "call connect_oneway(addr)"
    # once no connection is open, say which one closed last and why (its ``reason``)
    last = node.last_made if node is not None else None
    if (last is not None and getattr(last, "closed", False)
            and (not need_queue or last.style == "queue")):
        raise ConnectionClosed(f"connection to {last.address} is closed"
                               f"{getattr(last, 'reason', '')}; no other connection is open: "
                               f"{how} to open one")
    if need_queue:
        raise ConnectionClosed(f"no queue connection is open; {how}")
    raise ConnectionClosed(f"no connection is open; {how} first")


def send_message(identifier: str, /, *args: Any, **kwargs: Any) -> None:
    """Send one message to the node of the most recent connection (any style).

    The message is queued and sent from a background thread, coalesced with others sent
    in quick succession; closing the connection sends what is queued first. Raises
    :class:`berrymq.ConnectionClosed` when the connection is closed or its peer is gone,
    ``TypeError``/``ValueError`` when JSON cannot hold the arguments (or the name is
    local: ``_`` names never leave the process) and :class:`berrymq.MessageTooLarge` over
    the size limit.
    """
    ident = parse(identifier)
    if ident.is_local:
        raise ValueError(f"{identifier!r} is a local identifier (its name starts with '_'); "
                         "local messages never leave the process")
    _client_connection().send(Message(ident, args, kwargs))


def flush(timeout: float | None = None) -> bool:
    """Wait until every message sent so far to other nodes (``send_message``, and what
    ``twitter`` forwarded to interconnected peers or a broker) has been handed to their
    receivers and queues; see :meth:`Bus.flush <berrymq.Bus.flush>`.

    Sending is fire-and-forget: ``send_message`` returns at once and the message goes out
    in a batch soon after. A program that sends and then checks what the other side did
    (as berryMQ 0.3's own two-process test does) calls ``flush`` in between. Returns False
    when ``timeout`` seconds passed first or when something sent since the last flush was
    lost; True otherwise. From a receiver running in the worker pool it raises
    :class:`RuntimeError` (it would wait for the pool, and so for itself): flush after
    the sending call instead, in the thread that sent.
    """
    return holder.bus.flush(timeout)


def get(block: bool = True, timeout: float | None = None) -> Message:
    """Pull the next message from the server-side queue of :func:`connect_via_queue`.

    The node answers within ``timeout`` (:class:`berrymq.Empty` if nothing came). A node
    that answers nothing at all (stopped, cut off) is given up on ``timeout`` plus the
    transport's ``timeout`` setting (10 s) later, with :class:`berrymq.TransportError`:
    a message the node took for this call in time is not dropped on its way back. Without
    a ``timeout`` each request waits at most the node's ``max_get_wait`` (30 s) and is
    asked again, so a node that stopped answering is given up on 40 s later."""
    return _client_connection(need_queue=True).get(block, timeout)


def get_nowait() -> Message:
    """Pull without waiting for a message; raises :class:`berrymq.Empty` when the queue
    is empty. The round trip to the node waits at most the transport's ``timeout``
    setting (10 s), as any call does."""
    return _client_connection(need_queue=True).get_nowait()


def close_connection(addr: Address | None = None) -> None:
    """Close the connections to ``addr``, or every connection when ``addr`` is None.

    An ``addr`` that no open connection leads to is logged (a warning naming the open
    ones): a connection that ended by itself is gone already, and a mistyped address
    would otherwise leave the connection open without a word."""
    bus = holder.bus
    wanted = None if addr is None else place_of(normalize_address(addr)[1])
    open_now = bus.connections()
    closed = 0
    for connection in open_now:
        if wanted is None or same_place(wanted, place_of(connection.address)):
            connection.close()
            bus.untrack_connection(connection)
            closed += 1
    if addr is not None and not closed:
        logger.warning("close_connection(%r): no open connection leads there (open: %s)",
                       addr, ", ".join(c.address for c in open_now) or "none")


def connect_broker(url: str | list[str], /, **options: Any) -> Connection:
    """Join the default bus to a broker (``nats://host:port``; a list or a comma-separated
    string names the servers of a cluster), so that every process joined to it shares
    one bus: non-local messages are published to the broker and matching messages from
    other processes reach local receivers and queues. ``options`` are the plugin's
    settings (for NATS: ``token``, ``user``, ``password``, ``credentials``,
    ``subject_prefix``, ``connect_timeout``, ``buffer_limit``, ...).

    Returns the connection; ``close()`` it (or :func:`close_connection`) to leave.
    Raises :class:`berrymq.PluginNotAvailable` naming the plugin to install when the
    scheme's plugin (``berrymq-nats`` for ``nats://``) is missing or disabled.
    """
    first = url[0] if isinstance(url, list) and url else url
    scheme, _ = normalize_address(first if isinstance(first, str) else str(first))
    transport = holder.bus.transport("nats" if scheme in ("tls", "ws", "wss") else scheme)
    connect = getattr(transport, "connect_broker", None)
    if connect is None:
        raise TypeError(
            f"{scheme}:// is not a broker; use interconnect({first!r}) to link two nodes"
        )
    connection: Connection = connect(url, **options)
    return connection

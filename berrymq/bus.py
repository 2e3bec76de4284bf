"""The bus: the object users hold, composed of an index, delivery, a pool and a node.

- :mod:`berrymq._index` files subscriptions and caches routes;
- :mod:`berrymq._subscribing` gives the bus its subscription methods (``subscribe``,
  ``unfollow``, ``route``, ...), which hand over to the index;
- :mod:`berrymq._delivery` runs receivers (:func:`~berrymq._delivery.deliver`);
- :mod:`berrymq._pool` runs them on worker threads instead, when asked to, and
  :mod:`berrymq._pooling` gives the bus its methods for that (``set_multiplicity``, ``join``);
- :mod:`berrymq.ask` gathers replies;
- :mod:`berrymq.node` exists once the bus has peers: forwarders, de-duplication,
  transports and connections;
- :mod:`berrymq.state` keeps per-bus state for the core and plugins (``bus.state(key)``);
- :mod:`berrymq._starting` gives the bus its start (settings applied, plugins joined).

A bus starts (its settings applied, its plugins' :func:`~berrymq.hookspecs.berrymq_start_bus`
called) when it is created, or, made with ``start=False``, when :meth:`Bus.start` is
called; never on the way of a message, and never under the bus's lock.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from berrymq._ask_local import ask_local as _ask_local
from berrymq._delivery import (
    BusOwner,
    deliver,
    deliver_talk,
    forward_first,
    looping,
    observe,
    raise_errors,
    run_here,
    send,
    with_refusal,
)
from berrymq._hops import hop_box
from berrymq._index import DIRECT, DISPATCH, FORWARD, CachedRoute, Index
from berrymq._losses import LOSSES
from berrymq._node_side import NodeSide
from berrymq._pending import sweep_closed_loops
from berrymq._pool import WorkerPool
from berrymq._pooling import Pooling
from berrymq._starting import Starting
from berrymq._subscribing import Subscribing
from berrymq.ask import ask as _ask
from berrymq.errors import BusClosed, ConnectionClosed
from berrymq.fork_safe import ForkSafeLock
from berrymq.identifier import Identifier, parse
from berrymq.message import Message, new_message
from berrymq.node import Node
from berrymq.plugins import PluginHost
from berrymq.settings import core_problem
from berrymq.state import BusState, StateKey
from berrymq.subscription import Guard, Receiver, Subscription
from berrymq.timeouts import seconds_left, wait_limit

if TYPE_CHECKING:
    from berrymq.transports.base import Forwarder

__all__ = ["DEFAULT_HOP_LIMIT", "Bus", "BusOwner", "Guard", "Receiver", "Subscription", "send"]

logger = logging.getLogger("berrymq")

DEFAULT_HOP_LIMIT = 32
T = TypeVar("T")


class Bus(Starting, Subscribing, NodeSide, Pooling):
    """Routes messages from senders to the receivers whose patterns match.

    The module-level API of :mod:`berrymq` works on one default bus; a program or a test
    can create its own, isolated one.

    :param raise_errors: when true, receivers' exceptions are raised from the sending call
        as an :class:`ExceptionGroup` after every receiver ran, instead of being logged.
    :param hop_limit: how many times a message may be handed on (receiver to receiver,
        node to node) before it is dropped with a warning, which cuts endless loops.
    :param multiplicity: the number of worker threads that run receivers; 0 runs them in
        the sender's thread.
    :param pool_queue_size: the tasks (a message for one receiver) that may wait for a
        worker; a sender waits for room, then gets :class:`~berrymq.QueueFull`.
    :param pool_queue_wait: how long, in seconds, a sender waits for that room.
    :param async_pending_limit: the messages one ``async def`` receiver may have handed
        over and not finished; a sender on its loop is refused at once beyond it
        (:class:`~berrymq.QueueFull`), one in another thread waits for room first.
    :param async_pending_wait: how long, in seconds, that sender waits.
    :param route_cache_size: the identifiers whose routes are kept (the one cached first
        goes first): sending costs a dictionary look-up for them, and each takes about 1-2
        KB (more for longer identifiers).
    :param plugins: the plugin host whose active plugins join this bus; the default is the
        process's host, configured by the settings file.
    :param start: start the bus now (apply the settings, let plugins join); with False,
        call :meth:`start` when ready.

    The core settings among these are checked as the settings file's keys of the same
    names (:func:`berrymq.settings.core_problem`): a ``TypeError`` or ``ValueError`` naming
    the argument, raised at once rather than when the value is first used.
    """

    def __init__(
        self,
        *,
        raise_errors: bool | None = None,
        hop_limit: int | None = None,
        multiplicity: int | None = None,
        pool_queue_size: int | None = None,
        pool_queue_wait: float | None = None,
        async_pending_limit: int | None = None,
        async_pending_wait: float | None = None,
        route_cache_size: int | None = None,
        plugins: PluginHost | None = None,
        name: str | None = None,
        start: bool = True,
    ) -> None:
        self.name = name or f"bus-{secrets.token_hex(4)}"
        #: This bus itself, so that :func:`send` reads ``owner.bus`` alike for a bus and
        #: for the default-bus holder.
        self.bus = self
        self.node_id = secrets.token_hex(8)
        self._plugins = plugins
        self._explicit = {
            "raise_errors": raise_errors, "hop_limit": hop_limit, "multiplicity": multiplicity,
            "pool_queue_size": pool_queue_size, "pool_queue_wait": pool_queue_wait,
            "async_pending_limit": async_pending_limit, "async_pending_wait": async_pending_wait,
            "route_cache_size": route_cache_size}
        for key, value in self._explicit.items():  # checked as the settings file's are
            problem = None if value is None else core_problem(key, value)
            if problem is not None:
                raise problem
        self.raise_errors = bool(raise_errors)
        self.hop_limit = DEFAULT_HOP_LIMIT if hop_limit is None else hop_limit
        self._lock = ForkSafeLock()  # the bus's own changes: pool, node, start, close
        # The bus's parts, public for the modules that make up the bus (delivery, ask,
        # the node, transports), not for users:
        #: the subscriptions, filed by pattern shape (:mod:`berrymq._index`)
        self.index = Index(self)
        #: the route cache, read by :func:`send` without a lock (see :mod:`berrymq._index`)
        self.routes: dict[object, CachedRoute] = self.index.routes
        #: the typed extension slot: per-bus state of the core and of plugins
        self.extensions = BusState(self)
        self.taps: tuple[Callable[..., Any], ...] = ()
        #: the network side (forwarders, uids, connections, transports); None until the
        #: bus gets a peer or a transport (:meth:`ensure_node`)
        self.node: Node | None = None
        #: the worker pool, or None: receivers run in the sender's thread
        self.pool: WorkerPool | None = None
        self._stopping: list[WorkerPool] = []  # pools being shut down (see _pooling)
        self._starter: int | None = None  # the thread that started it (None: not started)
        self._ready = threading.Event()  # set once start() has run the plugins' hooks
        #: what the start raised, if it failed (the bus then stays unstarted for good)
        self._start_failure: BaseException | None = None
        self._closed = False
        if multiplicity:
            self.set_multiplicity(multiplicity)
        if start:
            self.start()

    # -- life ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def refuse_if_closed(self, action: str) -> None:
        """:class:`~berrymq.BusClosed` for ``action`` once closed: nothing would stop it."""
        if self._closed:
            raise BusClosed(f"bus {self.name!r} is closed; cannot {action}")

    def close(self) -> None:
        """Stop the pool (its work done), close connections and transports, let plugins
        clean up, close the bus's :class:`~berrymq.Queue` objects (their consumers drain
        what is stored, then get :class:`~berrymq.QueueClosed`, and iteration ends; a
        pool's receiver waiting on one of them without a time limit, which the pool's stop
        would wait for, has it closed once nothing else is left for the pool: see
        :mod:`berrymq._blocked`); then take no new receivers, peers or threads (sending
        still works, and reaches nobody).

        A connection or transport whose ``close()`` raises does not stop the close: the
        others are closed, the plugins' close hooks run, the pool and the bus's state are
        closed; each such failure is logged (error, ``berrymq`` logger), and the first is
        then raised, as the :class:`~berrymq.PluginError` naming the plugin that provides
        it. The bus is closed either way. A second call does nothing and returns at once,
        even while the first is still closing in another thread (which may be a thread
        the first waits for, a worker of the pool say): the first call's return is the
        one that says the bus is closed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            node = self.node
        # The pool first: what its receivers send to other nodes meanwhile goes out
        # through connections still open (it went nowhere, uncounted); they may still
        # need per-bus state too (ask's threads). Messages from peers that come later
        # run in the delivery lane's thread, as on a bus without a pool.
        self.stop_pool()
        failure = node.close() if node is not None else None
        if self._starter is not None:
            self.plugins.close_bus(self)
        sweep_closed_loops()  # counted before the losses write their last line
        self.extensions.close()
        self.index.clear()
        if failure is not None:
            raise failure

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def state(self, key: StateKey[T]) -> T:
        """This bus's value for ``key`` (see :mod:`berrymq.state`), made on first use."""
        return self.extensions.get(key)

    # -- sending -------------------------------------------------------------------------

    # twitter = send, set below the class: one body for Bus.twitter and berrymq.twitter.
    twitter: Callable[..., None]

    def publish(self, message: Message, origin: Forwarder | None = None) -> None:
        """Hand an already-built message to connected nodes, then deliver it here.

        :param origin: the forwarder the message came in through, which it is not sent
            back to.
        """
        if not isinstance(message, Message):  # (publish("a:b") failed deep inside)
            raise TypeError(f"publish() takes a berrymq.Message, got {message!r}; to send "
                            "by identifier, use twitter()")
        self.dispatch(message, self.index.lookup(message[0]), origin)

    def dispatch(self, message: Message, route: tuple[Any, ...], origin: Forwarder | None) -> None:
        """Hand ``message`` on to the peers (all but ``origin``), run ``route`` here (or on
        the worker pool) and show it to the taps: a message that needs more than a plain
        delivery (see :data:`berrymq._index.DISPATCH`)."""
        # Other nodes first, then the receivers here: what a receiver sends in reply then
        # leaves after the message it replies to, and a third node sees cause before
        # effect. A full outgoing buffer does not keep the message from the receivers here.
        node = self.node  # (checked here too: a bus that serves clients has no peers)
        forwarders = node.forwarders if node is not None else ()
        # (none but the one it came through, the common case of a peer's message: no call)
        refused = (forward_first(self, message, origin, None)
                   if forwarders and (forwarders[0] is not origin or len(forwarders) > 1)
                   else None)
        errors = None
        if route:  # run_here, without its call in the common case (no pool)
            errors = (deliver(self, route, message) if self.pool is None
                      else run_here(self, route, message, None))
        if refused is not None:
            errors, refused = with_refusal(errors, refused), None
        if self.taps:  # every one runs; what they raise is raised with the receivers' errors
            observe(self, message, errors)
        elif errors:
            raise_errors(message[0], errors)

    def talk(self, identifier: str | Identifier, callback_identifier: str | Identifier, /,
             *args: Any, **kwargs: Any) -> None:
        """Send like :meth:`twitter`; each receiver's return value that is not None is then
        sent to ``callback_identifier`` as ``args[0]``."""
        ident = parse(identifier)
        reply_to = parse(callback_identifier)
        hops = hop_box()[0]
        if looping(self, ident, hops):
            return
        message: Message = new_message((ident, args, kwargs, hops, None))
        deliver_talk(self, message, reply_to, forward_first(self, message, None, reply_to))

    def ask_local(self, message: Message, timeout: float | None = 5.0, *,
                  into: list[Any] | None = None, running: list[str] | None = None,
                  from_peer: bool = False) -> list[Any]:
        """Run this bus's receivers of ``message`` in this thread and return their
        return values in registration order; a receiver that raised gives a
        :class:`berrymq.ReplyError` in its place. A queue is not a replying receiver: one
        that refused the message (full) gives a ``QueueFull`` entry naming it, after the
        replies. ``async def`` receivers run on their loops and are waited for, up to
        ``timeout`` seconds in all.

        :param into: append the replies to this list as they come (and return it).
        :param running: a one-element list set to the name of the receiver running now.
        :param from_peer: asked by another bus (or process): its local receivers (``_``
            patterns) are left out, which a wildcard name would reach.
        """
        return _ask_local(self, message, timeout, into=into, running=running,
                          from_peer=from_peer)

    def ask(self, identifier: str | Identifier, /, *args: Any, timeout: float = 5.0,
            **kwargs: Any) -> list[Any]:
        """Send a request and return the replies of every matching receiver: local ones
        first, in registration order, then each connected peer's (in the order the
        connections were made); a receiver that raised gives a :class:`berrymq.ReplyError`
        in its place. With no receiver the list is empty, at once.

        ``timeout`` (seconds) bounds the whole call, however slow a receiver or silent a
        peer: what did not answer in time gives one ``ReplyError`` whose
        ``exception_type`` is ``"TimeoutError"``, and a late reply is dropped; local
        receivers that had not started by then never run (see :mod:`berrymq.ask` for the
        threads this takes, and :func:`berrymq.ask_async`).
        Every connection style carries the request, ``connect_oneway`` included; the
        peers answer with their own receivers and do not hand it on to theirs. At the
        bus's hop limit (receivers that ask in a loop) it asks nobody and returns ``[]``,
        counted in :attr:`losses` and logged, as :meth:`twitter` drops such a message.
        """
        return _ask(self, identifier, args, kwargs, timeout)

    # -- concurrency ---------------------------------------------------------------------

    def _update_direct(self) -> None:
        node = self.node
        if self.pool is not None or self.taps:
            how = DISPATCH
        elif node is not None and node.forwarders:
            how = FORWARD
        else:
            how = DIRECT
        # Always: a route of FORWARD may have been built as DIRECT for the old forwarders.
        self.index.set_how(how)
        for watcher in self.index.watchers:  # peers' links: this bus's forwarders or taps
            watcher(None)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message this bus sent to other nodes so far has been handed to
        their receivers and queues (each transport's :meth:`~berrymq.transports.base.
        Transport.flush`), then until the worker pool ran what it was given.

        Sending is fire-and-forget by default; call this where a program must know that
        the other side has what was sent (send, flush, then check). Returns False when
        ``timeout`` seconds passed first, or when a message accepted since the last flush
        was lost, by a transport or here (:attr:`losses`, each counted and logged where it
        happened; an ``async def`` receiver's closed event loop is looked for now). From
        a receiver running in the worker pool it raises :class:`RuntimeError`, as
        :meth:`join` does.
        """
        limit = wait_limit("timeout", timeout)
        deadline = None if limit is None else time.monotonic() + limit
        done = True
        for transport in list(self.transports().values()):
            try:
                done = transport.flush(seconds_left(deadline)) and done
            except ConnectionClosed:  # a connection failed and lost messages
                done = False
        joined = self.join(seconds_left(deadline))
        sweep_closed_loops()  # what closed event loops of async receivers never ran
        losses = self.state(LOSSES)
        total = losses.total
        lost_since, losses.flushed = total != losses.flushed, total
        return joined and done and not lost_since

    def __repr__(self) -> str:
        return f"<Bus {self.name} subscriptions={len(self.index.subscriptions)}>"


Bus.twitter = send

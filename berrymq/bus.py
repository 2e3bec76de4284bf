"""The bus: subscriptions, the route cache, delivery, the error policy and the worker pool.

Invariants that keep sending fast (see ARCHITECTURE.md, "The way of a message"):

- ``_routes`` maps an identifier, both as the text a sender passed and as the parsed
  :class:`Identifier`, to ``(identifier, route entries that match it)``; keyed by the
  text, a send costs one dictionary look-up with a cached str hash. It is read without a
  lock. Writers (subscribe, cancel, a receiver's death) replace it with
  an empty dict, and a miss rebuilds one entry under ``_lock``.
- A route entry is ``(ref, guard, subscription)``; ``ref()`` returns the receiver or None
  once a weakly held receiver is gone, so the loop needs no branch for strong ones.
- No pluggy call, regular expression or lock on the way of a message; plugins are started
  on the first route miss, which every new bus has.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import queue
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import MethodType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from berrymq.aio import PendingReply, async_runner, settle_replies
from berrymq.errors import QueueFull, ReplyError
from berrymq.identifier import WILDCARD, Identifier, parse
from berrymq.message import Message

if TYPE_CHECKING:
    from berrymq.plugins import PluginHost
    from berrymq.transports.base import Connection, Forwarder, Transport

__all__ = ["Bus", "Subscription", "Guard", "Receiver"]

logger = logging.getLogger("berrymq")

Receiver = Callable[[Message], Any]
Guard = Callable[[Message], Any]
RouteEntry = tuple[Callable[[], Receiver | None], Guard | None, "Subscription"]
# (identifier, its route, whether send() may deliver directly: see _route_miss)
CachedRoute = tuple[Identifier, tuple[RouteEntry, ...], bool]


class BusOwner(Protocol):
    """Has a ``bus``: a :class:`Bus` itself, or the holder of the default bus."""

    @property
    def bus(self) -> Bus: ...

_tuple_new = tuple.__new__

# How many hops the message being delivered in this thread has taken, so that a
# receiver that sends passes its hop count plus one on and loops end. A context variable
# holding a one-element list: the hot path does one fast ContextVar.get and then only
# indexes the list. Every thread starts with an empty context and so gets its own box;
# asyncio tasks copied from one context share a box, which is safe because a
# synchronous delivery restores it before any task can run again.
_hops: contextvars.ContextVar[list[int]] = contextvars.ContextVar("berrymq_hops")
_get_hop_box = _hops.get


def hop_box() -> list[int]:
    """This thread's hop box: ``box[0]`` is the hop count of the message being delivered."""
    box = _hops.get(None)
    if box is None:
        box = [0]
        _hops.set(box)
    return box

DEFAULT_HOP_LIMIT = 32
_ROUTE_CACHE_LIMIT = 16384
_SEEN_LIMIT = 100_000


class Subscription:
    """One receiver following one pattern on one bus; ``cancel()`` undoes it.

    Returned by :func:`berrymq.regist_function`, :func:`berrymq.regist_method` and
    :meth:`Bus.subscribe`. Also a context manager that cancels on exit.
    """

    __slots__ = ("__weakref__", "active", "bus", "guard", "kind", "pattern", "ref", "seq", "weak")

    def __init__(
        self,
        bus: Bus,
        pattern: Identifier,
        ref: Callable[[], Receiver | None],
        guard: Guard | None,
        seq: int,
        weak: bool,
        kind: str,
    ) -> None:
        self.bus = bus
        self.pattern = pattern
        self.ref = ref
        self.guard = guard
        self.seq = seq
        self.weak = weak
        self.kind = kind
        self.active = True

    @property
    def receiver(self) -> Receiver | None:
        """The receiver, or None once it was garbage-collected."""
        return self.ref()

    def cancel(self) -> None:
        """Stop this receiver from getting messages for this pattern (idempotent)."""
        self.bus._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Subscription {self.pattern} -> {self.ref()!r} ({state})>"


def _strong_ref(receiver: Receiver) -> Callable[[], Receiver]:
    # A C-level callable returning the receiver: the delivery loop calls ref() alike for
    # strong and weak receivers.
    return itertools.repeat(receiver).__next__


class _Task(NamedTuple):
    entry: RouteEntry
    message: Message
    reply_to: Identifier | None


class _WorkerPool:
    """Threads that run receivers so that sending returns at once.

    Nothing handed to the pool is lost when it shuts down: whatever a worker did not take
    is run by the thread that shuts it down, or by a sender that raced with the shutdown.
    """

    def __init__(self, bus: Bus, size: int) -> None:
        self._bus = bus
        self._tasks: queue.SimpleQueue[_Task | threading.Barrier | None] = queue.SimpleQueue()
        self.size = size
        self.closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"berrymq-worker-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, route: Iterable[RouteEntry], message: Message, reply_to: Identifier | None) -> None:
        put = self._tasks.put
        for entry in route:
            put(_Task(entry, message, reply_to))
        if self.closed:
            self._drain()

    def _work(self) -> None:
        get = self._tasks.get
        run = self._bus._run_task
        while True:
            task = get()
            if task is None:
                return
            if isinstance(task, _Task):
                run(task)
                continue
            with contextlib.suppress(threading.BrokenBarrierError):
                task.wait()  # a barrier put by join()

    def _drain(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if isinstance(task, _Task):
                self._bus._run_task(task)

    def join(self, timeout: float | None) -> bool:
        """Wait until every task handed over before the call has run; False on timeout."""
        if threading.current_thread() in self._threads:
            raise RuntimeError("a receiver running in the pool cannot wait for the pool")
        while True:
            barrier = threading.Barrier(self.size + 1)
            for _ in range(self.size):
                self._tasks.put(barrier)
            try:
                barrier.wait(timeout)
            except threading.BrokenBarrierError:
                return False
            if self._tasks.empty():
                return True

    def shutdown(self) -> None:
        self.closed = True
        for _ in self._threads:
            self._tasks.put(None)
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join()
        self._drain()


class Bus:
    """Routes messages from senders to the receivers whose patterns match.

    The module-level API of :mod:`berrymq` works on one default bus; a program or a test
    can create its own, isolated one.

    :param raise_errors: when true, receivers' exceptions are raised from the sending call
        as an :class:`ExceptionGroup` after every receiver ran, instead of being logged.
    :param hop_limit: how many times a message may be handed on (receiver to receiver,
        node to node) before it is dropped with a warning, which cuts endless loops.
    :param multiplicity: the number of worker threads that run receivers; 0 runs them in
        the sender's thread.
    :param plugins: the plugin host whose active plugins join this bus; the default is the
        process's host, configured by the settings file.
    """

    def __init__(
        self,
        *,
        raise_errors: bool | None = None,
        hop_limit: int | None = None,
        multiplicity: int | None = None,
        plugins: PluginHost | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"bus-{secrets.token_hex(4)}"
        #: This bus itself, so that :func:`send` reads ``owner.bus`` alike for a bus and
        #: for the default-bus holder.
        self.bus = self
        self.node_id = secrets.token_hex(8)
        self._plugins = plugins
        self._explicit = {
            "raise_errors": raise_errors,
            "hop_limit": hop_limit,
            "multiplicity": multiplicity,
        }
        self.raise_errors = bool(raise_errors)
        self.hop_limit = DEFAULT_HOP_LIMIT if hop_limit is None else int(hop_limit)
        if self.hop_limit < 1:
            raise ValueError(f"hop_limit must be at least 1, got {hop_limit}")
        self._lock = threading.RLock()
        self._seq = itertools.count()
        self._uids = itertools.count()
        self._subscriptions: dict[int, Subscription] = {}
        # namespace -> name (or "*") -> subscriptions, in registration order
        self._index: dict[str | None, dict[str, list[Subscription]]] = {}
        self._routes: dict[object, CachedRoute] = {}
        self._dead: list[Subscription] = []
        self._forwarders: tuple[Forwarder, ...] = ()
        self._taps: tuple[Callable[..., Any], ...] = ()
        # Called with (subscription, added) under the lock whenever one comes or goes.
        self._listeners: tuple[Callable[[Subscription, bool], None], ...] = ()
        # True while there are forwarders or taps: one test on the hot path for both.
        self._outbound = False
        self._pool: _WorkerPool | None = None
        self._seen: dict[str, None] = {}
        self._seen_lock = threading.Lock()
        self._transports: dict[str, Transport] = {}
        self._connections: list[Connection] = []
        self._started = False
        self._closed = False
        if multiplicity:
            self.set_multiplicity(multiplicity)

    # -- plugins -------------------------------------------------------------------------

    @property
    def plugins(self) -> PluginHost:
        """The plugin host this bus takes its plugins and settings from."""
        if self._plugins is None:
            from berrymq.plugins import get_plugin_host

            self._plugins = get_plugin_host()
        return self._plugins

    def start(self) -> None:
        """Apply the settings and let active plugins join; done on first use, idempotent."""
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
            host = self.plugins
            core = host.core_settings
            if self._explicit["raise_errors"] is None and "raise_errors" in core:
                self.raise_errors = bool(core["raise_errors"])
            if self._explicit["hop_limit"] is None and "hop_limit" in core:
                self.hop_limit = int(core["hop_limit"])
            if self._explicit["multiplicity"] is None and core.get("multiplicity"):
                self.set_multiplicity(int(core["multiplicity"]))
            taps = host.message_taps(self)
            if taps:
                self._taps = tuple(taps)
                self._outbound = True
                self._routes = {}
            host.bus_started(self)

    def close(self) -> None:
        """Close connections and transports, stop the pool and let plugins clean up."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()
        for transport in list(self._transports.values()):
            transport.close()
        self._transports.clear()
        if self._started:
            self.plugins.bus_closing(self)
        self.set_multiplicity(0)
        with self._lock:
            for subscription in list(self._subscriptions.values()):
                subscription.active = False
            self._subscriptions.clear()
            self._index.clear()
            self._routes = {}

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str | Identifier,
        receiver: Receiver,
        guard: Guard | None = None,
        *,
        weak: bool = True,
        kind: str = "function",
    ) -> Subscription:
        """Call ``receiver(message)`` for every message matching ``pattern``.

        :param guard: called with the message first; a false result skips the receiver.
        :param weak: hold the receiver (or a bound method's object) by weak reference, so
            that it stops receiving once garbage-collected. Use ``weak=False`` for lambdas
            and closures nothing else keeps alive.
        :param kind: which receiver plugin made it (shown by :func:`berrymq.show_network`).
        """
        ident = parse(pattern)
        if not callable(receiver):
            raise TypeError(f"receiver for {ident} must be callable, got {receiver!r}")
        if guard is not None and not callable(guard):
            raise TypeError(f"guard_condition for {ident} must be callable, got {guard!r}")
        runner = async_runner(receiver, ident, guard)  # async def: bound to the running loop
        self.start()
        with self._lock:
            seq = next(self._seq)
            subscription = Subscription(self, ident, _strong_ref(receiver), guard, seq, weak, kind)
            if weak:
                subscription.ref = self._weak_ref(receiver, subscription)
            if runner is not None:
                subscription.ref = runner.bind(subscription)
            self._subscriptions[seq] = subscription
            by_name = self._index.setdefault(ident.namespace, {})
            by_name.setdefault(ident.name, []).append(subscription)
            self._routes = {}
            for listener in self._listeners:
                listener(subscription, True)
        return subscription

    def _weak_ref(self, receiver: Receiver, subscription: Subscription) -> Callable[[], Receiver | None]:
        dead = self._dead
        this = weakref.ref(self)
        subscription_ref = weakref.ref(subscription)

        def gone(_: object) -> None:
            # Called by the garbage collector, possibly in the middle of a writer holding
            # the lock in this very thread: only note the death and drop the route cache;
            # the next route miss removes the subscription.
            sub = subscription_ref()
            bus = this()
            if sub is not None and bus is not None:
                dead.append(sub)
                bus._routes = {}

        if isinstance(receiver, MethodType):
            return weakref.WeakMethod(receiver, gone)
        try:
            return weakref.ref(receiver, gone)
        except TypeError:
            raise TypeError(
                f"{receiver!r} cannot be held by weak reference; register it with weak=False"
            ) from None

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._remove(subscription)
            self._routes = {}

    def _remove(self, subscription: Subscription) -> None:
        # Caller holds the lock.
        if self._subscriptions.pop(subscription.seq, None) is None:
            subscription.active = False
            return
        subscription.active = False
        for listener in self._listeners:
            listener(subscription, False)
        ident = subscription.pattern
        by_name = self._index.get(ident.namespace)
        if by_name is None:
            return
        subs = by_name.get(ident.name)
        if subs is None:
            return
        by_name[ident.name] = [s for s in subs if s is not subscription]
        if not by_name[ident.name]:
            del by_name[ident.name]
        if not by_name:
            del self._index[ident.namespace]

    def unfollow(self, target: object) -> int:
        """Cancel every subscription of a function, a bound method, an object or a class.

        Returns how many subscriptions were cancelled.
        """
        with self._lock:
            doomed = [s for s in self._subscriptions.values() if _belongs_to(s.ref(), target)]
            for subscription in doomed:
                self._remove(subscription)
            self._routes = {}
        return len(doomed)

    def subscriptions(self) -> list[Subscription]:
        """The active subscriptions, in registration order (a snapshot)."""
        with self._lock:
            self._purge_dead()
            return list(self._subscriptions.values())

    def _purge_dead(self) -> None:
        # Caller holds the lock.
        while self._dead:
            self._remove(self._dead.pop())

    def route(self, identifier: str | Identifier) -> tuple[Subscription, ...]:
        """The subscriptions a message sent as ``identifier`` would reach, in order."""
        ident = parse(identifier)
        return tuple(entry[2] for entry in self._route_for(ident))

    def _route_for(self, ident: Identifier) -> tuple[RouteEntry, ...]:
        cached = self._routes.get(ident)
        if cached is None:
            cached = self._route_miss(ident)
        return cached[1]

    def _route_miss(self, key: object) -> CachedRoute:
        ident = parse(key)  # type: ignore[arg-type]
        if not self._started:
            self.start()
        with self._lock:
            self._purge_dead()
            by_name = self._index.get(ident.namespace)
            matched: list[Subscription] = []
            if by_name:
                if ident.name == WILDCARD:
                    candidates: Iterable[Subscription] = itertools.chain.from_iterable(by_name.values())
                else:
                    candidates = itertools.chain(by_name.get(ident.name, ()), by_name.get(WILDCARD, ()))
                action = ident.action
                for sub in candidates:
                    sub_action = sub.pattern.action
                    if sub_action == action or sub_action == WILDCARD or action == WILDCARD:
                        matched.append(sub)
                matched.sort(key=_by_seq)
            # "direct": no pool, no forwarders, no taps; send() then needs no other test.
            direct = self._pool is None and not self._outbound
            cached = (ident, tuple((s.ref, s.guard, s) for s in matched), direct)
            routes = self._routes
            if len(routes) >= _ROUTE_CACHE_LIMIT:
                routes = self._routes = {}
            routes[ident] = routes[key] = cached
            return cached

    # -- sending -------------------------------------------------------------------------

    # twitter = send, set below the class: one body for Bus.twitter and berrymq.twitter.
    twitter: Callable[..., None]

    def publish(self, message: Message, origin: Forwarder | None = None) -> None:
        """Deliver an already-built message locally, then hand it to connected nodes.

        :param origin: the forwarder the message came in through, which it is not sent
            back to.
        """
        ident: Identifier = message[0]
        route = self._route_for(ident)
        errors: list[Exception] | None = None
        if route:
            pool = self._pool
            if pool is None:
                hops = message[3]
                box = hop_box()
                outer = box[0]
                box[0] = hops + 1
                try:
                    for ref, guard, sub in route:
                        receiver = ref()
                        if receiver is None:
                            continue
                        try:
                            if guard is None or guard(message):
                                receiver(message)
                        except Exception as exc:  # noqa: BLE001 - isolated by design
                            errors = self._receiver_failed(errors, sub, message, exc)
                finally:
                    box[0] = outer
            else:
                pool.submit(route, message, None)
        if self._outbound:
            # A local receiver's failure (a full queue, say) must not keep the message
            # from the other nodes: hand it on first, then report.
            try:
                self._send_out(message, origin)
            except QueueFull as exc:
                errors = [*(errors or ()), exc]
        if errors:
            self._raise_errors(ident, errors)

    def _send_out(self, message: Message, origin: Forwarder | None) -> None:
        if self._forwarders and not message[0].is_local:
            self._forward(message, origin)
        for tap in self._taps:
            tap(bus=self, message=message)

    def talk(
        self,
        identifier: str | Identifier,
        callback_identifier: str | Identifier,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Send like :meth:`twitter`; each receiver's return value that is not None is then
        sent to ``callback_identifier`` as ``args[0]``."""
        ident = parse(identifier)
        reply_to = parse(callback_identifier)
        hops = hop_box()[0]
        if hops >= self.hop_limit:
            self._drop_looping(ident, hops)
            return
        message: Message = _tuple_new(Message, (ident, args, kwargs, hops, None))
        try:
            self.deliver_with_reply(message, reply_to)
        finally:  # local failures are reported after the message went to other nodes
            if self._forwarders and not ident.is_local:
                self._forward(message, None, reply_to)

    def deliver_with_reply(self, message: Message, reply_to: Identifier) -> None:
        """Deliver ``message`` locally and send each non-None result to ``reply_to``."""
        route = self._route_for(message[0])
        if not route:
            return
        pool = self._pool
        if pool is not None:
            pool.submit(route, message, reply_to)
            return
        errors = None
        for entry in route:
            try:
                self._run_entry(entry, message, reply_to)
            except Exception as exc:  # noqa: BLE001 - isolated by design
                errors = self._receiver_failed(errors, entry[2], message, exc)
        if errors:
            self._raise_errors(message[0], errors)

    def ask_local(self, message: Message, timeout: float | None = 5.0, *,
                  into: list[Any] | None = None, running: list[str] | None = None) -> list[Any]:
        """Run this bus's receivers of ``message`` in this thread and return their
        return values in registration order; a receiver that raised gives a
        :class:`berrymq.ReplyError` in its place. ``async def`` receivers run on their
        loops and are waited for, up to ``timeout`` seconds in all.

        :param into: append the replies to this list as they come (and return it).
        :param running: a one-element list set to the name of the receiver running now.
        """
        replies: list[Any] = [] if into is None else into
        pending = False
        box = hop_box()
        previous = box[0]
        box[0] = message[3] + 1
        try:
            for ref, guard, subscription in self._route_for(message[0]):
                receiver = ref()
                if receiver is None:
                    continue
                if subscription.kind == "queue":  # a queue stores the request, it does not answer
                    if guard is None or guard(message):
                        receiver(message)
                    continue
                if running is not None:
                    running[:] = [_describe(receiver)]
                try:
                    if guard is not None and not guard(message):
                        continue
                    reply = receiver(message)
                    if type(reply) is PendingReply:
                        reply.claimed = pending = True
                    replies.append(reply)
                except Exception as exc:  # noqa: BLE001 - becomes an error entry
                    replies.append(ReplyError(
                        type(exc).__name__, str(exc), _describe(receiver), self.node_id
                    ))
        finally:
            box[0] = previous
        if running is not None:
            running.clear()  # every receiver was called; only async replies may be awaited
        if pending:
            replies[:] = settle_replies(replies, timeout, self.node_id)
        return replies

    def ask(self, identifier: str | Identifier, /, *args: Any, timeout: float = 5.0,
            **kwargs: Any) -> list[Any]:
        """Send a request and return the replies of every matching receiver.

        Local receivers answer first, in registration order, then each connected peer
        (in the order the connections were made), each peer's receivers in their order.
        A receiver that raised gives a :class:`berrymq.ReplyError` entry in its place.
        With no receiver the list is empty, at once.

        ``timeout`` (seconds) bounds the whole call: local receivers run in a helper
        thread and each peer is asked in its own, so ``ask`` returns by the deadline even
        when a receiver is slow; whatever did not answer in time (the local receiver
        still running, a silent peer) gives one ``ReplyError`` whose ``exception_type``
        is ``"TimeoutError"``, and a late receiver's reply is dropped. Called from a
        thread that runs an event loop, the local receivers run in that thread instead
        (see :func:`berrymq.ask_async`). One-way connections carry no requests.
        """
        ident = parse(identifier)
        if timeout is None or timeout <= 0:
            raise ValueError(f"ask needs a positive timeout, got {timeout!r}")
        deadline = time.monotonic() + timeout
        message: Message = _tuple_new(Message, (ident, args, kwargs, hop_box()[0], None))
        requesters = [] if ident.is_local else [
            f for f in self._forwarders if hasattr(f, "request")
        ]
        if requesters:
            message = self.stamp(message)
        parts: list[_AskPart] = []
        if self._route_for(ident):
            if _in_event_loop():
                parts.append(_AskPart.done_with(self.ask_local(message, timeout)))
            else:
                parts.append(_AskPart.start(
                    f"local receivers of {ident}",
                    lambda part: self.ask_local(message, timeout, into=part.replies,
                                                running=part.running),
                ))
        def asking(requester: Any) -> Callable[[_AskPart], None]:
            def work(part: _AskPart) -> None:
                # A little grace, so that the deadline here always fires first and a
                # silent peer reads the same whichever side noticed (a TimeoutError).
                part.replies.extend(requester.request(message, timeout + 0.25))

            return work

        for requester in requesters:
            parts.append(_AskPart.start(repr(requester), asking(requester)))
        replies: list[Any] = []
        for part in parts:
            replies.extend(part.result(deadline, timeout, self.node_id))
        return replies

    def _run_entry(self, entry: RouteEntry, message: Message, reply_to: Identifier | None) -> None:
        ref, guard, subscription = entry
        receiver = ref()
        if receiver is None or not subscription.active:  # cancelled while the task waited
            return
        box = hop_box()
        previous = box[0]
        box[0] = message[3] + 1
        try:
            if guard is not None and not guard(message):
                return
            result = receiver(message)
            if reply_to is not None and result is not None:
                if type(result) is PendingReply:  # an async receiver: reply when it is done
                    result.send_reply(self, reply_to, message[3] + 1)
                else:
                    self.twitter(reply_to, result)
        finally:
            box[0] = previous

    def _run_task(self, task: _Task) -> None:
        try:
            self._run_entry(task.entry, task.message, task.reply_to)
        except Exception as exc:  # noqa: BLE001 - isolated by design
            errors = self._receiver_failed(None, task.entry[2], task.message, exc)
            if errors:  # a refusal in a worker has no sender to reach: log it loudly
                logger.error(
                    "message %s refused by %r in a worker thread: %s",
                    task.message[0], task.entry[2], exc,
                )

    def _receiver_failed(
        self, errors: list[Exception] | None, sub: Subscription, message: Message, exc: Exception
    ) -> list[Exception] | None:
        refused = isinstance(exc, QueueFull)
        if self.raise_errors or refused:
            if errors is None:
                errors = []
            errors.append(exc)
            return errors
        logger.error(
            "receiver %r of %s failed on message %s", sub.ref(), sub.pattern, message[0],
            exc_info=exc,
        )
        return errors

    def _raise_errors(self, ident: Identifier, errors: list[Exception]) -> None:
        if len(errors) == 1 and isinstance(errors[0], QueueFull):
            raise errors[0]
        raise ExceptionGroup(f"{len(errors)} receiver(s) of {ident} failed", errors)

    def _drop_looping(self, ident: Identifier, hops: int) -> None:
        logger.warning(
            "dropped message %s: it was handed on %d times (hop limit %d); "
            "is there a receiver loop?", ident, hops, self.hop_limit,
        )

    # -- between buses -------------------------------------------------------------------

    def add_forwarder(self, forwarder: Forwarder) -> None:
        """Hand every non-local message sent on this bus to ``forwarder.forward``."""
        with self._lock:
            if forwarder not in self._forwarders:
                self._forwarders = (*self._forwarders, forwarder)
            self._outbound = True
            self._routes = {}

    def remove_forwarder(self, forwarder: Forwarder) -> None:
        """Stop handing messages to ``forwarder`` (idempotent)."""
        with self._lock:
            self._forwarders = tuple(f for f in self._forwarders if f is not forwarder)
            self._outbound = bool(self._forwarders or self._taps)
            self._routes = {}

    def add_subscription_listener(self, listener: Callable[[Subscription, bool], None]) -> None:
        """Call ``listener(subscription, added)`` whenever a subscription is made
        (``added`` true) or removed, so that a bridge to a broker can follow them.

        It is called under the bus's lock in the thread that made the change: it must be
        quick and must not wait for other threads.
        """
        with self._lock:
            if listener not in self._listeners:
                self._listeners = (*self._listeners, listener)

    def remove_subscription_listener(self, listener: Callable[[Subscription, bool], None]) -> None:
        """Stop calling ``listener`` (idempotent)."""
        with self._lock:
            self._listeners = tuple(f for f in self._listeners if f != listener)

    def set_guard(self, subscription: Subscription, guard: Guard | None) -> None:
        """Replace the guard of ``subscription`` (a transport uses it to keep messages
        from the broker out of shared queues, which take them through a queue group)."""
        with self._lock:
            subscription.guard = guard
            self._routes = {}

    def stamp(self, message: Message) -> Message:
        """Return ``message`` with a unique id, given once when it first leaves the bus."""
        if message[4] is not None:
            return message
        uid = f"{self.node_id}-{next(self._uids)}"
        self._mark_seen(uid)
        return _tuple_new(Message, (*message[:4], uid))

    def _forward(
        self, message: Message, origin: Forwarder | None, reply_to: Identifier | None = None
    ) -> None:
        message = self.stamp(message)
        refused: QueueFull | None = None
        for forwarder in self._forwarders:
            if forwarder is not origin:
                try:
                    forwarder.forward(message, reply_to)
                except QueueFull as exc:  # a full outgoing buffer refused it: tell the sender
                    refused = exc
                except Exception as exc:  # noqa: BLE001 - one dead peer must not stop the rest
                    logger.error("could not forward %s through %r: %s", message[0], forwarder, exc)
        if refused is not None:
            raise refused

    def _mark_seen(self, uid: str) -> bool:
        """Remember ``uid``; False when it was already seen (a message back from a cycle)."""
        with self._seen_lock:
            seen = self._seen
            if uid in seen:
                return False
            seen[uid] = None
            if len(seen) > _SEEN_LIMIT:
                del seen[next(iter(seen))]
            return True

    def receive(
        self, message: Message, origin: Forwarder | None = None, reply_to: Identifier | None = None
    ) -> bool:
        """Take in a message from another node: deliver it here and pass it on.

        A message whose ``uid`` was seen before is dropped (it went round a cycle); returns
        whether the message was delivered. ``hops`` counts one more for the crossing.
        """
        uid = message[4]
        if uid is not None and not self._mark_seen(uid):
            return False
        hops = message[3] + 1
        if hops >= self.hop_limit:
            self._drop_looping(message[0], hops)
            return False
        message = _tuple_new(Message, (message[0], message[1], message[2], hops, uid))
        if reply_to is None:
            self.publish(message, origin)
        else:
            try:
                self.deliver_with_reply(message, reply_to)
            finally:
                if self._forwarders and not message[0].is_local:
                    self._forward(message, origin, reply_to)
        return True

    def transport(self, scheme: str) -> Transport:
        """This bus's transport for a URL scheme, created by its plugin on first use."""
        transport = self._transports.get(scheme)
        if transport is None:
            with self._lock:
                transport = self._transports.get(scheme)
                if transport is None:
                    self.start()
                    transport = self.plugins.create_transport(scheme, self)
                    self._transports[scheme] = transport
        return transport

    def track_connection(self, connection: Connection) -> None:
        """Keep ``connection`` so that :meth:`close` closes it."""
        with self._lock:
            self._connections.append(connection)

    def untrack_connection(self, connection: Connection) -> None:
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    def connections(self) -> list[Connection]:
        """The open connections made from this bus (a snapshot)."""
        with self._lock:
            return list(self._connections)

    # -- concurrency ---------------------------------------------------------------------

    def set_multiplicity(self, n: int) -> None:
        """Run receivers on ``n`` worker threads; 0 runs them in the sender's thread.

        Messages already handed to the old pool are all delivered before this returns.
        """
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"multiplicity must be an int, got {n!r}")
        if n < 0:
            raise ValueError(f"multiplicity must be 0 or more, got {n}")
        with self._lock:
            old = self._pool
            self._pool = _WorkerPool(self, n) if n else None
            self._routes = {}
        if old is not None:
            old.shutdown()

    @property
    def multiplicity(self) -> int:
        pool = self._pool
        return pool.size if pool is not None else 0

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker pool has run every message handed to it so far.

        Returns False if ``timeout`` passed first; True at once without a pool.
        """
        pool = self._pool
        return True if pool is None else pool.join(timeout)

    def __repr__(self) -> str:
        return f"<Bus {self.name} subscriptions={len(self._subscriptions)}>"


def send(owner: BusOwner, identifier: str | Identifier, /, *args: Any, **kwargs: Any) -> None:
    """Send a message to every receiver whose pattern matches ``identifier``.

    Without a worker pool every matching receiver has run, in registration order, when
    this returns. Messages whose name does not start with ``_`` also go to connected nodes.
    """
    # The hot path, written once for two callers: as Bus.twitter ``owner`` is the bus
    # (whose ``.bus`` is itself); as berrymq.twitter it is the default-bus holder, read
    # on each call so that use_bus() takes effect. publish() is inlined here for the
    # common case.
    bus = owner.bus
    try:
        ident, route, direct = bus._routes[identifier]  # a subscript is cheaper than .get
    except (KeyError, TypeError):  # TypeError: unhashable, which parsing then names
        ident, route, direct = bus._route_miss(identifier)
    box = _get_hop_box(None)
    if box is None:
        box = hop_box()
    hops = box[0]
    if hops and hops >= bus.hop_limit:  # hops is 0 unless sent from inside a receiver
        bus._drop_looping(ident, hops)
        return
    message = _tuple_new(Message, (ident, args, kwargs, hops, None))
    if not direct:
        bus.publish(message)  # a worker pool, forwarders or taps
        return
    box[0] = hops + 1
    errors = None
    try:
        for ref, guard, sub in route:
            receiver = ref()
            if receiver is None:
                continue
            try:
                if guard is None or guard(message):
                    receiver(message)
            except Exception as exc:  # noqa: BLE001 - isolated by design
                errors = bus._receiver_failed(errors, sub, message, exc)
    finally:
        box[0] = hops
    if errors:
        bus._raise_errors(ident, errors)


Bus.twitter = send


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _AskPart:
    """One source of replies to an ask (the local receivers, or one peer), answered in a
    helper thread so that the asker can stop waiting at the deadline."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.replies: list[Any] = []
        self.running: list[str] = []
        self.error: Exception | None = None
        self.thread: threading.Thread | None = None

    @classmethod
    def done_with(cls, replies: list[Any]) -> _AskPart:
        part = cls("")
        part.replies = replies
        return part

    @classmethod
    def start(cls, who: str, work: Callable[[_AskPart], Any]) -> _AskPart:
        part = cls(who)

        def run() -> None:
            try:
                work(part)
            except Exception as exc:  # noqa: BLE001 - reported as an entry
                part.error = exc

        part.thread = threading.Thread(target=run, name="berrymq-ask", daemon=True)
        part.thread.start()
        return part

    def result(self, deadline: float, timeout: float, node: str) -> list[Any]:
        """The replies, once the part finished or the deadline passed."""
        if self.thread is not None:
            self.thread.join(max(0.0, deadline - time.monotonic()))
            if self.thread.is_alive():
                # What answered so far (async replies that are not in yet become timeout
                # entries), and one entry for the receiver still running, if any.
                answered = settle_replies(list(self.replies), 0, node)
                if not self.running and self.replies:
                    return answered
                who = self.running[0] if self.running else self.who
                return [*answered, ReplyError("TimeoutError", f"no answer within {timeout:g}s", who, node)]
        if self.error is not None:
            exc = self.error
            return [*self.replies, ReplyError(type(exc).__name__, str(exc), self.who, node)]
        return self.replies


def _describe(receiver: object) -> str:
    name = getattr(receiver, "__qualname__", None) or type(receiver).__qualname__
    module = getattr(receiver, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _by_seq(subscription: Subscription) -> int:
    return subscription.seq


def _belongs_to(receiver: object, target: object) -> bool:
    if receiver is None:
        return False
    if receiver is target or (isinstance(target, MethodType) and receiver == target):
        return True  # bound methods are made anew on each access: compare them by ==
    owner = getattr(receiver, "__self__", None)
    if owner is not None and (owner is target or (isinstance(target, type) and isinstance(owner, target))):
        return True
    func = getattr(receiver, "__func__", None)
    return func is not None and func is target

"""Subscriptions and the route cache: which receivers a message named X reaches.

Invariants that keep sending fast and its costs flat (ARCHITECTURE.md, "The way of a
message"):

- A subscription is filed in one bucket by the shape of its pattern, keyed by
  ``(namespace, name, action)`` where name and action may be ``*``. A route miss for a
  concrete identifier ``n:a`` looks at four buckets (``n:a``, ``n:*``, ``*:a``, ``*:*``),
  so it costs what matching its own receivers costs, whatever else is registered.
  A bucket is a dict ``seq -> route entry`` (insertion order is registration order), so
  a cancel removes in O(1), and every cached route holds the one entry of a subscription
  (8 bytes a route), not a copy of it (a tuple of 64 more).
- ``routes``, the route cache (:mod:`berrymq._routes`), is read without a lock; writers
  hold ``lock`` and forget only the routes that the changed pattern matches. It is bounded
  in identifiers and in route entries.
- A route entry is ``(ref, guard, subscription)``; ``ref()`` returns the receiver or None
  once a weakly held receiver is gone, so delivery needs no branch for strong ones.
- ``unfollow`` looks up only what it removes, by owner (:class:`berrymq._owners.Owners`).
- ``lock`` (:class:`WriteLock`) is re-entrant for reads only. Code may run in the middle
  of a write of its own thread: a finalizer (``__del__``) that the garbage collector calls
  at any allocation, a signal handler, a weak receiver's death. It must not change the
  index then (the write is half done), nor wait for the lock (it would wait for itself):
  a death or a cancel is noted (the subscription inactive at once) and done as the
  outermost write lets go; a send to an identifier not cached works its route out without
  caching it; reads (a peer's link asking what this bus follows) take the lock again; a
  subscribe is refused with a ``RuntimeError`` that says why.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq._owners import Owners, target_keys
from berrymq._routes import CachedRoute, RouteCache, RouteEntry
from berrymq.fork_safe import ForkSafeLock, renew_in_child
from berrymq.identifier import WILDCARD, Identifier, parse
from berrymq.subscription import Guard, Receiver, ReceiverKind, Subscription, strong_ref, weak_ref

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["DIRECT", "DISPATCH", "FORWARD", "NOBODY", "CachedRoute", "Index", "RouteEntry"]

Key = tuple[str | None, str, str]

#: How send() delivers: itself (no pool, no peers, no taps); itself, then to the
#: forwarders (peers but no pool or taps); or through Bus.dispatch (a pool or taps).
#: NOBODY is a DIRECT route without receivers: nothing to do. Only DIRECT is false, so
#: that send() tells its common case from all others with one test.
DIRECT, FORWARD, DISPATCH, NOBODY = 0, 1, 2, 3

def _key(ident: Identifier) -> Key:
    return (ident.namespace, ident.name, ident.action)


class WriteLock:
    """The index's lock (see the module docstring): its outermost release first removes
    what was noted dead or cancelled meanwhile; fresh in a forked process."""

    __slots__ = ("__weakref__", "_depth", "_index", "_lock")

    def __init__(self, index: Index) -> None:
        self._lock = ForkSafeLock(reentrant=True)
        self._index = index
        self._depth = 0  # how many times the holder took it
        renew_in_child(self)

    def held_here(self) -> bool:
        return self._lock.held_here()

    def locked(self) -> bool:
        """Whether a write is under way (in any thread)."""
        return self._depth > 0

    def nested(self) -> bool:
        """Whether the holder took it more than once (this is code run mid-write)."""
        return self._depth > 1

    def acquire(self, blocking: bool = True) -> bool:
        if not self._lock.acquire(blocking):
            return False
        self._depth += 1
        return True

    def release(self) -> None:
        try:
            if self._depth == 1:
                self._index._purge_dead()
        finally:
            self._depth -= 1
            self._lock.release()
        if self._depth == 0 and self._index._dead:  # (noted just as it let go)
            self._index._purge_if_free()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def renew_in_child(self) -> None:
        if not self._lock.held_here():  # (the lock itself is renewed by ForkSafeLock)
            self._depth = 0


class Index:
    """The subscriptions of one bus, filed by pattern shape, and its route cache.

    :param owner: the bus, which subscriptions name as their ``bus``.
    """

    def __init__(self, owner: Bus) -> None:
        self.owner = owner
        self.lock = WriteLock(self)
        self._seq = itertools.count()
        #: every active subscription by seq, in registration order
        self.subscriptions: dict[int, Subscription] = {}
        self._buckets: dict[Key, dict[int, RouteEntry]] = {}
        self._owners = Owners()  # what unfollow looks up
        self._dead: list[Subscription] = []
        self.cache = RouteCache()
        #: sender's key -> cached route; read without the lock (see the module docstring)
        self.routes: dict[object, CachedRoute] = self.cache.routes
        #: how send() delivers (DIRECT, FORWARD or DISPATCH), stored in every route
        self.how = DIRECT
        #: called with (subscription, added) under the lock whenever one comes or goes
        self.listeners: tuple[Callable[[Subscription, bool], None], ...] = ()
        #: called with a new subscription's pattern (None: "anything may have changed")
        #: after the lock is released: peers whose links decide what to skip by what this
        #: bus follows (see :meth:`refresh`)
        self.watchers: tuple[Callable[[Identifier | None], None], ...] = ()
        #: counts :meth:`refresh` calls: a route built while one ran forwards everything
        self.version = 0

    @property
    def limit(self) -> int:
        """The most identifiers whose routes are kept (``route_cache_size``)."""
        return self.cache.limit

    @limit.setter
    def limit(self, limit: int) -> None:
        self.cache.limit = limit

    # -- writing (under the lock) ----------------------------------------------------------

    def add(self, pattern: Identifier, receiver: Receiver, guard: Guard | None, *, weak: bool,
            kind: ReceiverKind, shared: bool = False,
            bind: Callable[[Subscription], Callable[[], Any]] | None = None) -> Subscription:
        """File a new subscription; ``bind`` replaces its reference (async receivers)."""
        if self.lock.held_here():
            raise RuntimeError(
                f"cannot subscribe to {pattern} from code run in the middle of this thread's "
                "own change to the bus's subscriptions (a __del__ the garbage collector "
                "called, or a signal handler): it would wait for itself; subscribe "
                "elsewhere (a cancel or a send from there is fine)")
        with self.lock:
            self._purge_dead()
            subscription = Subscription(self, pattern, strong_ref(receiver), guard,
                                        next(self._seq), weak, kind, shared)
            if weak:
                subscription.ref = self._weak_ref(receiver, subscription)
            if bind is not None:
                subscription.ref = bind(subscription)
            seq = subscription.seq
            self.subscriptions[seq] = subscription
            self._buckets.setdefault(_key(pattern), {})[seq] = (subscription.ref, guard,
                                                                 subscription)
            self._owners.add(subscription, receiver)
            self.cache.invalidate(pattern)
            try:
                for listener in self.listeners:
                    listener(subscription, True)
            except BaseException:  # a listener refused it: it never was (they are told)
                self._remove(subscription)
                raise
        for watcher in self.watchers:
            watcher(pattern)
        return subscription

    def follows(self, ident: Identifier) -> bool:
        """Whether any subscription here matches ``ident`` (a peer's link asks)."""
        with self.lock:
            return bool(self._match(ident))

    def refresh(self, pattern: Identifier | None) -> None:
        """What a peer follows changed (a new subscription of ``pattern``; None: its
        forwarders or taps): forget the routes that may now have to reach it."""
        with self.lock:
            self.version += 1
            if pattern is None:
                self.cache.clear()
            else:
                self.cache.invalidate(pattern)

    def remove(self, subscription: Subscription) -> None:
        """Cancel one subscription (idempotent)."""
        if self.lock.held_here():  # see the module docstring: done as the write ends
            self._defer_removal([subscription])
            return
        with self.lock:
            self._remove(subscription)

    def remove_matching(self, target: object) -> int:
        """``unfollow``: cancel every subscription of ``target``; returns how many."""
        keys = target_keys(target)
        if self.lock.held_here():  # see the module docstring: done as the write ends
            doomed = [s for s in self._owners.covered_by(target, keys) if s.active]
            self._defer_removal(doomed)
            return len(doomed)
        with self.lock:
            self._purge_dead()
            doomed = self._owners.covered_by(target, keys)
            for subscription in doomed:
                self._remove(subscription)
        return len(doomed)

    def _defer_removal(self, subscriptions: list[Subscription]) -> None:
        """Cancel ``subscriptions`` from inside this thread's own write: inactive now,
        removed as the outermost write lets go (see :class:`WriteLock`)."""
        for subscription in subscriptions:
            subscription.active = False
            self._dead.append(subscription)

    def set_guard(self, subscription: Subscription, guard: Guard | None) -> None:
        with self.lock:
            subscription.guard = guard
            bucket = self._buckets.get(_key(subscription.pattern))
            if bucket is not None and subscription.seq in bucket:
                bucket[subscription.seq] = (subscription.ref, guard, subscription)
            self.cache.invalidate(subscription.pattern)

    def set_how(self, how: int) -> None:
        """How senders deliver (the bus's pool, forwarders or taps changed): every cached
        route says it, so the cache starts again."""
        with self.lock:
            self.how = how
            self.cache.clear()

    def clear(self) -> None:
        """Drop everything (the bus closed)."""
        with self.lock:
            for subscription in self.subscriptions.values():
                subscription.active = False
            self.subscriptions.clear()
            self._buckets.clear()
            self._owners.clear()
            self._dead.clear()
            self.cache.clear()

    def _remove(self, subscription: Subscription) -> None:
        seq = subscription.seq
        subscription.active = False
        if self.subscriptions.pop(seq, None) is None:
            return
        for listener in self.listeners:
            listener(subscription, False)
        key = _key(subscription.pattern)
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.pop(seq, None)
            if not bucket:
                del self._buckets[key]
        self._owners.remove(subscription)
        self.cache.invalidate(subscription.pattern)

    def _purge_dead(self) -> None:
        if self.lock.nested():  # code run mid-write: the write is half done
            return
        dead = self._dead
        while dead:
            self._remove(dead.pop())

    def _collected(self, subscription: Subscription) -> None:
        # A weak receiver was garbage-collected, maybe while this very thread is writing:
        # its subscription goes now if the lock is free, else at the next change. It is
        # inactive at once, so that a worker pool's task for it is counted as dropped.
        subscription.active = False
        self._dead.append(subscription)
        self._purge_if_free()

    def _purge_if_free(self) -> None:
        """Remove the subscriptions noted dead or cancelled, unless a write is under way
        (its release removes them)."""
        if self._dead and not self.lock.held_here() and self.lock.acquire(blocking=False):
            self.lock.release()  # (the release removes them)

    def _weak_ref(self, receiver: Receiver, subscription: Subscription) -> Callable[[], Receiver | None]:
        collected = weakref.WeakMethod(self._collected)
        subscription_ref = weakref.ref(subscription)

        def gone(_: object) -> None:
            sub, method = subscription_ref(), collected()
            if sub is not None and method is not None:
                method(sub)

        return weak_ref(receiver, gone)

    def miss(self, key: object) -> CachedRoute:
        """Build (and cache under ``key``) the route of an identifier not in the cache."""
        ident = parse(key)  # type: ignore[arg-type]  # raises InvalidIdentifier for bad keys
        text = ident.text
        # Asked before taking the lock: a peer's link takes the peer's index lock.
        version = self.version
        node = self.owner.node
        forwarding = (ident.is_local or node is None or self.how != FORWARD
                      or node.wants(ident))
        if self.lock.held_here():  # see the module docstring: worked out, not cached
            return self._route(ident, forwarding, version)
        with self.lock:
            if self._dead:
                self._purge_dead()
            cached = self.cache.under_another_key(text, key)  # (its text, or the Identifier)
            if cached is None:
                cached = self._route(ident, forwarding, version)
                self.cache.store(key, cached)
        return cached

    def _route(self, ident: Identifier, forwarding: bool, version: int) -> CachedRoute:
        """The route of ``ident`` as the subscriptions stand (see :meth:`miss`)."""
        matched = self._match(ident)
        how = self.how
        if how == FORWARD and (ident.is_local or (not forwarding and version == self.version)):
            how = DIRECT  # local, or no peer wants it: sent as if there were none
        if how == DIRECT and not matched:
            how = NOBODY
        return (ident, tuple(matched), how)

    def _match(self, ident: Identifier) -> list[RouteEntry]:
        namespace, name, action = ident.namespace, ident.name, ident.action
        if name == WILDCARD or action == WILDCARD:
            # Sending to a wildcard (rare): every subscription of the namespace may match.
            # (.get: a finalizer may look in the middle of a subscribe, not yet filed)
            filed = (self._buckets.get(_key(s.pattern), {}).get(s.seq)
                     for s in self.subscriptions.values() if s.pattern.matches(ident))
            return [entry for entry in filed if entry is not None]
        buckets = self._buckets
        found: list[RouteEntry] = []
        shapes = 0
        for key in ((namespace, name, action), (namespace, name, WILDCARD),
                    (namespace, WILDCARD, action), (namespace, WILDCARD, WILDCARD)):
            bucket = buckets.get(key)
            if bucket:
                found.extend(bucket.values())
                shapes += 1
        if shapes > 1:  # one bucket is in registration order already
            found.sort(key=_by_seq)
        return found

    def lookup(self, ident: Identifier, from_peer: bool = False) -> tuple[RouteEntry, ...]:
        """The route entries of ``ident`` (cached under its canonical text, whose hash
        is cached by str: no Python-level ``__hash__`` on the way).

        :param from_peer: for a message (or an ask, or a talk) from another process:
            without the receivers of local patterns (``_name``). A node refuses a local
            identifier from outside, but a wildcard name (``*:stop``, ``*``) matches local
            names too, and would run a process's private receivers from anywhere."""
        cached = self.routes.get(ident.text)
        if cached is None:
            cached = self.miss(ident.text)
        if from_peer and ident.name == WILDCARD:
            return tuple(entry for entry in cached[1] if not entry[2].pattern.is_local)
        return cached[1]

    def snapshot(self) -> list[Subscription]:
        """The active subscriptions, in registration order."""
        with self.lock:
            self._purge_dead()
            return list(self.subscriptions.values())


def _by_seq(entry: RouteEntry) -> int:
    return entry[2].seq


"""The route cache of a bus: the receivers each identifier reaches, as last worked out.

``routes`` maps the key a sender used (text or :class:`Identifier`) to ``(identifier,
route entries, how)``. It is read without a lock (``send()`` holds this very dict);
:class:`~berrymq._index.Index` writes it under its lock and forgets only the routes that a
changed pattern matches, found through reverse indexes by name, by action and by namespace.

Two bounds keep it from growing with what senders do: ``limit`` identifiers (the one cached
first goes when full), and ``entry_limit`` route entries in all (8 bytes each in a route,
shared with the subscription's bucket), for the identifiers that reach many receivers: a
node whose clients hold thousands of ``*:*`` queues, sent ever new identifiers, would
otherwise keep ``limit`` routes of thousands of entries each (gigabytes). A route longer
than ``entry_limit`` alone is not cached: each send of it works it out again, which costs
about what running that many receivers costs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq.identifier import WILDCARD, Identifier

if TYPE_CHECKING:
    from berrymq.subscription import Guard, Receiver, Subscription

__all__ = ["ROUTE_CACHE_ENTRIES", "ROUTE_CACHE_LIMIT", "CachedRoute", "RouteCache", "RouteEntry"]

RouteEntry = tuple[Callable[[], "Receiver | None"], "Guard | None", "Subscription"]
# (identifier, its route, how send() delivers it: DIRECT, FORWARD, DISPATCH or NOBODY)
CachedRoute = tuple[Identifier, tuple[RouteEntry, ...], int]

#: Routes kept at most (each the key one sender used); the oldest goes first when full.
ROUTE_CACHE_LIMIT = 65_536

#: Route entries kept at most, in all the cached routes (8 MB of them at 8 bytes each).
ROUTE_CACHE_ENTRIES = 1 << 20


class RouteCache:
    """The cached routes of one bus (see the module docstring); its writers hold the
    index's lock."""

    def __init__(self) -> None:
        #: sender's key -> cached route. A plain dict: send()'s subscript of it is then
        #: specialised by the interpreter (an OrderedDict's is not).
        self.routes: dict[object, CachedRoute] = {}
        self.limit = ROUTE_CACHE_LIMIT
        self.entry_limit = ROUTE_CACHE_ENTRIES
        #: the route entries held by the cached routes, counted once per identifier
        self.entries = 0
        # canonical text of each cached identifier -> the keys its route is cached under
        self._route_keys: dict[str, list[object]] = {}
        # the texts in the order they were cached, oldest first, for eviction; a text
        # forgotten meanwhile stays until it comes up or the queue is rebuilt (when it is
        # over twice as long as the cache), so that forgetting costs nothing here (a text
        # cached again after that may then go early: this is a cache, not a promise).
        # A dict's first entry is found behind the tombstones of the entries deleted
        # before it, so the dict above cannot say which is oldest.
        self._route_order: deque[str] = deque()
        # The reverse indexes hold canonical texts: a str caches its hash, where an
        # Identifier's __hash__ is a Python call (this is the way of every route miss).
        self._cached_names: dict[tuple[str | None, str], set[str]] = {}
        self._cached_actions: dict[tuple[str | None, str], set[str]] = {}
        self._cached_namespaces: dict[str | None, set[str]] = {}
        self._cached_wild: dict[str, Identifier] = {}

    def __len__(self) -> int:
        """How many identifiers have a cached route."""
        return len(self._route_keys)

    def under_another_key(self, text: str, key: object) -> CachedRoute | None:
        """The route of the identifier whose canonical text is ``text`` when it is cached
        under another key (its text, or the Identifier), now cached under ``key`` too."""
        keys = self._route_keys.get(text)
        if keys is None:
            return None
        cached = self.routes[keys[0]]
        keys.append(key)
        self.routes[key] = cached
        return cached

    def store(self, key: object, cached: CachedRoute) -> None:
        """Cache ``cached`` (a route not cached under any key) under ``key``, forgetting the
        routes cached first while either bound would be passed."""
        ident, route = cached[0], cached[1]
        size = len(route)
        if size > self.entry_limit:
            return
        while self._route_keys and (len(self._route_keys) >= self.limit
                                    or self.entries + size > self.entry_limit):
            self._evict()
        text = ident.text
        self.routes[key] = cached
        self._route_keys[text] = [key]
        self.entries += size
        order = self._route_order
        order.append(text)
        if len(order) > 2 * len(self._route_keys) + 64:  # mostly texts forgotten since
            self._route_order = deque(self._route_keys)
        name, action = ident.name, ident.action
        if name == WILDCARD or action == WILDCARD:
            self._cached_wild[text] = ident
        else:
            namespace = ident.namespace
            _add(self._cached_names, (namespace, name), text)
            _add(self._cached_actions, (namespace, action), text)
            _add(self._cached_namespaces, namespace, text)

    def invalidate(self, pattern: Identifier) -> None:
        """Forget the cached routes that a subscription of ``pattern`` is part of."""
        namespace, name, action = pattern.namespace, pattern.name, pattern.action
        doomed: list[str] = []
        if name == WILDCARD and action == WILDCARD:
            doomed.extend(self._cached_namespaces.get(namespace, ()))
        elif name == WILDCARD:
            doomed.extend(self._cached_actions.get((namespace, action), ()))
        elif action == WILDCARD:
            doomed.extend(self._cached_names.get((namespace, name), ()))
        elif pattern.text in self._route_keys:
            doomed.append(pattern.text)
        doomed.extend(text for text, ident in self._cached_wild.items() if ident.matches(pattern))
        routes = self.routes
        for text in doomed:
            keys = self._route_keys.get(text)
            if keys is not None:
                self._forget(routes[keys[0]][0])

    def clear(self) -> None:
        """Forget every route."""
        self.routes.clear()  # in place: the bus's send() holds this very dict
        self.entries = 0
        self._route_keys.clear()
        self._route_order.clear()
        self._cached_names.clear()
        self._cached_actions.clear()
        self._cached_namespaces.clear()
        self._cached_wild.clear()

    def _forget(self, ident: Identifier) -> None:
        text = ident.text
        keys = self._route_keys.pop(text, None)
        if keys is None:
            return
        routes = self.routes
        self.entries -= len(routes[keys[0]][1])
        for key in keys:
            routes.pop(key, None)
        name, action = ident.name, ident.action
        if name == WILDCARD or action == WILDCARD:
            self._cached_wild.pop(text, None)
            return
        namespace = ident.namespace
        _discard(self._cached_names, (namespace, name), text)
        _discard(self._cached_actions, (namespace, action), text)
        _discard(self._cached_namespaces, namespace, text)

    def _evict(self) -> None:
        """Forget the route cached longest ago (the cache is full)."""
        order, route_keys = self._route_order, self._route_keys
        while order:
            keys = route_keys.get(order.popleft())
            if keys is not None:
                self._forget(self.routes[keys[0]][0])
                return
        if route_keys:  # (never: every cached text is in the order)
            self._forget(self.routes[next(iter(route_keys.values()))[0]][0])


def _add(table: dict[Any, set[str]], part: object, text: str) -> None:
    texts = table.get(part)
    if texts is None:
        table[part] = {text}
    else:
        texts.add(text)


def _discard(table: dict[Any, set[str]], part: object, text: str) -> None:
    texts = table.get(part)
    if texts is not None:
        texts.discard(text)
        if not texts:
            del table[part]

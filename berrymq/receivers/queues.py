"""The ``queues`` receiver plugin: :class:`Queue`, the pull API."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator

from berrymq._blocked import waiting_on
from berrymq.bus import Bus
from berrymq.default import bus_or_default
from berrymq.errors import BusClosed, Empty, QueueClosed
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier, parse
from berrymq.message import Message
from berrymq.receivers._awaiting import (
    USERS_LOCK,
    FullPolicy,
    QueueIterator,
    QueueStore,
    queue_get_async,
)
from berrymq.registries import ReceiverRegistry
from berrymq.state import StateKey
from berrymq.timeouts import check_block, wait_limit

__all__ = ["DEFAULT_PUT_TIMEOUT", "OPEN_QUEUES", "QUEUES", "QUEUE_STORES", "SHARED_STORES",
           "FullPolicy", "Queue", "QueueReceivers", "QueueStore"]

#: How long a sender waits for room in a full bounded queue before it is refused.
DEFAULT_PUT_TIMEOUT = 1.0

#: How often a blocked get on a shared queue looks whether its queue object was closed.
_CLOSE_CHECK = 0.05

def _shown(value: object) -> str:
    """A queue parameter as the user gave it (a put_timeout of None was ``inf``)."""
    return "inf" if value is None else repr(value)


class QueueReceivers:
    """The ``queues`` receiver kind (a :class:`~berrymq.registries.ReceiverKind`): its
    subscriptions store what they get, and so do not answer requests. They store in the
    sender's thread even with a worker pool: first in, first out for each sender (SPEC 4),
    and a full bounded queue blocks or refuses the sender, as without a pool."""

    name = "queue"
    answers = False
    refuses = True
    stores = True
    Queue: type[Queue]


#: The one ``queues`` receiver kind.
QUEUES = QueueReceivers()


def _stores(bus: Bus) -> weakref.WeakValueDictionary[Identifier, QueueStore]:
    return weakref.WeakValueDictionary()


#: A bus's shared stores by pattern; a store lives while some Queue object uses it.
SHARED_STORES: StateKey[weakref.WeakValueDictionary[Identifier, QueueStore]] = StateKey(
    "shared queue stores", _stores
)

def _open_queues(bus: Bus) -> weakref.WeakSet[Queue]:
    return weakref.WeakSet()


def _close_queues(queues: weakref.WeakSet[Queue]) -> None:
    for queue_ in list(queues):
        queue_.close()


#: A bus's Queue objects, closed when the bus closes: nothing will reach them any more,
#: and a consumer blocked in ``get()`` or ``for message in queue`` must not wait for ever.
OPEN_QUEUES: StateKey[weakref.WeakSet[Queue]] = StateKey("queues", _open_queues, _close_queues)


def _queue_stores(bus: Bus) -> weakref.WeakSet[QueueStore]:
    return weakref.WeakSet()


def _close_stores(stores: weakref.WeakSet[QueueStore]) -> None:
    for store in list(stores):
        store.close_if_unused()  # its Queue objects were all garbage-collected: says so
        store.close()  # (idempotent)


#: A bus's queue stores, closed when the bus closes. A store outlives its Queue objects
#: while a sender waits for room in it (the sender holds it): closing the Queue objects
#: that are left would leave that sender waiting.
QUEUE_STORES: StateKey[weakref.WeakSet[QueueStore]] = StateKey(
    "queue stores", _queue_stores, _close_stores)


class Queue:
    """Stores every message matching ``pattern`` sent after it was created, to pull later.

    :param pattern: the identifier pattern, e.g. ``"task:*"``.
    :param shared: queues created with the same pattern (on one bus) share one store and
        each message is taken by exactly one ``get`` (competing consumers); otherwise each
        queue gets its own copy of every message.
    :param maxsize: 0 for unbounded; otherwise at most this many messages wait.
    :param on_full: what a full bounded queue does to a sender: ``"block"`` waits up to
        ``put_timeout`` seconds for room (a finite number, 0 or more, or ``float("inf")``
        to wait as long as it takes), then refuses; ``"refuse"`` refuses at once. A
        refused message is not stored and the sender's ``twitter`` raises
        :class:`berrymq.QueueFull` naming the queue; nothing is dropped silently.
    :param bus: the bus to follow; the default bus when omitted. Closing the bus closes
        the queue: what it stored can still be taken, then ``get`` raises
        :class:`berrymq.QueueClosed` and iteration ends.
    """

    def __init__(
        self,
        pattern: str,
        shared: bool = False,
        maxsize: int = 0,
        *,
        on_full: FullPolicy = "block",
        put_timeout: float = DEFAULT_PUT_TIMEOUT,
        bus: Bus | None = None,
    ) -> None:
        ident = parse(pattern)
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"maxsize must be an int, 0 or more, got {maxsize!r}")
        if on_full not in ("block", "refuse"):
            raise ValueError(f"on_full must be 'block' or 'refuse', got {on_full!r}")
        if type(shared) is not bool:
            raise TypeError(f"shared must be True or False, got {shared!r}")
        limit = wait_limit("put_timeout", put_timeout, none=False)
        bus = bus_or_default(bus, "Queue")
        bus.plugins.receiver("queues")  # says which plugin to enable if it is off
        self.pattern = ident
        self.shared = shared
        self.bus = bus
        self._closed = False
        if shared:
            self._store = self._shared_store(bus, ident, maxsize, on_full, limit)
        else:
            self._store = store = QueueStore(ident, maxsize, on_full, limit, bus)
            store.users.add(self)
            store.subscription = bus.subscribe(ident, store.put, kind=QUEUES)
        try:  # after subscribing: the bus's close closes only whole queues
            bus.state(OPEN_QUEUES).add(self)
            bus.state(QUEUE_STORES).add(self._store)
        except BusClosed:  # closed since it subscribed
            self.close()
            raise

    def _shared_store(
        self, bus: Bus, ident: Identifier, maxsize: int, on_full: FullPolicy, put_timeout: float | None
    ) -> QueueStore:
        with USERS_LOCK:
            stores = bus.state(SHARED_STORES)
            store = stores.get(ident)
            # a store whose queues were all garbage-collected counts as closed: closed now
            if store is not None and not store.close_if_unused_locked():
                # the store has one policy: a later queue asking for another would not get
                # it (on_full and put_timeout only count where they apply: when bounded)
                bounded, blocks = maxsize > 0, maxsize > 0 and on_full == "block"
                for name, have, want, counts in (
                        ("maxsize", store.maxsize, maxsize, True),
                        ("on_full", store.on_full, on_full, bounded),
                        ("put_timeout", store.put_timeout, put_timeout, blocks)):
                    if counts and have != want:
                        raise ValueError(f"shared queue {ident} exists with {name}={_shown(have)}; "
                                         f"cannot share it with {name}={_shown(want)}")
                store.users.add(self)
                return store
            store = QueueStore(ident, maxsize, on_full, put_timeout, bus)
            store.users.add(self)
            store.subscription = bus.subscribe(ident, store.put, kind=QUEUES, shared=True)
            stores[ident] = store
            return store

    @property
    def maxsize(self) -> int:
        return self._store.maxsize

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next message, waiting at most ``timeout`` seconds (forever if None or
        ``float("inf")``).

        Raises :class:`berrymq.Empty` when nothing came in time (at once when ``block`` is
        false), :class:`berrymq.QueueClosed` (an ``Empty``) once closed and drained. A
        closed shared queue raises ``QueueClosed`` at once while other open queues share
        its store (what is stored is theirs); when the last one closes, the closed queues
        can drain what is left. On a running event loop's thread it blocks the loop while
        it waits (``await queue.get_async()`` does not).
        """
        check_block("Queue.get", block)
        timeout = wait_limit("timeout", timeout)  # inf is None: no limit
        if self.shared:
            self._check_open()
        if not block or timeout is not None:
            return self._get_within(block, timeout)
        try:
            return self._store.get(False, None)  # one is there: no wait to tell of
        except QueueClosed:
            raise
        except Empty:
            pass
        with waiting_on(self.bus, self.close):  # no limit: a closing bus's pool may end it
            return self._get_within(True, None)

    def _get_within(self, block: bool, timeout: float | None) -> Message:
        if not self.shared or not block:
            return self._store.get(block, timeout)
        # A shared store outlives this queue object: closing it must stop this object
        # alone from taking messages, so a blocked get wakes now and then to look.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _CLOSE_CHECK if deadline is None else min(_CLOSE_CHECK, deadline - time.monotonic())
            try:
                return self._store.get(True, max(0.0, wait))
            except QueueClosed:
                raise
            except Empty:
                self._check_open()
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def _check_open(self) -> None:
        if self._is_closed():
            raise QueueClosed(f"this shared queue of {self.pattern} was closed")

    def get_nowait(self) -> Message:
        """The next message, or :class:`berrymq.Empty` at once; same as ``get(False)``."""
        self._check_open()
        return self._store.get(False, None)

    def qsize(self) -> int:
        """How many messages wait (approximate when other threads use the queue)."""
        return self._store.qsize()

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return 0 < self._store.maxsize <= self.qsize()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving; messages already stored can still be taken. Idempotent.

        A shared store stops receiving when the last queue using it closes. A sender
        waiting for room in the full queue gets :class:`berrymq.QueueFull` at once, saying
        that the queue was closed (its message was not stored). Closing the bus closes its
        queues.
        """
        if self._closed:
            return
        self._closed = True
        store = self._store
        with USERS_LOCK:  # closed under the lock: a Queue made now gets a new store
            store.users.discard(self)
            last = not store.users
            if last:
                store.close()
        if not last and self.shared:
            store.waiters.wake_all()  # coroutines of this queue in get_async look again

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Message]:
        """Yield messages as they come, until the queue is closed and drained."""
        while True:
            try:
                yield self.get()
            except QueueClosed:
                return

    async def get_async(self, timeout: float | None = None) -> Message:
        """``await queue.get_async()``: the next message, waiting on the event loop (no
        thread is blocked) at most ``timeout`` seconds (forever if None).

        Raises :class:`berrymq.Empty` when nothing came in time and
        :class:`berrymq.QueueClosed` once closed and drained, like :meth:`get`.
        """
        return await queue_get_async(self._store, timeout, self._is_closed)

    def __aiter__(self) -> QueueIterator:
        """``async for message in queue``: messages as they come, until the queue is
        closed and drained."""
        return QueueIterator(self._store, self._is_closed)

    def _is_closed(self) -> bool:
        """Whether this closed queue may take nothing: while other open queues share the
        store, what it holds is theirs; once the last one closed too, every closed queue
        may drain what is left (nothing is stranded). A queue dropped without close()
        counts as closed: when the last open one was dropped, the store closes here, in a
        getter's thread or task (not in the garbage collector's, which may hold locks)."""
        return self._closed and self.shared and not self._store.close_if_unused()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        kind = "shared " if self.shared else ""
        return f"<berrymq.Queue {kind}{self.pattern} size={self.qsize()} {state}>"


QueueReceivers.Queue = Queue


@hookimpl
def berrymq_register_receivers(registry: ReceiverRegistry) -> None:
    registry.add("queues", QUEUES, plugin="queues")


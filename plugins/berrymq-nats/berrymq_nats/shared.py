"""Shared queues of one bus, as the bridge sees them: which NATS queue group each joins.

``Queue(pattern, shared=True)`` in several processes are competing consumers: their
bridges subscribe through the NATS queue group named after the pattern's subject, so
NATS hands each message to one process. A message that a shared queue of the sending
process already took carries that queue's group in its ``taken`` field; the member of the
group that NATS picks drops it. Messages from NATS's plain fan-out are kept out of shared
queues by the guard each of them gets while the bridge runs.

A process may get a message both ways: from an interconnected peer that also published it
to NATS, and then from the queue group. Each group remembers the uids its queue took
(:class:`Took`), so the second copy is dropped: once per process.

The bus's subscriptions change rarely; the bridge marks this view dirty when they do and
it is rebuilt on the next look, outside the bus's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from berrymq.fork_safe import ForkSafeLock
from berrymq.identifier import Identifier
from berrymq.transports.support import SeenUids
from berrymq_nats.subjects import SubjectMap

if TYPE_CHECKING:
    from berrymq.bus import Bus, Subscription
    from berrymq.message import Message

__all__ = ["FromBroker", "SharedQueues", "Took", "from_broker"]

#: The most identifiers whose shared-queue groups are kept (per direction): a sender of
#: endless distinct identifiers, here or on a peer, makes the caches start again instead.
_CACHE_LIMIT = 16384

#: uids a group remembers its queue took, per generation (two generations are kept)
TOOK_LIMIT = 20_000


class FromBroker(dict):  # type: ignore[type-arg]
    """The keyword arguments of a message that came in through NATS's fan-out.

    Only used for messages that match a local shared queue: its guard refuses them, as
    a shared queue takes messages from other processes through its queue group alone.
    """

    __slots__ = ()


def from_broker(message: Message) -> bool:
    """Whether ``message`` came in through a plain NATS subscription (see ``FromBroker``)."""
    return type(message[2]) is FromBroker


class Took(SeenUids):
    """The uids of the messages one group's shared queue here took, the newest
    :data:`TOOK_LIMIT` to twice that."""

    def __init__(self) -> None:
        super().__init__(TOOK_LIMIT)

    def first(self, uid: str | None) -> bool:
        """Whether the queue may take a message of ``uid``: not when it took it already
        (None, a message not sent anywhere yet, is always new)."""
        return uid is None or super().first(uid)


class SharedQueues:
    """The bus's shared queues and, per identifier, the groups that take it (cached)."""

    def __init__(self, bus: Bus, subjects: SubjectMap) -> None:
        self.bus = bus
        self.subjects = subjects
        self.dirty = True
        self.closed = False
        self.entries: tuple[tuple[Subscription, str, Identifier], ...] = ()
        self._lock = ForkSafeLock()
        self._guarded: list[Subscription] = []
        # keyed by the identifier's text: a str's hash is C's, an Identifier's a call
        self._taken: dict[str, tuple[str, ...]] = {}
        self._marks: dict[str, bool] = {}
        #: per queue group, the uids its queue here took (see :class:`Took`)
        self.took: dict[str, Took] = {}

    def changed(self) -> None:
        """The bus's subscriptions changed (called under its lock: only note it)."""
        self.dirty = True
        self._taken = {}
        self._marks = {}

    def refresh(self) -> None:
        """Find the bus's shared queues and guard them (any thread, outside the bus lock)."""
        with self._lock:
            if not self.dirty:
                return
            self.dirty = False
            bus = self.bus
            found: list[tuple[Subscription, str, Identifier]] = []
            for sub in bus.subscriptions():
                # keep the live members of groups of competing consumers (shared queues)
                if not sub.shared or sub.pattern.is_local or sub.ref() is None:
                    continue
                group = self.subjects.group(sub.pattern)
                found.append((sub, group, sub.pattern))
                if sub.guard is None and not self.closed:
                    bus.set_guard(sub, self._guard_of(group))
                    self._guarded.append(sub)
            self._guarded = [s for s in self._guarded if s.active]
            self.entries = tuple(found)

    def took_of(self, group: str) -> Took:
        """The memory of what ``group``'s queue here took."""
        took = self.took.get(group)
        if took is None:
            took = self.took.setdefault(group, Took())
        return took

    def _guard_of(self, group: str) -> Callable[[Message], bool]:
        """The guard of ``group``'s queue here while the bridge runs: it takes no copy from
        NATS's plain fan-out (see :class:`FromBroker`), and no message it took before."""
        first = self.took_of(group).first

        def shared_queue_guard(message: Message) -> bool:
            return type(message[2]) is not FromBroker and first(message[4])

        return shared_queue_guard

    def taken(self, ident: Identifier) -> tuple[str, ...]:
        """The groups of this process's shared queues that take a message sent as ``ident``."""
        taken = self._taken.get(ident.text)
        if taken is None:
            cache = self._taken
            if self.dirty:
                self.refresh()
                cache = self._taken
            taken = tuple(group for sub, group, pattern in self.entries
                          if sub.active and pattern.matches(ident))
            if len(cache) >= _CACHE_LIMIT:  # distinct identifiers without end: bounded
                cache.clear()
            cache[ident.text] = taken
        return taken

    def marked(self, ident: Identifier) -> bool:
        """Whether a local shared queue matches ``ident`` (its copy from the fan-out is
        then marked, so that the queue's guard refuses it)."""
        marked = self._marks.get(ident.text)
        if marked is None:
            cache = self._marks
            if self.dirty:
                self.refresh()
                cache = self._marks
            marked = any(sub.active and pattern.matches(ident) for sub, _, pattern in self.entries)
            if len(cache) >= _CACHE_LIMIT:  # a peer can send endless distinct identifiers
                cache.clear()
            cache[ident.text] = marked
        return marked

    def receiver_of(self, group: str) -> object | None:
        """The local shared queue's receiver for a queue group, if it is still open."""
        for sub, sub_group, _ in self.entries:
            if sub_group == group and sub.active:
                return sub.ref()
        return None

    def unguard(self) -> None:
        """Take the guards off again (the bridge closes)."""
        self.closed = True
        for sub in self._guarded:
            self.bus.set_guard(sub, None)
        self._guarded = []

"""Shared queues of one bus, as the bridge sees them: which NATS queue group each joins.

``Queue(pattern, shared=True)`` in several processes are competing consumers: their
bridges subscribe through the NATS queue group named after the pattern's subject, so
NATS hands each message to one process. A message that a shared queue of the sending
process already took carries that queue's group in its ``taken`` field; the member of the
group that NATS picks drops it. Messages from NATS's plain fan-out are kept out of shared
queues by a guard (:func:`shared_queue_guard`).

The bus's subscriptions change rarely; the bridge marks this view dirty when they do and
it is rebuilt on the next look, outside the bus's lock.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from berrymq.identifier import Identifier
from berrymq_nats.subjects import SubjectMap

if TYPE_CHECKING:
    from berrymq.bus import Bus, Subscription
    from berrymq.message import Message

__all__ = ["FromBroker", "SharedQueues", "from_broker", "shared_queue_guard"]

#: The most identifiers whose shared-queue groups are kept (per direction): a sender of
#: endless distinct identifiers, here or on a peer, makes the caches start again instead.
_CACHE_LIMIT = 16384


class FromBroker(dict):  # type: ignore[type-arg]
    """The keyword arguments of a message that came in through NATS's fan-out.

    Only used for messages that match a local shared queue: its guard refuses them, as
    a shared queue takes messages from other processes through its queue group alone.
    """

    __slots__ = ()


def from_broker(message: Message) -> bool:
    """Whether ``message`` came in through a plain NATS subscription (see ``FromBroker``)."""
    return type(message[2]) is FromBroker


def shared_queue_guard(message: Message) -> bool:
    """Installed on shared queues' subscriptions while a bridge runs (see ``from_broker``)."""
    return type(message[2]) is not FromBroker


class SharedQueues:
    """The bus's shared queues and, per identifier, the groups that take it (cached)."""

    def __init__(self, bus: Bus, subjects: SubjectMap) -> None:
        self.bus = bus
        self.subjects = subjects
        self.dirty = True
        self.closed = False
        self.entries: tuple[tuple[Subscription, str, Identifier], ...] = ()
        self._lock = threading.Lock()
        self._guarded: list[Subscription] = []
        # keyed by the identifier's text: a str's hash is C's, an Identifier's a call
        self._taken: dict[str, tuple[str, ...]] = {}
        self._marks: dict[str, bool] = {}

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
                found.append((sub, self.subjects.group(sub.pattern), sub.pattern))
                if sub.guard is None and not self.closed:
                    bus.set_guard(sub, shared_queue_guard)
                    self._guarded.append(sub)
            self._guarded = [s for s in self._guarded if s.active]
            self.entries = tuple(found)

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

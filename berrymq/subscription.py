"""Subscriptions: one receiver following one pattern, and the kinds of receivers.

A :class:`Subscription` carries, as data, what its receiver kind can do (``answers``
requests; ``refuses`` messages when full; is one of a ``shared`` group of competing
consumers), so delivery never compares kind names. It is filed and removed by
:class:`berrymq._index.Index`.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import BuiltinMethodType, MethodType, ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from berrymq.identifier import Identifier
from berrymq.message import Message

if TYPE_CHECKING:
    from berrymq._index import Index
    from berrymq.bus import Bus

__all__ = ["FUNCTION", "Guard", "Kind", "Receiver", "ReceiverKind", "Subscription", "strong_ref",
           "weak_ref"]

Receiver = Callable[[Message], Any]
Guard = Callable[[Message], Any]


class ReceiverKind(Protocol):
    """What a receiver plugin makes subscriptions as (functions, Follower methods, queues,
    a user's own kind): the data a :class:`Subscription` carries about what it can do.

    :attr name: the kind's name, shown by :func:`berrymq.show_network` (``"function"``).
    :attr answers: whether its receivers' return values are replies to ``ask`` and
        ``talk``; a queue stores a request instead of answering it.
    :attr refuses: whether its receivers may refuse a message with
        :class:`~berrymq.QueueFull`, as a bounded store does. A node answers a remote
        ``send_message`` before running the receivers only when none of them may refuse,
        so that a refusal can still be the answer. A kind without this attribute (written
        before it existed) still works: it is taken to refuse, the safe guess.
    :attr stores: (optional, false when absent) whether its receivers only store what
        they get, as a :class:`~berrymq.Queue` does: with a worker pool they still run in
        the sender's thread, so that one sender's messages are stored in the order sent
        and a full store refuses the sender itself.
    """

    @property
    def name(self) -> str: ...

    @property
    def answers(self) -> bool: ...

    @property
    def refuses(self) -> bool: ...


@dataclass(frozen=True)
class Kind:
    """A plain :class:`ReceiverKind`."""

    name: str
    answers: bool = True
    refuses: bool = True
    stores: bool = False


#: The kind of receivers subscribed with :meth:`Bus.subscribe <berrymq.Bus.subscribe>`.
FUNCTION = Kind("function", refuses=False)


class Subscription:
    """One receiver following one pattern on one bus; ``cancel()`` undoes it.

    Returned by :func:`berrymq.regist_function`, :func:`berrymq.regist_method` and
    :meth:`Bus.subscribe <berrymq.Bus.subscribe>`. Also a context manager that cancels on
    exit. ``kind`` names the receiver kind; ``answers`` (replies to requests), ``refuses`` (may
    raise :class:`~berrymq.QueueFull`), ``stores`` (runs in the sender's thread even with a
    worker pool) and ``shared`` (one of a group of competing consumers) say what it can do.
    """

    __slots__ = ("__weakref__", "active", "answers", "bus", "guard", "index", "keys", "kind",
                 "pattern", "ref", "refuses", "seq", "shared", "stores", "weak")

    def __init__(self, index: Index, pattern: Identifier, ref: Callable[[], Receiver | None],
                 guard: Guard | None, seq: int, weak: bool, kind: ReceiverKind,
                 shared: bool = False) -> None:
        self.index = index
        self.bus: Bus = index.owner
        self.pattern = pattern
        self.ref = ref
        self.guard = guard
        self.seq = seq
        self.weak = weak
        self.kind = kind.name
        self.answers = kind.answers
        # a kind written before ReceiverKind.refuses existed lacks it: it may refuse
        self.refuses: bool = getattr(kind, "refuses", True)
        self.stores: bool = getattr(kind, "stores", False)
        self.shared = shared
        self.active = True
        self.keys: tuple[int, ...] = ()

    @property
    def receiver(self) -> Receiver | None:
        """The receiver, or None once it was garbage-collected."""
        return self.ref()

    def cancel(self) -> None:
        """Stop this receiver from getting messages for this pattern (idempotent).

        Messages sent after this returns do not reach it. A message being delivered at
        that moment (cancelled by another receiver of it, or from another thread) still
        may: a delivery runs over the receivers that matched when it began, without a
        check per receiver on every send. A receiver that must not run once cancelled
        checks a flag of its own.
        """
        self.index.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Subscription {self.pattern} -> {self.ref()!r} ({state})>"


def strong_ref(receiver: Receiver) -> Callable[[], Receiver]:
    """A C-level callable returning ``receiver``: delivery calls ``ref()`` alike for
    strong and weak receivers."""
    return itertools.repeat(receiver).__next__


def weak_ref(receiver: Receiver, gone: Callable[[object], None]) -> Callable[[], Receiver | None]:
    """A callable returning ``receiver``, or None once it was garbage-collected (then
    ``gone`` is called).

    A bound method (``obj.method``, or a built-in one such as ``results.append``) is made
    anew at each attribute access, so a reference to it would die at once and the
    registration with it: its object is referenced instead. An object that takes no weak
    references (a list, an instance of a ``__slots__`` class) is refused with a TypeError
    saying to register with ``weak=False``.
    """
    owner = getattr(receiver, "__self__", None)
    try:
        if isinstance(receiver, MethodType):
            return weakref.WeakMethod(receiver, gone)
        if isinstance(receiver, BuiltinMethodType) and not isinstance(owner, ModuleType | None):
            return _WeakBuiltinMethod(weakref.ref(owner, gone), receiver.__name__)
        return weakref.ref(receiver, gone)
    except TypeError:
        whose = "" if owner is None else f" (its {type(owner).__name__!r} object takes none)"
        raise TypeError(f"{receiver!r} cannot be held by weak reference{whose}; "
                        "register it with weak=False") from None


class _WeakBuiltinMethod:
    """``obj.name`` while ``obj`` lives, else None: a built-in method held weakly."""

    __slots__ = ("name", "owner")

    def __init__(self, owner: weakref.ref[Any], name: str) -> None:
        self.owner, self.name = owner, name

    def __call__(self) -> Receiver | None:
        obj = self.owner()
        return None if obj is None else getattr(obj, self.name)

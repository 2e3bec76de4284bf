"""Which receivers ``unfollow(target)`` covers: a function, a bound method, every method
of an object, or of every instance of a class (and its subclasses), the instances that are
receivers themselves (callable objects: a class with ``__call__``) included.

The index files each subscription in its :class:`Owners` under the ids :func:`owner_keys`
gives, so that ``unfollow`` looks up only the candidates (under :func:`target_keys`) and
confirms each with :func:`belongs_to`: its cost is what it removes, not everything
registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import BuiltinFunctionType, BuiltinMethodType, FunctionType, MethodType, ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berrymq.subscription import Subscription

__all__ = ["Owners", "belongs_to", "owner_keys", "subclasses", "target_keys"]


class Owners:
    """One index's subscriptions filed by the ids of their owners, for ``unfollow``.

    Changed and read under the index's lock, like the rest of the index.
    """

    def __init__(self) -> None:
        # owner id -> the subscriptions filed under it, by seq
        self._filed: dict[int, dict[int, Subscription]] = {}

    def __len__(self) -> int:
        """How many ids have subscriptions filed under them."""
        return len(self._filed)

    def add(self, subscription: Subscription, receiver: object) -> None:
        """File a new ``subscription`` of ``receiver`` under :func:`owner_keys`."""
        seq = subscription.seq
        subscription.keys = owner_keys(receiver)
        for key in subscription.keys:
            self._filed.setdefault(key, {})[seq] = subscription

    def remove(self, subscription: Subscription) -> None:
        """Take a cancelled ``subscription`` out from under each of its keys."""
        seq = subscription.seq
        for owner_key in subscription.keys:
            owned = self._filed.get(owner_key)
            if owned is not None:
                owned.pop(seq, None)
                if not owned:
                    del self._filed[owner_key]

    def covered_by(self, target: object, keys: list[int]) -> list[Subscription]:
        """The subscriptions ``unfollow(target)`` cancels, in registration order;
        ``keys`` are :func:`target_keys` of ``target``."""
        found: dict[int, Subscription] = {}
        for key in keys:
            found.update(self._filed.get(key, {}))
        return [found[seq] for seq in sorted(found) if belongs_to(found[seq].ref(), target)]

    def clear(self) -> None:
        """Forget every subscription (the bus closed)."""
        self._filed.clear()


def target_keys(target: object) -> list[int]:
    """Ids under which ``unfollow(target)`` looks for candidates: the target itself, a bound
    method's object, or a class and every class derived from it."""
    ids = [id(target)]
    if _bound_method(target):
        ids.append(id(target.__self__))  # type: ignore[attr-defined]
    elif isinstance(target, type):
        ids.extend(id(cls) for cls in subclasses(target))
    return ids


def owner_keys(receiver: object) -> tuple[int, ...]:
    """Ids under which ``unfollow`` finds a receiver: itself, its object, its function and
    its object's class; a callable object's class."""
    keys = [id(receiver)]
    if _callable_object(receiver):
        keys.append(id(type(receiver)))
    owner = getattr(receiver, "__self__", None)
    if owner is not None:
        keys.append(id(owner))
        if not isinstance(owner, type):
            keys.append(id(type(owner)))
    func = getattr(receiver, "__func__", None)
    if func is not None:
        keys.append(id(func))
    return tuple(dict.fromkeys(keys))


def _bound_method(target: object) -> bool:
    """Whether ``target`` is a method bound to an object, written in Python (``obj.run``)
    or built in (``results.append``), not a module's built-in function (``len``)."""
    if isinstance(target, MethodType):
        return True
    return (isinstance(target, BuiltinMethodType) and target.__self__ is not None
            and not isinstance(target.__self__, ModuleType))


def _callable_object(receiver: object) -> bool:
    """Whether ``receiver`` is an instance called as a receiver (its class has
    ``__call__``), not a function, a method or a class: ``unfollow(its class)`` covers it."""
    return not isinstance(receiver, (FunctionType, MethodType, BuiltinFunctionType, type))


def subclasses(cls: type) -> Iterator[type]:
    """``cls`` and every class derived from it, however indirectly."""
    yield cls
    subclass: type
    for subclass in type.__subclasses__(cls):
        yield from subclasses(subclass)


def belongs_to(receiver: object, target: object) -> bool:
    """Whether ``unfollow(target)`` covers ``receiver``."""
    if receiver is None:
        return False
    if receiver is target or (_bound_method(target) and receiver == target):
        return True  # bound methods are made anew on each access: compare them by ==
    owner = getattr(receiver, "__self__", None)
    if owner is not None and (owner is target or (isinstance(target, type) and isinstance(owner, target))):
        return True
    func = getattr(receiver, "__func__", None)
    if func is not None and func is target:
        return True
    if isinstance(target, type):
        # a callable object; an async one is held in an AsyncReceiver, whose __func__ it is
        instance = receiver if func is None else func
        return _callable_object(instance) and isinstance(instance, target)
    return False

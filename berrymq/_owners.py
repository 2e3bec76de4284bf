"""Which receivers ``unfollow(target)`` covers: a function, a bound method, every method
of an object, or of every instance of a class (and its subclasses).

The index files each receiver under the ids :func:`owner_keys` gives, so that ``unfollow``
looks up only the candidates and confirms each with :func:`belongs_to`: its cost is what it
removes, not everything registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MethodType

__all__ = ["belongs_to", "owner_keys", "subclasses"]


def owner_keys(receiver: object) -> tuple[int, ...]:
    """Ids under which ``unfollow`` finds a receiver: itself, its object, its function and
    its object's class."""
    keys = [id(receiver)]
    owner = getattr(receiver, "__self__", None)
    if owner is not None:
        keys.append(id(owner))
        if not isinstance(owner, type):
            keys.append(id(type(owner)))
    func = getattr(receiver, "__func__", None)
    if func is not None:
        keys.append(id(func))
    return tuple(dict.fromkeys(keys))


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
    if receiver is target or (isinstance(target, MethodType) and receiver == target):
        return True  # bound methods are made anew on each access: compare them by ==
    owner = getattr(receiver, "__self__", None)
    if owner is not None and (owner is target or (isinstance(target, type) and isinstance(owner, target))):
        return True
    func = getattr(receiver, "__func__", None)
    return func is not None and func is target

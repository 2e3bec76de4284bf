"""Locks that a process forked from this one gets fresh.

Only the forking thread goes on in a forked process: a lock that another thread of the
parent held at that instant stays taken there for ever, and the child's first use of
what it guards waits for it (a child forked while a thread registered receivers hung in
its first registration, about every other time). A :class:`ForkSafeLock` that another
thread held is replaced by a new lock in the child; what it guards is as that thread left
it, each structure whole.

For the locks held across whole operations on a bus and its state (its subscriptions, its
start and close, its losses, its connections, the plugin host), not for a message's path.
Other state that a child must not inherit as it is (a pool's count of threads that are
not there) is renewed the same way, by :func:`renew_in_child`.
The hook runs from a module that holds nothing else: a hook of a module whose globals
reach the buses kept them alive at interpreter exit past the weak references of their
receivers, whose callbacks then failed.
"""

from __future__ import annotations

import os
import threading
import weakref
from threading import get_ident
from typing import Any, Protocol

__all__ = ["ForkSafeLock", "RenewedInChild", "renew_in_child"]


class RenewedInChild(Protocol):
    """What :func:`renew_in_child` takes: its method is called in a forked child."""

    def renew_in_child(self) -> None:
        """Make this object usable by the child alone (it runs before the child goes on,
        in the forking thread; every other thread of the parent is gone)."""


def renew_in_child(owner: RenewedInChild) -> None:
    """Have ``owner.renew_in_child()`` called in every process forked from this one, for
    as long as ``owner`` lives (it is held weakly)."""
    _every.add(owner)


class ForkSafeLock:
    """A :class:`threading.Lock` (``with``, :meth:`acquire`, :meth:`release`) made afresh
    in a process forked from this one, unless the forking thread itself held it: that
    thread goes on in the child inside its ``with`` block, which releases the lock.

    :param reentrant: a :class:`threading.RLock` instead, for a lock whose holder may be
        interrupted by code that takes it again (a finalizer, a signal handler).
    """

    __slots__ = ("__weakref__", "_holder", "_lock", "_reentrant")

    def __init__(self, reentrant: bool = False) -> None:
        self._reentrant = reentrant
        #: a threading.Lock, or a threading.RLock (whose ``_is_owned`` typeshed leaves out)
        self._lock: Any = self._new()
        self._holder: int | None = None  # the thread that holds it, as get_ident() says
        renew_in_child(self)

    def _new(self) -> Any:
        return threading.RLock() if self._reentrant else threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking, timeout):
            if not self._reentrant:  # (an RLock knows its owner: see held_here)
                self._holder = get_ident()
            return True
        return False

    def release(self) -> None:
        if not self._reentrant:
            self._holder = None
        self._lock.release()

    def locked(self) -> bool:
        """Whether some thread holds it (a lock that is not re-entrant only)."""
        return bool(self._lock.locked())

    def held_here(self) -> bool:
        """Whether this thread holds the lock: code that runs in the middle of the
        holder's work (a finalizer the garbage collector calls, a signal handler) would
        wait for itself for ever if it took a lock that is not re-entrant. Exact for a
        re-entrant lock (its owner is set as it is taken, in C); for the other, a
        signal handler run just as the lock was taken reads False."""
        if self._reentrant:
            return bool(self._lock._is_owned())
        return self._holder == get_ident()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def renew_in_child(self) -> None:
        # The forking thread keeps its identity in the child (Linux, macOS).
        if not self.held_here():
            self._lock = self._new()
            self._holder = None


_every: weakref.WeakSet[RenewedInChild] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for owner in list(_every):
        owner.renew_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

"""What a :class:`~berrymq.Bus` does with its subscriptions: make them, cancel them, list
them, say which a message would reach, and follow their changes.

Each method hands over to the bus's :class:`~berrymq._index.Index`, which files the
subscriptions and caches their routes; :class:`Subscribing` is a base class of the bus, as
:class:`~berrymq._node_side.NodeSide` is, so that ``bus.subscribe(...)`` stays one call. Nothing
here is on the way of a message: :func:`~berrymq._delivery.send` reads the route cache
itself.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq.aio import async_runner
from berrymq.identifier import Identifier, parse
from berrymq.subscription import FUNCTION, Guard, Kind, Receiver, ReceiverKind, Subscription

if TYPE_CHECKING:
    from berrymq._index import Index
    from berrymq._pool import WorkerPool
    from berrymq.node import Node

__all__ = ["Subscribing", "refuse_non_flags", "refuse_unable_receiver"]


def refuse_non_flags(who: str, **flags: object) -> None:
    """Refuse a flag of ``who`` that is not ``True`` or ``False``, naming it: nothing is
    converted (``"no"`` would be true). For :meth:`Subscribing.subscribe`, the
    decorators of :mod:`berrymq.decorators` and the receiver kinds' options."""
    for name, flag in flags.items():
        if type(flag) is not bool:
            raise TypeError(f"{name} for {who} must be True or False, got {flag!r}")


def refuse_unable_receiver(what: str, ident: Identifier, func: object) -> None:
    """Refuse a receiver or guard (``what``) that cannot take a message, at the call that
    registers it: one whose signature takes no one positional argument (``def on():``,
    a class whose constructor takes no message, an unbound method), which failed at
    every send, in the log only. The signature read is the callable's own, not the one a
    decorator's ``__wrapped__`` names; a callable without one to read (some built-ins) is
    taken on trust."""
    takes = _takes_one_argument(func)
    if takes is None:  # not a plain function or bound method: inspect (slower) says
        try:
            signature = inspect.signature(func, follow_wrapped=False)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - no signature to read (or one that raises): trusted
            return
        try:
            signature.bind(None)
            takes = True
        except TypeError:
            takes = False
    if not takes:
        shown = _signature_text(func)
        raise TypeError(f"{what} {func!r} for {ident} cannot be called with the message, "
                        f"its one argument: its signature is {shown}")


def _takes_one_argument(func: object) -> bool | None:
    """Whether a plain function or bound method can be called with one positional
    argument, read from its code object (inspect.signature cost about 12 us a
    registration, doubling it); None for any other callable."""
    target = getattr(func, "__func__", func) if inspect.ismethod(func) else func
    if not isinstance(target, types.FunctionType):
        return None
    code = target.__code__
    positional = code.co_argcount - (1 if target is not func else 0)  # (bound: self given)
    required = positional - len(target.__defaults__ or ())
    keyword_only_required = code.co_kwonlyargcount - len(target.__kwdefaults__ or {})
    star = bool(code.co_flags & inspect.CO_VARARGS)
    return required <= 1 and (positional >= 1 or star) and keyword_only_required == 0


def _signature_text(func: object) -> str:
    try:
        return str(inspect.signature(func, follow_wrapped=False))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - only for the message
        return "unreadable"


class Subscribing:
    """The methods a :class:`~berrymq.Bus` has for its subscriptions."""

    if TYPE_CHECKING:  # kept by Bus
        index: Index
        node: Node | None
        pool: WorkerPool | None

        def refuse_if_closed(self, action: str) -> None: ...

        def core_setting(self, name: str, default: Any = None) -> Any: ...

    def subscribe(
        self,
        pattern: str | Identifier,
        receiver: Receiver,
        guard: Guard | None = None,
        *,
        weak: bool = True,
        kind: str | ReceiverKind = FUNCTION,
        shared: bool = False,
    ) -> Subscription:
        """Call ``receiver(message)`` for every message matching ``pattern``.

        :param guard: called with the message first; a false result skips the receiver.
        :param weak: hold the receiver (or a bound method's object) by weak reference, so
            that it stops receiving once garbage-collected. Use ``weak=False`` for lambdas
            and closures nothing else keeps alive.
        :param kind: the receiver kind making it (a :class:`~berrymq.registries.ReceiverKind`,
            or a name for a kind whose receivers answer requests).
        :param shared: the receiver is one of a group of competing consumers (a shared queue).
        """
        ident = parse(pattern)
        self.refuse_if_closed(f"add a receiver of {ident}")
        if not callable(receiver):
            raise TypeError(f"receiver for {ident} must be callable, got {receiver!r}")
        if guard is not None and not callable(guard):
            raise TypeError(f"guard_condition for {ident} must be callable, got {guard!r}")
        refuse_unable_receiver("receiver", ident, receiver)
        if guard is not None:
            refuse_unable_receiver("guard_condition", ident, guard)
        refuse_non_flags(str(ident), weak=weak, shared=shared)
        runner = async_runner(receiver, ident, guard, self.core_setting)  # async def: on this loop
        if isinstance(kind, str):
            kind = Kind(kind)
        return self.index.add(ident, receiver, guard, weak=weak, kind=kind, shared=shared,
                               bind=None if runner is None else runner.bind)

    def unfollow(self, target: object) -> int:
        """Cancel every subscription of a function, a bound method, an object or a class.

        A class covers its instances (its subclasses' too) and the class methods and
        static methods it defines itself. A static method is registered as its plain
        function, which names no class, so it is looked up in the class's namespace
        (``unfollow(SomeClass)`` left a ``@following`` static method receiving); a
        function written elsewhere that the class merely holds (``staticmethod(log)``)
        is not the class's, and keeps following.

        Returns how many subscriptions were cancelled.
        """
        if target is None or isinstance(target, (str, bytes, Identifier)):
            raise TypeError(f"unfollow() takes a function, a bound method, an object or a "
                            f"class, got {target!r} (it matched nothing, silently); cancel "
                            "a pattern's receivers with their subscriptions' cancel()")
        cancelled = self.index.remove_matching(target)
        if isinstance(target, type):  # the static methods written in its body
            inside = f"{target.__qualname__}."
            for value in list(vars(target).values()):
                function = value.__func__ if isinstance(value, staticmethod) else None
                # (not a function defined elsewhere that it holds: staticmethod(log))
                if function is not None and getattr(function, "__qualname__", "").startswith(
                        inside) and getattr(function, "__module__", None) == target.__module__:
                    cancelled += self.index.remove_matching(function)
        return cancelled

    def subscriptions(self) -> list[Subscription]:
        """The active subscriptions, in registration order (a snapshot)."""
        return self.index.snapshot()

    def route(self, identifier: str | Identifier) -> tuple[Subscription, ...]:
        """The subscriptions a message sent as ``identifier`` would reach, in order."""
        return tuple(entry[2] for entry in self.index.lookup(parse(identifier))
                     if entry[2].active and entry[0]() is not None)

    def may_refuse(self, identifier: str | Identifier) -> bool:
        """Whether a message sent as ``identifier`` now could meet :class:`~berrymq.QueueFull`
        (a receiver that refuses, a worker pool, a peer): a transport answers at once
        only when it could not, so that a refusal is still the answer."""
        ident = parse(identifier)
        node = self.node
        if self.pool is not None or (node is not None and node.forwarders
                                      and not ident.is_local):
            return True
        return any(entry[2].refuses for entry in self.index.lookup(ident))

    def add_subscription_listener(self, listener: Callable[[Subscription, bool], None]) -> None:
        """Call ``listener(subscription, added)`` whenever a subscription is made
        (``added`` true) or removed, so that a bridge to a broker can follow them.

        It is called under the bus's index lock in the thread that made the change: it
        must be quick, must not wait for other threads and must not call the bus. A
        listener that raises for a new subscription refuses it: the subscription is taken
        back at once (every listener is told of its removal) and the exception reaches the
        call that made it.
        """
        index = self.index
        with index.lock:
            if listener not in index.listeners:
                index.listeners = (*index.listeners, listener)

    def remove_subscription_listener(self, listener: Callable[[Subscription, bool], None]) -> None:
        """Stop calling ``listener`` (idempotent)."""
        index = self.index
        with index.lock:
            index.listeners = tuple(f for f in index.listeners if f != listener)

    def set_guard(self, subscription: Subscription, guard: Guard | None) -> None:
        """Replace the guard of ``subscription`` (a transport uses it to keep messages
        from the broker out of shared queues, which take them through a queue group)."""
        self.index.set_guard(subscription, guard)

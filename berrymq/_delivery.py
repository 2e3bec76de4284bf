"""Delivery: :func:`deliver`, the one loop that runs receivers, and the error policy.

Every way a message reaches receivers goes through :func:`deliver`: ``twitter`` (in the
sender's thread), ``publish`` (from another node), ``talk`` and ``ask`` (with an
:class:`Answer` taking the receivers' return values) and the worker pool (a route entry
per task). It sets the thread's hop count to the message's plus one around the receivers
(code carrying a count into another thread or task sets it there: :mod:`berrymq._hops`),
so that a receiver that sends hands the count on, and applies the bus's error policy: a
receiver's exception is logged, or kept and raised after every receiver ran.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from berrymq._hops import get_box, get_ident, hop_box
from berrymq._index import DIRECT, DISPATCH, NOBODY, RouteEntry
from berrymq._losses import HOP_LIMIT, LOSSES
from berrymq._pending import PendingReply
from berrymq.errors import QueueFull
from berrymq.identifier import WILDCARD, Identifier
from berrymq.message import Message, new_message
from berrymq.subscription import Subscription

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.node import Forwarder

__all__ = ["Answer", "BusOwner", "TalkAnswer", "deliver", "deliver_talk", "drop_tracebacks",
           "failed", "forward_first", "looping", "not_awaited", "observe", "raise_errors", "run_here",
           "send", "with_refusal"]

logger = logging.getLogger("berrymq")


class Answer(Protocol):
    """What ``talk`` and ``ask`` do with each receiver's return value."""

    def calling(self, subscription: Subscription, receiver: object) -> None:
        """Called before the guard and the receiver run."""

    def returned(self, subscription: Subscription, result: object) -> None:
        """Called with what the receiver returned (inside the hop count of the message)."""

    def raised(self, subscription: Subscription, receiver: object, exc: Exception) -> bool:
        """Called with a receiver's exception; True when it was taken as an answer (an
        error entry of ``ask``), False to apply the bus's error policy."""


def deliver(bus: Bus, route: Iterable[RouteEntry], message: Message,
            answer: Answer | None = None, box: list[int] | None = None,
            count: int | None = None) -> list[Exception] | None:
    """Run the receivers of ``route`` on ``message`` in this thread, in order.

    Returns the exceptions to raise to the sender (see :func:`failed`), or None: never
    an empty list, so a caller may test ``is not None``.

    :param box: this thread's hop box, when the caller has it at hand.
    :param count: the hop count the receivers run with, ``message.hops + 1``, when the
        caller has it at hand: reading ``hops`` from the message is a subscript the
        interpreter cannot specialise (a Message is a tuple subclass), which costs about
        5% of a send, and a constant (``send``'s 1) saves the addition too.
    """
    if box is None:
        box = get_box(None)
        if box is None or box[1] != get_ident():
            box = hop_box()
    if count is None:
        count = message[3] + 1
    outer = box[0]
    box[0] = count
    errors = None
    try:
        for ref, guard, subscription in route:
            receiver = ref()
            if receiver is None:
                continue
            if answer is not None:
                answer.calling(subscription, receiver)
            try:
                if guard is None or guard(message):
                    result = receiver(message)
                    if result is not None and type(result) in _NOT_AWAITED:
                        raise not_awaited(receiver, result)
                    if answer is not None:
                        answer.returned(subscription, result)
            except Exception as exc:  # noqa: BLE001 - isolated by design
                if answer is None or not answer.raised(subscription, receiver, exc):
                    errors = failed(bus, errors, subscription, message, exc)
    finally:
        box[0] = outer
    return errors


#: what a plain receiver may return that nothing will run: a failure of the receiver
_NOT_AWAITED = frozenset((types.CoroutineType, types.AsyncGeneratorType))


def not_awaited(receiver: object, result: object) -> TypeError:
    """The failure of a plain receiver that returned a coroutine (``lambda m: handle(m)``
    with an ``async def handle``, a decorator's sync wrapper) or an async generator:
    the bus calls it as a plain function, so nothing would ever run what it returned.
    The coroutine is closed (Python's own warning would name no message)."""
    if type(result) is types.CoroutineType:
        result.close()
        what, advice = "a coroutine", ("subscribe the async def function itself, or make "
                                        "the wrapper async def and await it")
    else:
        what, advice = "an async generator", ("a receiver is a function, or an async def "
                                               "without yield")
    return TypeError(f"receiver {receiver!r} returned {what}, which nothing runs: the "
                     f"message was not handled; {advice}")


def failed(bus: Bus, errors: list[Exception] | None, subscription: Subscription,
           message: Message, exc: Exception) -> list[Exception] | None:
    """The error policy: keep ``exc`` to raise (``raise_errors``, or a full queue's
    refusal, which the sender must hear of), or log it."""
    if bus.raise_errors or isinstance(exc, QueueFull):
        if errors is None:
            errors = []
        errors.append(exc)
        return errors
    logger.error(
        "receiver %r of %s failed on message %s", subscription.ref(), subscription.pattern,
        message[0], exc_info=exc,
    )
    return errors


def drop_tracebacks(*errors: BaseException | None) -> None:
    """Let go of the tracebacks of ``errors`` (and of the exceptions they group), where
    what :func:`deliver` returned is counted or answered rather than raised on.

    A traceback holds the receiver's frame, whose caller is :func:`deliver`'s frame,
    which holds the list the exception is kept in: a cycle, which kept the message (1 MiB,
    say) until the cyclic collector ran; with few large messages it seldom runs (on Python
    3.13 a node held 68 MiB for 68 refusals)."""
    for error in errors:
        if error is not None:
            error.with_traceback(None)
            if isinstance(error, BaseExceptionGroup):
                drop_tracebacks(*error.exceptions)


def raise_errors(ident: Identifier, errors: list[Exception], observers: int = 0) -> NoReturn:
    """Raise what :func:`deliver` collected: a lone refusal as itself, else a group.

    :param observers: how many of ``errors``, at their end, are observers' failures
        (:func:`observe`): a lone one is raised as itself too.

    ``errors`` is emptied: the frames the exception passes through (the sender's, and
    :func:`deliver`'s, reached from the receiver's) hold that list, and a frame that held
    the exception raised through it would keep it, its message and its frames in a cycle
    until the cyclic collector ran (see :func:`drop_tracebacks`)."""
    if len(errors) == 1 and (observers or isinstance(errors[0], QueueFull)):
        raise errors.pop()
    if observers:
        raise ExceptionGroup(f"{len(errors) - observers} receiver(s) and {observers} "
                             f"observer(s) of {ident} failed", _emptied(errors))
    raise ExceptionGroup(f"{len(errors)} receiver(s) of {ident} failed", _emptied(errors))


def observe(bus: Bus, message: Message, errors: list[Exception] | None) -> None:
    """Show ``message`` to every tap of ``bus`` (the plugins' ``berrymq_observe_message``),
    then raise what the receivers left to raise (``errors``) and what the taps raised.

    One tap that raises does not keep the message from the others, nor its failure the
    receivers' from the sender: they all come in one :class:`ExceptionGroup`, the
    receivers' first (a lone failure, a tap's or a refusal, is raised as itself); see
    :func:`raise_errors`."""
    observers = 0
    for tap in bus.taps:
        try:
            tap(bus=bus, message=message)
        except Exception as exc:  # noqa: BLE001 - raised below, with the others
            if errors is None:
                errors = []
            errors.append(exc)
            observers += 1
    if errors:
        raise_errors(message[0], errors, observers)


def _emptied(errors: list[Exception]) -> list[Exception]:
    """A copy of ``errors``, which is left empty."""
    taken = errors.copy()
    errors.clear()
    return taken


def with_refusal(errors: list[Exception] | None, refused: QueueFull) -> list[Exception]:
    """``errors``, then a refusal of the same message by the peers' buffers
    (:func:`forward_first`) or the worker pool, raised after the receivers here had it.
    The caller lets go of ``refused`` then (:func:`raise_errors` says why)."""
    if errors is None:
        return [refused]
    errors.append(refused)
    return errors


def looping(bus: Bus, ident: Identifier, hops: int) -> bool:
    """The hop limit, for every way a message is handed on (``twitter``, ``talk``, ``ask``,
    a message from a peer): True when a message at ``hops`` may go no further, counted
    as dropped (``bus.losses``, one log line per burst)."""
    if hops < bus.hop_limit:
        return False
    bus.state(LOSSES).add(
        HOP_LIMIT, logging.WARNING, "dropped message %s: it was handed on %d times "
        "(hop limit %d); is there a receiver loop?", ident, hops, bus.hop_limit,
    )
    return True


class TalkAnswer:
    """``talk``: send each non-None return value to ``reply_to`` (an async receiver's
    when its coroutine is done), of the receivers whose kind answers (``answers``): what
    another kind returns (a store's own bookkeeping) is no reply, as for ``ask``."""

    __slots__ = ("bus", "hops", "reply_to", "send")

    def __init__(self, bus: Bus, reply_to: Identifier, hops: int, from_peer: bool = False
                 ) -> None:
        self.bus = bus
        self.reply_to = reply_to
        self.hops = hops  # of the reply: the message's plus one
        #: ``twitter``; for a wildcard reply_to from a peer, not to local receivers
        self.send: Callable[[Identifier, object], None] = (
            _replier_for_peer(bus) if from_peer and reply_to.name == WILDCARD
            else bus.twitter)

    def calling(self, subscription: Subscription, receiver: object) -> None:
        pass

    def returned(self, subscription: Subscription, result: object) -> None:
        if result is None or not subscription.answers:
            return
        if type(result) is PendingReply:
            result.send_reply(self.bus, self.reply_to, self.hops, self.send)
        else:
            self.send(self.reply_to, result)

    def raised(self, subscription: Subscription, receiver: object, exc: Exception) -> bool:
        return False


def _replier_for_peer(bus: Bus) -> Callable[[Identifier, object], None]:
    """``bus.twitter`` for the replies to a talk from another process whose ``reply_to``
    has a wildcard name (``*:done``): to the peers and to this bus's receivers, but for
    those of local patterns, as the talk itself (a client named ``*:shutdown`` to have a
    node's private ``_admin:shutdown`` receiver run with a reply)."""

    def send(reply_to: Identifier, value: object) -> None:
        hops = hop_box()[0]  # (set by deliver: the talk's plus one)
        if not looping(bus, reply_to, hops):
            _dispatch_sent(bus, reply_to, (value,), {}, hops,
                          bus.index.lookup(reply_to, from_peer=True))

    return send


class BusOwner(Protocol):
    """Has a ``bus``: a :class:`Bus` itself, or the holder of the default bus."""

    @property
    def bus(self) -> Bus: ...


def send(owner: BusOwner, identifier: str | Identifier, /, *args: Any, **kwargs: Any) -> None:
    """Send a message to every receiver whose pattern matches ``identifier``.

    Without a worker pool every matching receiver has run, in registration order, when
    this returns. Messages whose name does not start with ``_`` also go to connected nodes.
    """
    # The hot path, written once for two callers: as Bus.twitter ``owner`` is the bus
    # (whose ``.bus`` is itself); as berrymq.twitter it is the default-bus holder, read
    # on each call so that use_bus() takes effect. Each bytecode here costs a few percent
    # of a send: the common case (a cached DIRECT route, not sent from inside a
    # receiver) is told from all others by one test, and they go to _send_other.
    bus = owner.bus
    try:
        ident, route, how = bus.routes[identifier]  # a subscript is cheaper than .get
    except (KeyError, TypeError):  # TypeError: unhashable, which parsing then names
        ident, route, how = bus.index.miss(identifier)
    box = get_box(None)
    if box is None or box[1] != get_ident():  # none yet, or another thread's
        box = hop_box()
    # (``!= 0``, not truth: a compare of two small ints is specialised with its jump)
    if box[0] != 0 or how != 0:  # the hop count is 0 unless sent from inside a receiver
        _send_other(bus, ident, route, how, box, args, kwargs)
        return
    errors = deliver(bus, route, new_message((ident, args, kwargs, 0, None)), None, box, 1)
    if errors is not None:
        raise_errors(ident, errors)


def _send_other(bus: Bus, ident: Identifier, route: tuple[RouteEntry, ...], how: int,
                box: list[int], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """:func:`send` from inside a receiver (a hop count above 0), to nobody, or to a pool,
    taps or peers (``how``)."""
    hops = box[0]
    if looping(bus, ident, hops):
        return
    if how == NOBODY:
        return
    if how == DISPATCH:  # a worker pool or taps
        _dispatch_sent(bus, ident, args, kwargs, hops, route)
        return
    if how == DIRECT:  # sent from inside a receiver
        errors = deliver(bus, route, new_message((ident, args, kwargs, hops, None)), None, box,
                         hops + 1)
        if errors:
            raise_errors(ident, errors)
        return
    # FORWARD: the peers, then the receivers here (see forward_first). The message that
    # leaves gets its uid now, not in a copy made to forward it.
    node = bus.node
    assert node is not None
    message = new_message((ident, args, kwargs, hops, node.new_uid()))
    refused = forward_first(bus, message, None, None)
    errors = deliver(bus, route, message, None, box, hops + 1) if route else None
    if refused is not None:  # a full outgoing buffer: reported after the local failures
        errors, refused = with_refusal(errors, refused), None
    if errors:
        raise_errors(ident, errors)


def _dispatch_sent(bus: Bus, ident: Identifier, args: tuple[Any, ...], kwargs: dict[str, Any],
                  hops: int, route: tuple[RouteEntry, ...]) -> None:
    """Make and :meth:`~berrymq.Bus.dispatch` a message sent here (with a uid for peers)."""
    node = bus.node
    uid = node.new_uid() if node is not None and node.forwarders and not ident.is_local else None
    bus.dispatch(new_message((ident, args, kwargs, hops, uid)), route, None)


def forward_first(bus: Bus, message: Message, origin: Forwarder | None,
                  reply_to: Identifier | None) -> QueueFull | None:
    """Hand ``message`` to the other nodes (all but ``origin``) before its receivers here
    run, so that whatever they send in turn leaves after it: a third node never sees a
    reply before the message it answers. Returns a full outgoing buffer's refusal, for the
    caller to raise once the receivers here have had the message."""
    node = bus.node
    if node is None or not node.forwarders or message[0].is_local:
        return None
    try:
        node.forward(message, origin, reply_to)
    except QueueFull as exc:
        return exc
    return None


def run_here(bus: Bus, route: tuple[RouteEntry, ...], message: Message,
             answer: Answer | None) -> list[Exception] | None:
    """The receivers here of a message handed on from elsewhere (a peer, ``talk``): run in
    this thread, or handed to the worker pool, whose refusal when it stayed full comes
    back as a failure to raise. Returns the failures to raise, or None.

    With a pool, receivers that only store (``Subscription.stores``: queues) still run
    here, in the sender's thread: workers would store one sender's messages in whatever
    order they happened to run, and a queue is first in, first out."""
    pool = bus.pool
    if pool is None:
        return deliver(bus, route, message, answer)
    errors = None
    if any(entry[2].stores for entry in route):
        errors = deliver(bus, tuple(e for e in route if e[2].stores), message, answer)
        route = tuple(e for e in route if not e[2].stores)
    try:
        if route:
            pool.submit(route, message, answer)
    except QueueFull as exc:
        return with_refusal(errors, exc)
    return errors or None


def deliver_talk(bus: Bus, message: Message, reply_to: Identifier,
                 refused: QueueFull | None = None, from_peer: bool = False) -> None:
    """Deliver a :func:`berrymq.talk` message here (in this thread, or on the worker pool)
    and send each receiver's non-None result to ``reply_to``.

    :param refused: a full outgoing buffer's refusal of the same message, handed on to the
        peers just before (:func:`forward_first`): raised after the receivers here had the
        message, together with their failures.
    :param from_peer: the message came from another process (see
        :meth:`~berrymq._index.Index.lookup`).
    """
    route = bus.index.lookup(message[0], from_peer)
    errors = None
    if route:
        errors = run_here(bus, route, message,
                          TalkAnswer(bus, reply_to, message[3] + 1, from_peer))
    if refused is not None:
        errors, refused = with_refusal(errors, refused), None
    if bus.taps:  # as Bus.dispatch: a talk message is observed like any other
        observe(bus, message, errors)
    elif errors:
        raise_errors(message[0], errors)

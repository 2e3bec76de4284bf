"""The local part of an ``ask``: this bus's receivers run on the request, in this thread.

:func:`ask_local` delivers the request (through :func:`deliver
<berrymq._delivery.deliver>`) with a :class:`_Collect` answer that keeps each answering
receiver's return value, or a :class:`~berrymq.ReplyError` entry for one that raised;
:func:`settle_replies` waits for the replies of ``async def`` receivers, and
:func:`replies_so_far` is the answer of those cut at a deadline. :mod:`berrymq.ask` runs
this part in a helper thread, beside the peers; a node runs it for a remote ``ask``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import time
from asyncio import _get_running_loop  # in asyncio's __all__: None, not an exception
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from berrymq._delivery import deliver, raise_errors
from berrymq._index import RouteEntry
from berrymq._pending import PendingReply
from berrymq.aio import OWN_LOOP, AsyncReceiver, asking_from, claim_reply, describe_receiver
from berrymq.errors import QueueFull, ReplyError
from berrymq.message import Message
from berrymq.subscription import Subscription
from berrymq.timeouts import seconds_left, wait_limit

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["Refused", "ask_local", "failed_entry", "no_answer", "replies_so_far", "settle_replies"]

#: What is told of each refusal by a full queue or receiver of a request (a node counts it).
Refused = Callable[[QueueFull], object]


def settle_replies(replies: list[Any], timeout: float | None, node: str = "", *,
                   told: float | None = None) -> list[Any]:
    """Replace each :class:`PendingReply` in ``replies`` by its result (blocking).

    Waits at most ``timeout`` seconds in all; a reply that is not there by then, or whose
    coroutine raised, becomes a :class:`berrymq.ReplyError`. A coroutine that would have
    to run on the very loop this thread is running cannot be waited for without a
    deadlock: it becomes an error entry that says to use :func:`ask_async`. The timeout
    entries name ``told``, the timeout the asker gave (``timeout`` when not given): what
    is left of it may be less, and the asker knows only its own.
    """
    if told is None:
        told = timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    running = _get_running_loop()
    settled = list(replies)
    for index, reply in enumerate(replies):
        if type(reply) is not PendingReply:
            continue
        reply.claimed = True
        if running is reply.loop:
            settled[index] = ReplyError("RuntimeError", OWN_LOOP, reply.receiver, node)
            continue
        try:
            settled[index] = reply.result(seconds_left(deadline))
        except TimeoutError:  # (a stopped loop, e.g. between run_until_complete calls
            # of this very thread, never ran the coroutine: said, as the cause to look at)
            loop = reply.loop
            idle = ("" if loop.is_running() else ": its event loop is closed" if loop.is_closed()
                    else ": its event loop is not running, and nothing runs the coroutine "
                    "until it does")
            settled[index] = ReplyError(
                "TimeoutError", f"no reply within {told:g}s{idle}", reply.receiver, node
            )
        except concurrent.futures.CancelledError as exc:
            settled[index] = ReplyError("CancelledError", str(exc) or "the reply was cancelled",
                                        reply.receiver, node)
        except Exception as exc:  # noqa: BLE001 - becomes an error entry
            settled[index] = failed_entry(exc, reply.receiver, node)
    return settled


def failed_entry(exc: BaseException, who: str, node: str) -> ReplyError:
    """The entry, among an ask's replies, of a receiver, a part or a peer that raised."""
    return ReplyError(type(exc).__name__, str(exc), who, node)


def no_answer(who: str, timeout: float, node: str) -> ReplyError:
    """The entry, among an ask's replies, of a part or a peer still silent at the deadline."""
    return ReplyError("TimeoutError", f"no answer within {timeout:g}s", who, node)


class _Collect:
    """The answer of ``ask``: every answering receiver's return value, in order; an
    exception becomes a :class:`ReplyError` entry. Queues store the request instead; a
    full one's refusal is not a reply, and does not stop the replies: it becomes a
    ``QueueFull`` entry naming the queue, said after them (:meth:`add_refusals`), and is
    handed to ``refused`` (a node counts it, as it does a refused message)."""

    __slots__ = ("message", "node", "pending", "refusals", "refused", "replies", "running")

    def __init__(self, message: Message, node: str, replies: list[Any],
                 running: list[str] | None,
                 refused: Refused | None = None) -> None:
        self.message = message
        self.node = node
        self.replies = replies
        self.running = running
        self.pending = False
        self.refused = refused
        #: the receivers (queues) that refused the request, and their entries
        self.refusals: list[tuple[object, ReplyError]] = []

    def calling(self, subscription: Subscription, receiver: object) -> None:
        answers = subscription.answers
        # an async receiver's reply is claimed before its loop has it (see claim_reply)
        claim_reply(self.message if answers and type(receiver) is AsyncReceiver else None)
        if self.running is not None and answers:
            self.running[:] = [describe_receiver(receiver)]

    def returned(self, subscription: Subscription, result: object) -> None:
        if not subscription.answers:
            return
        if type(result) is PendingReply:
            result.claimed = self.pending = True
        self.replies.append(result)

    def raised(self, subscription: Subscription, receiver: object, exc: Exception) -> bool:
        if isinstance(exc, QueueFull) and self.refused is not None:
            self.refused(exc)
        if subscription.answers:
            self.replies.append(failed_entry(exc, describe_receiver(receiver), self.node))
            return True
        if not isinstance(exc, QueueFull):
            return False  # a queue that failed otherwise: the bus's error policy
        who = f"{subscription.kind} {subscription.pattern}"  # "queue task:*"
        entry = ReplyError("QueueFull", str(exc), who, self.node)  # (a node's: a subclass)
        self.refusals.append((receiver, entry))
        return True

    def add_refusals(self) -> None:
        """Add the entries of the queues that refused the request after the replies."""
        self.replies.extend(entry for _, entry in self.refusals)


class _NamingCollect(_Collect):
    """:class:`_Collect` for an answer that leaves the process: it also notes, in
    ``receivers``, the receiver of each entry (its index is the entry's), so that a reply
    JSON cannot hold can name its receiver (:func:`berrymq.wire.encode_reply`). A receiver
    is noted before its entry, so a copy of ``receivers`` taken after one of the replies
    covers every entry of that one. A local ``ask`` uses :class:`_Collect`: none of this."""

    __slots__ = ("current", "receivers")

    def __init__(self, message: Message, node: str, replies: list[Any],
                 running: list[str] | None, receivers: list[object],
                 refused: Refused | None = None) -> None:
        super().__init__(message, node, replies, running, refused)
        self.receivers = receivers
        self.current: object = None

    def calling(self, subscription: Subscription, receiver: object) -> None:
        self.current = receiver
        super().calling(subscription, receiver)

    def returned(self, subscription: Subscription, result: object) -> None:
        if subscription.answers:
            self.receivers.append(self.current)
        super().returned(subscription, result)

    def raised(self, subscription: Subscription, receiver: object, exc: Exception) -> bool:
        if subscription.answers:
            self.receivers.append(receiver)
        return super().raised(subscription, receiver, exc)

    def add_refusals(self) -> None:
        self.receivers.extend(receiver for receiver, _ in self.refusals)
        super().add_refusals()


def ask_local(bus: Bus, message: Message, timeout: float | None = 5.0, *,
              into: list[Any] | None = None, running: list[str] | None = None,
              receivers: list[object] | None = None,
              refused: Refused | None = None,
              answered: Callable[[], bool] | None = None,
              from_loop: asyncio.AbstractEventLoop | None = None,
              from_peer: bool = False) -> list[Any]:
    """See :meth:`Bus.ask_local <berrymq.Bus.ask_local>`; ``receivers`` (for a remote
    ``ask``): append the receiver of each entry to it, at the entry's index; ``refused``:
    called with each refusal of a receiver or a queue (a full one), in the thread that
    ran it, for a node to count (the asker has its ``QueueFull`` entry); ``answered``
    (when the asker may stop waiting before the receivers are done, in another thread):
    true once the asker was answered without them, after which no further receiver
    starts: one that had not started by the deadline never runs, as its entry says;
    ``from_loop``: the loop of the asker's thread, when that is not this one (see
    :func:`~berrymq.aio.asking_from`); ``from_peer``: asked by another process (see
    :meth:`~berrymq._index.Index.lookup`)."""
    timeout = wait_limit("timeout", timeout)
    replies = [] if into is None else into
    collect = (_Collect(message, bus.node_id, replies, running, refused) if receivers is None
               else _NamingCollect(message, bus.node_id, replies, running, receivers, refused))
    route: Iterable[RouteEntry] = bus.index.lookup(message[0], from_peer)
    if answered is not None:
        route = itertools.takewhile(lambda _entry: not answered(), route)
    if from_loop is not None:
        asking_from(from_loop)
    try:
        errors = deliver(bus, route, message, collect)
    finally:
        claim_reply(None)  # not taken (a guard said no): no later call may take it
        if from_loop is not None:
            asking_from(None)
    collect.add_refusals()
    if running is not None:
        running.clear()  # every receiver was called; only async replies may be awaited
    if errors:
        raise_errors(message[0], errors)
    if collect.pending:
        collect.replies[:] = settle_replies(collect.replies, timeout, bus.node_id)
    return collect.replies


def replies_so_far(replies: list[Any], running: list[str], who: str, timeout: float,
                   node: str) -> list[Any]:
    """The answer of receivers asked with :func:`ask_local` (``into=replies``,
    ``running=running``, in another thread) once the deadline passed: the replies so far
    (async ones not in yet become timeout entries), then one ``TimeoutError`` entry for the
    receiver still running, or for ``who`` when none had started."""
    running = list(running)
    answered = settle_replies(list(replies), 0, node, told=timeout)  # said: the ask's
    if not running and replies:
        return answered
    return [*answered, no_answer(running[0] if running else who, timeout, node)]

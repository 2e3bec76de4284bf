"""A remote ``ask`` answered by its ``timeout``, counted from the request's arrival.

The receivers of an ``ask`` run on a :data:`~berrymq_jsonrpc.sessions.WAITS` thread. For
one ``ask`` with a timeout, the transport arms a timer on the I/O loop as the request
comes in (:func:`ask_timeout` says how long) and hands the request and an
:class:`AskProgress` to that thread. Whichever comes first answers: the thread, with every
reply, or the timer, with the replies so far and a ``TimeoutError`` entry naming the
receiver still running (:meth:`WaitingMethods.answer_expired
<berrymq_jsonrpc.waiting_methods.WaitingMethods.answer_expired>`); the other's answer is dropped. No
thread waits for the deadline (an ask costs no thread more than one that has none), and
an ask still waiting for a free thread keeps its deadline all the same. A timeout of 0 is
answered at once by the loop, without a thread: no receiver could have run by then.

An ``ask`` in a batch is answered the same way (see :mod:`berrymq_jsonrpc.waiting`). One
in the original berryMQ's JSON-RPC 1.0 dialect has no timer: its receivers run on a helper
thread of the bus and the thread answering waits for them up to the deadline
(:func:`berrymq.ask.ask_local_by`).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq.ask import ask_local_by
from berrymq.message import Message
from berrymq.transports.support import Refused, ask_local, replies_so_far
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.params import as_float
from berrymq_jsonrpc.sessions import WAIT_THREADS, WAITS

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.stats import NodeStats

__all__ = ["AskProgress", "answer_with", "ask_arrived", "ask_timeout", "local_replies",
           "not_started"]

#: How long an ``ask`` without a timeout waits for its ``async def`` receivers.
ASYNC_REPLY_WAIT = 5.0


class AskProgress:
    """One ``ask`` being answered on a thread while its timer runs on the loop."""

    __slots__ = ("arrival", "expired", "lock", "receivers", "replies", "running", "started",
                 "timer")

    def __init__(self) -> None:
        #: set by the thread as it starts answering
        self.started = False
        #: the replies so far, appended by the thread running the receivers
        self.replies: list[Any] = []
        #: the receiver of each reply, at its index (a reply that is not JSON names it)
        self.receivers: list[object] = []
        #: the name of the receiver running now (one element), empty between receivers
        self.running: list[str] = []
        #: set on the loop when the timer answered first: the thread's answer is dropped
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None
        #: the verdict on the request's arrival (:func:`ask_arrived`), once given
        self.arrival: bool | None = None
        self.lock = threading.Lock()  # one verdict, even when thread and timer race


#: The progress of the ``ask`` this thread is answering (see :func:`answer_with`).
_PROGRESS: contextvars.ContextVar[AskProgress | None] = contextvars.ContextVar(
    "berrymq_jsonrpc_ask_progress", default=None)


def ask_timeout(request: Any) -> float | None:
    """The timeout of ``request`` when it is one ``ask`` with a usable ``timeout`` (a
    number >= 0, by name or by position), else None: a timer is armed for these only."""
    if type(request) is not dict or request.get("method") != p.METHOD_ASK:
        return None
    if p.is_v1(request):  # JSON-RPC 1.0: no timer (see the module)
        return None
    params = p.named_params(p.METHOD_ASK, request.get("params"))
    timeout = params.get("timeout") if params is not None else None
    if (type(timeout) is int or type(timeout) is float) and 0 <= (
            timeout := as_float(timeout)) < math.inf:
        return timeout
    return None  # absent, null, or something the method itself refuses


def answer_with(progress: AskProgress, handle: Callable[[], bytes | None]) -> bytes | None:
    """Run ``handle`` (the service answering the request) with ``progress`` as the
    ``ask``'s: its receivers report to it, or, once expired, it gives the answer."""
    token = _PROGRESS.set(progress)
    try:
        return handle()
    finally:
        _PROGRESS.reset(token)


def ask_arrived(bus: Bus, stats: NodeStats, message: Message, peer: object) -> bool:
    """An ``ask`` of ``message`` came in from ``peer``: count it as a message in (as
    docs/status.md says), and say whether to answer it. A peer with several links to this
    node (two ``interconnect``, a ``connect_oneway``) asks over each with one uid; the
    node answers the first (SPEC: a message is delivered once per node) and counts the
    others as duplicates, as it does a forwarded message that came by two ways.

    Once per request: the timer answers a request its thread is answering too (both run
    the method, and may race); both get the first one's verdict."""
    progress = _PROGRESS.get()
    if progress is None:
        return _first_arrival(bus, stats, message, peer)
    with progress.lock:  # one per ask, never on the send_message path
        if progress.arrival is None:
            progress.arrival = _first_arrival(bus, stats, message, peer)
        return progress.arrival


def _first_arrival(bus: Bus, stats: NodeStats, message: Message, peer: object) -> bool:
    stats.message_in(message[0], peer)  # stats
    uid = message[4]
    if uid is None or bus.first_request(uid):
        return True
    stats.duplicate()  # stats
    return False


def local_replies(bus: Bus, message: Message, timeout: float | None,
                  refused: Refused | None = None) -> tuple[list[Any], list[object]]:
    """The replies of ``bus``'s receivers to a remote ``ask`` of ``message``: by the
    timer's deadline (see the module), by ``timeout`` from now, or, without one, from
    every receiver; with the receiver of each reply, at its index (so that a reply JSON
    cannot hold names its receiver: :func:`berrymq.wire.encode_replies`). A full queue's
    refusal is an entry after the replies, and is told to ``refused`` once, by the thread
    that ran the receivers (:func:`berrymq.transports.support.ask_local`). A ``timeout`` of 0 is answered
    at once and runs no receiver, with or without a timer (docs/protocol.md, ask)."""
    progress = _PROGRESS.get()
    if progress is not None and progress.expired:  # the timer answers: what came in by now
        return _at_deadline(bus, message, timeout or 0.0, progress)
    if timeout == 0:  # (a JSON-RPC 1.0 ask has no timer: the same answer)
        return _at_deadline(bus, message, 0.0, None)
    if progress is not None:
        replies = ask_local(bus, message, ASYNC_REPLY_WAIT if timeout is None else timeout,
                            into=progress.replies, running=progress.running,
                            receivers=progress.receivers, refused=refused,
                            answered=lambda: progress.expired, from_peer=True)
        return replies, progress.receivers
    receivers: list[object] = []
    if timeout is None:
        return ask_local(bus, message, ASYNC_REPLY_WAIT, receivers=receivers,
                         refused=refused, from_peer=True), receivers
    replies = ask_local_by(bus, message, time.monotonic() + timeout, timeout, receivers,
                           refused, from_peer=True)
    return replies, receivers


def _at_deadline(bus: Bus, message: Message, timeout: float, progress: AskProgress | None
                 ) -> tuple[list[Any], list[object]]:
    """The answer once an ask's ``timeout`` ran out: the replies so far (of ``progress``,
    none without it), then a ``TimeoutError`` entry naming the receiver still running, or
    saying why none had started (:func:`not_started`)."""
    if not bus.index.lookup(message[0], from_peer=True):
        return [], []
    who = f"local receivers of {message[0]}"
    if progress is None or not progress.started:
        who += not_started(timeout)
    if progress is None:
        return replies_so_far([], [], who, timeout, bus.node_id), []
    replies = replies_so_far(progress.replies, progress.running, who, timeout, bus.node_id)
    return replies, list(progress.receivers)  # copied after: it covers the replies


def not_started(timeout: float) -> str:
    """Why an ask's receivers had not started when its ``timeout`` ran out: every thread
    that runs asks was busy, or else the timeout was too short for a thread to start them
    (a timeout of 0 always is, busy threads or not)."""
    if timeout > 0 and WAITS.saturated:
        return f" (not started in time: the node runs at most {WAIT_THREADS} asks at once)"
    return f" (not started: the ask's timeout of {timeout:g}s ran out before they started)"

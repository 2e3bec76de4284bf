"""Request and reply: :meth:`Bus.ask <berrymq.Bus.ask>`, its local part and its awaitable form.

``ask`` gathers the replies of the local receivers (:func:`ask_local
<berrymq._ask_local.ask_local>`) and of every connected peer that can carry requests,
each part in a helper thread so that the asker stops waiting at the deadline whatever a
receiver or a peer does; a lone peer whose link keeps the deadline itself
(:class:`~berrymq.node.Requester`) is asked in the asker's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
from asyncio import _get_running_loop  # in asyncio's __all__: None, not an exception
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from berrymq._ask_local import Refused, ask_local, failed_entry, no_answer, replies_so_far
from berrymq._delivery import looping
from berrymq._hops import carrying_hops, hop_box
from berrymq.errors import BusClosed
from berrymq.identifier import Identifier, parse
from berrymq.message import Message, new_message
from berrymq.state import StateKey
from berrymq.timeouts import seconds_left, wait_seconds
from berrymq.wait_threads import WaitThreads

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["ASK_EXECUTOR", "ASK_PARTS", "ask", "ask_async_on", "ask_local_by", "ask_timeout"]

T = TypeVar("T")


def ask_local_by(bus: Bus, message: Message, deadline: float, timeout: float,
                 receivers: list[object] | None = None,
                 refused: Refused | None = None,
                 from_loop: asyncio.AbstractEventLoop | None = None,
                 from_peer: bool = False) -> list[Any]:
    """The replies of this bus's receivers of ``message`` by ``deadline`` (a
    ``time.monotonic()`` time): they run on a helper thread of the bus (:data:`ASK_PARTS`),
    so that a receiver still running then gives a ``TimeoutError`` entry (its late reply is
    dropped) instead of holding the caller. ``ask`` asks its local receivers so, and a
    node so answers a remote ``ask`` that has a timeout (``receivers``: as for
    :func:`ask_local`, and ``refused``; ``from_loop``: the event loop the asker's thread
    runs, which the ask blocks, so that its async receivers are refused at once: see
    :func:`~berrymq.aio.asking_from`; ``from_peer``: asked by another process, see
    :meth:`~berrymq._index.Index.lookup`)."""
    ident = message[0]
    if not bus.index.lookup(ident, from_peer):
        return []
    part = _AskPart.start(
        bus, f"local receivers of {ident}",
        lambda part: ask_local(bus, message, timeout, into=part.replies, running=part.running,
                               receivers=receivers, refused=refused,
                               answered=functools.partial(part.past, deadline),
                               from_loop=from_loop, from_peer=from_peer),
    )
    return part.result(deadline, timeout, bus.node_id)


class _AskPart:
    """One source of replies to an ask (the local receivers, or one peer), answered in a
    helper thread so that the asker can stop waiting at the deadline. The threads are the
    bus's (:data:`ASK_PARTS`), reused from call to call: starting a thread per part cost
    more than the rest of an ask over the network."""

    def __init__(self, who: str, keeps_deadline: bool = False) -> None:
        self.who = who
        #: the work returns by the deadline with what it has (a requester that keeps its
        #: deadline): worth waiting :data:`_KEPT_GRACE` more for, rather than losing it
        self.keeps_deadline = keeps_deadline
        self.replies: list[Any] = []
        self.running: list[str] = []
        self.error: BaseException | None = None
        self.future: concurrent.futures.Future[None] | None = None
        #: the deadline passed before every receiver had started: those left never will
        self.cut = False
        #: every helper thread was busy when the part was handed over (what a part not
        #: started in time says: without it, a timeout too short for the idle thread to
        #: take it was blamed on 128 busy threads)
        self.crowded = False

    def past(self, deadline: float) -> bool:
        """Whether ``deadline`` passed, before the next receiver would start (then it
        does not, nor those after it: the asker had its answer without them)."""
        if time.monotonic() >= deadline:
            self.cut = True
        return self.cut

    @classmethod
    def start(cls, bus: Bus, who: str, work: Callable[[_AskPart], Any],
              keeps_deadline: bool = False) -> _AskPart:
        part = cls(who, keeps_deadline)

        def run() -> None:
            threading.current_thread().name = _PART_THREAD
            try:
                work(part)
            except BaseException as exc:  # noqa: BLE001 - reported as an entry (sys.exit()
                part.error = exc  # in a receiver too: the helper thread cannot end the process)

        with contextlib.suppress(BusClosed):  # (then _submitted says so)
            part.crowded = bus.state(ASK_PARTS).saturated
        part.future = _submitted(bus, ASK_PARTS, run)  # None: no replies, the bus closed
        return part

    def result(self, deadline: float, timeout: float, node: str) -> list[Any]:
        """The replies, once the part finished or the deadline passed (a part that keeps
        the deadline itself is given :data:`_KEPT_GRACE` more to hand over what it has:
        its replies exist only once it returns, so cutting it at the same moment would
        lose those that came)."""
        future = self.future
        if future is not None:
            grace = _KEPT_GRACE if self.keeps_deadline else 0.0
            concurrent.futures.wait([future], seconds_left(deadline + grace))
            if not future.done():
                if future.cancel():  # not started yet: never will
                    why = (f"every one of the bus's {ASK_PART_THREADS} threads for asks was "
                           "busy, each with a receiver of an earlier ask still running"
                           if self.crowded else "the timeout passed before a thread took it")
                    who = f"{self.who} (not started in time: {why})"
                    return replies_so_far([], [], who, timeout, node)
                return replies_so_far(self.replies, self.running, self.who, timeout, node)
            if self.cut:  # done, but by stopping at the deadline: the rest said as waited for
                return replies_so_far(self.replies, [self.who], self.who, timeout, node)
        if self.error is not None:
            if self.keeps_deadline and time.monotonic() >= deadline - _CLOCK_SLACK:
                return [*self.replies, no_answer(self.who, timeout, node)]
            return [*self.replies, failed_entry(self.error, self.who, node)]
        return self.replies


def _ask_part(bus: Bus, requester: Any, message: Message, timeout: float) -> _AskPart:
    """Ask one peer in a helper thread. A requester that keeps its deadline is given the
    asker's timeout: it returns by then with the replies that came (NATS: one entry per
    silent process). Any other is given a little grace, so that the deadline here always
    fires first and a silent peer reads the same whichever side noticed (a TimeoutError)."""
    kept = bool(getattr(requester, "keeps_deadline", False))
    limit = timeout if kept else timeout + _KEPT_GRACE

    def work(part: _AskPart) -> None:
        part.replies.extend(requester.request(message, limit))

    return _AskPart.start(bus, repr(requester), work, kept)


def _ask_in_this_thread(bus: Bus, requester: Any, message: Message, deadline: float,
                        timeout: float) -> list[Any]:
    """Ask a lone peer whose link keeps the deadline itself, without a helper thread;
    what goes wrong reads as it would from an :class:`_AskPart`."""
    try:
        return list(requester.request(message, timeout))
    except Exception as exc:  # noqa: BLE001 - reported as an entry
        if time.monotonic() >= deadline - _CLOCK_SLACK:
            return [no_answer(repr(requester), timeout, bus.node_id)]
        return [failed_entry(exc, repr(requester), bus.node_id)]


#: how far before the deadline a requester's failure still reads as the deadline passing
#: (a timed wait may wake a little early)
_CLOCK_SLACK = 0.01
#: how long after the deadline the asker waits for a part that keeps the deadline itself
#: to hand over its replies (it started a little after the asker's clock did)
_KEPT_GRACE = 0.25


def ask(bus: Bus, identifier: str | Identifier, args: tuple[Any, ...], kwargs: dict[str, Any],
        timeout: float, deadline: float | None = None) -> list[Any]:
    """See :meth:`Bus.ask <berrymq.Bus.ask>`; ``deadline`` (a ``time.monotonic()`` time)
    when the ``timeout`` began before this call (``ask_async`` waited for a thread)."""
    ident = parse(identifier)
    timeout = ask_timeout(timeout)
    hops = hop_box()[0]
    if looping(bus, ident, hops):  # asked from receivers asking in a loop: nobody is asked
        return []
    if deadline is None:
        deadline = time.monotonic() + timeout
    message: Message = new_message((ident, args, kwargs, hops, None))
    requesters = [] if ident.is_local else bus.requesters()
    if requesters:
        message = bus.stamp(message)
    local = bus.index.lookup(ident)
    if (not local and len(requesters) == 1 and _get_running_loop() is None
            and getattr(requesters[0], "keeps_deadline", False)):
        return _ask_in_this_thread(bus, requesters[0], message, deadline, timeout)
    parts = [_ask_part(bus, requester, message, timeout)
             for requester in requesters]  # asked while the local receivers run
    replies = ask_local_by(bus, message, deadline, timeout,
                           from_loop=_get_running_loop()) if local else []
    for part in parts:
        replies.extend(part.result(deadline, timeout, bus.node_id))
    return replies


def ask_timeout(timeout: object) -> float:
    """An ask's ``timeout`` checked before anything runs: seconds, more than 0; an
    infinite one is :data:`~berrymq.timeouts.LONGEST_WAIT` (no limit, in practice)."""
    if timeout is None or (isinstance(timeout, int | float) and not timeout > 0):  # NaN too
        raise ValueError(f"ask needs a positive timeout, got {timeout!r}")
    return wait_seconds("timeout", timeout, none=False)  # TypeError for "5" or True


def _executor(bus: Bus) -> WaitThreads:
    # Threads reused across calls; generous in size because a waiting ask holds one
    # thread while the loop runs the async receivers it waits for.
    return WaitThreads(64, "berrymq-ask-async")


def _part_executor(bus: Bus) -> WaitThreads:
    # Its own pool, not ASK_EXECUTOR's: an ask_async holds a thread of that one while
    # its parts run in these. Bounded: a part that finds every thread busy until its
    # deadline is answered as a timeout (and leaves the queue then, with its message).
    return WaitThreads(ASK_PART_THREADS, _PART_THREAD)


def _shutdown(executor: WaitThreads) -> None:
    executor.shutdown(wait=False)


_PART_THREAD = "berrymq-ask"
#: How many parts of asks (the local receivers, a peer) one bus runs at once.
ASK_PART_THREADS = 128

#: The threads that run :func:`ask_async_on` requests of one bus.
ASK_EXECUTOR: StateKey[WaitThreads] = StateKey(
    "ask executor", _executor, _shutdown
)
#: The helper threads of the parts of an ``ask`` (local receivers, each peer), per bus.
ASK_PARTS: StateKey[WaitThreads] = StateKey(
    "ask parts", _part_executor, _shutdown
)


def _submitted(bus: Bus, threads: StateKey[WaitThreads],
               work: Callable[[], T]) -> concurrent.futures.Future[T] | None:
    """``work`` handed to the bus's helper ``threads``; None when the bus is closed, also
    when it closed as this ask began (its threads stopped: RuntimeError), so that the ask
    says what an ask of a closed bus says."""
    try:
        return bus.state(threads).submit(work)
    except (BusClosed, RuntimeError):
        if not bus.closed:
            raise
        return None


async def ask_async_on(bus: Bus, identifier: str | Identifier, /, *args: Any,
                       timeout: float = 5.0, **kwargs: Any) -> list[Any]:
    """:meth:`Bus.ask <berrymq.Bus.ask>` on ``bus`` without blocking the event loop: the
    request runs in a thread of the bus's ask executor (kept in its state, shut down with
    the bus); the caller's hop count goes with it. The timeout counts from this call: a
    request that waited that long for a thread is not run, and is answered with a
    ``TimeoutError`` entry."""
    parse(identifier)  # bad input fails here, in the caller's task
    timeout = ask_timeout(timeout)
    hops = hop_box()[0]
    deadline = time.monotonic() + timeout

    def not_started() -> list[Any]:
        return [no_answer(f"the ask of {identifier} (not started: every ask thread was busy)",
                          timeout, bus.node_id)]

    def run() -> list[Any]:
        if time.monotonic() >= deadline:  # a thread came free just as the deadline passed
            return not_started()
        with carrying_hops(hops):
            return ask(bus, identifier, args, kwargs, timeout, deadline)

    work = _submitted(bus, ASK_EXECUTOR, run)
    if work is None:
        return []  # nobody left to answer, as ask() on a closed bus says
    waiting = asyncio.wrap_future(work)
    try:
        done, _ = await asyncio.wait((waiting,), timeout=max(0.0, deadline - time.monotonic()))
    except asyncio.CancelledError:
        work.cancel()  # not started yet: it never will be (started: it ends by the deadline)
        raise
    if not done and work.cancel():  # every thread busy until the deadline: not waited for
        return not_started()
    return await waiting  # run() started in time, and keeps the deadline itself

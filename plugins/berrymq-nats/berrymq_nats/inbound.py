"""The way in: from ``nats-py``'s reading task to the receivers, through the delivery lane.

Receivers never run on the I/O thread (a slow one would stall every connection, and an
``ask`` from it could never be answered). ``nats-py`` normally gives every subscription a
queue and a task of its own, which could reorder messages on different subjects and
drops messages ("slow consumer") when a queue is full. Instead:

- every subscription of the bridge gets a :class:`Direct` sink in place of its queue: the
  client's reading task hands it each message as it parses it, in wire order;
- the messages for receivers are gathered per chunk the client read (at most what one
  socket read holds), and the chunk goes to :data:`io_loop.lane
  <berrymq.transports.ioloop.IOLoop.lane>` as one piece of work, counted in bytes. When
  the lane is full the reading task waits for room: the connection is simply not read
  until receivers catch up (backpressure; nothing is dropped here);
- answers to this process's own asks, presence and probes are handled on the I/O thread
  at once (they only fill in a waiter or the view of peers), and a request is
  acknowledged there at once; its receivers run on a lane of their own, the answering
  lane (:func:`answer_lane`). A request that finds that lane full is refused at once,
  answered with a ``QueueFull`` entry and counted as a loss: reading goes on.

A message is delivered only if it came on the subject its identifier maps to (and is
not a local one): NATS permissions are given per subject, so a client allowed to
publish on ``<prefix>.~.public.>`` must not reach the receivers of ``deploy@ops:*`` by
naming them in the payload. Any other is dropped and counted (:data:`~berrymq_nats.
losses.WRONG_SUBJECT`, with what others sent, not as this process's loss).
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from berrymq.errors import QueueFull
from berrymq.identifier import Identifier
from berrymq.message import Message, new_message
from berrymq.transports.ioloop import io_loop
from berrymq.transports.lane import DeliveryLane
from berrymq.wire import decode_message, loads
from berrymq_nats.client import after_each_read, skip_undecodable
from berrymq_nats.losses import (
    LANE_STOPPED,
    QUEUE_FULL,
    REFUSED_HERE,
    REQUEST_REFUSED,
    WRONG_SUBJECT,
)
from berrymq_nats.shared import FromBroker

if TYPE_CHECKING:
    from berrymq_nats.bridge import NatsBridge

__all__ = ["DEFAULT_ASK_TIMEOUT", "LONGEST_ASK_TIMEOUT", "Inbound", "Progress", "answer_lane",
           "asker_timeout", "progress"]

logger = logging.getLogger("berrymq.nats")

#: seconds a request is answered within when it carries no ``timeout`` of its asker
DEFAULT_ASK_TIMEOUT = 5.0
#: The longest an asker's timeout from the wire counts for (a day): a longer one, sent
#: by any client, would overflow the waits it bounds.
LONGEST_ASK_TIMEOUT = 86_400.0


def asker_timeout(value: object) -> float:
    """The ``timeout`` extra of a request as it came from the wire: a positive number
    (up to :data:`LONGEST_ASK_TIMEOUT`); :data:`DEFAULT_ASK_TIMEOUT` for anything else
    (absent, a bool, zero, negative, NaN), which the asker's own deadline bounds anyway."""
    if (type(value) is int or type(value) is float) and value > 0:  # NaN > 0 is False
        return min(float(value), LONGEST_ASK_TIMEOUT)
    return DEFAULT_ASK_TIMEOUT


def _refused_here(exc: BaseException) -> bool:
    """A refusal by something here (a full receiver or worker pool), not a peer's link's."""
    return isinstance(exc, QueueFull) and not exc.not_forwarded


class Progress:
    """Process-wide: wakes whoever waits for deliveries (a flush, a request waiting for
    the messages before it), and counts the asks this process is waiting for."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.asks_waiting = 0

    def ask_started(self) -> None:
        with self.cond:
            self.asks_waiting += 1
            self.cond.notify_all()

    def ask_ended(self) -> None:
        with self.cond:
            self.asks_waiting -= 1


progress = Progress()

#: What a message from NATS holds while it waits on a lane besides its payload (its
#: ``Msg``, subject and reply strings, its entry in the batch: about 350 bytes), counted
#: with the payload against the lane's bound in bytes: counted alone, 13-byte messages
#: took 2.5 million (827 MB) to reach 31 MiB of the 64 MiB bound.
MESSAGE_OVERHEAD = 400
_answers: DeliveryLane | None = None
_answers_lock = threading.Lock()


def answer_lane() -> DeliveryLane:
    """The thread that answers requests from other processes (started on first use)."""
    global _answers
    with _answers_lock:
        if _answers is None:
            _answers = DeliveryLane(io_loop, name="berrymq-nats-answers")
        return _answers


@atexit.register
def _stop_answers() -> None:
    if _answers is not None:
        _answers.stop(1.0)


class Inbound:
    """Gathers one bridge's incoming messages per read and delivers them on the lane."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self._batch: list[tuple[Callable[[Msg], None], Msg]] = []
        self._requests: list[tuple[Msg, int]] = []
        self._bytes = 0
        #: messages gathered for the lane (I/O thread) and delivered by it (lane thread)
        self.gathered = 0
        self.delivered = 0
        #: requests received (I/O thread)
        self.requests = 0
        #: whether the reading waits for room in the full lane (I/O thread): the receivers
        #: are behind, and the server may cut the connection off as a slow consumer; and
        #: when it last stopped waiting (the cut is noticed only once it reads again)
        self.behind = False
        self.behind_at: float | None = None
        #: the reply subject and bytes of the last request handed over or refused (I/O thread)
        self._last_request: tuple[str, bytes] | None = None

    def gather(self, handler: Callable[[Msg], None], requests: bool = False
               ) -> Callable[[Msg], None]:
        """A sink for :class:`Direct` that runs ``handler(msg)`` on the lane, later; with
        ``requests``, a request is acknowledged at once and answered on its own thread."""
        batch = self._batch
        ack = self.bridge.asking.acknowledge

        def add(msg: Msg) -> None:
            if msg.reply:
                if requests:
                    ack(msg.reply)
                    self._requests.append((msg, self.gathered))
                    self.requests += 1
                return
            batch.append((handler, msg))
            self._bytes += len(msg.data) + MESSAGE_OVERHEAD
            self.gathered += 1

        return add

    def attach(self, nc: Client) -> bool:
        """Make the client's reading task hand each chunk's messages to the lane, waiting
        while the lane is full, and skip (counted) a message it cannot decode. False when
        this ``nats-py`` has no parser to wrap."""
        return (after_each_read(nc, self._hand_over)
                and skip_undecodable(nc, self.bridge.undecodable))

    async def _hand_over(self) -> None:
        """After each read: the messages to the lane (waiting while it is full), the
        requests to the answering thread (refused at once while it is full: see
        :meth:`_offer_requests`)."""
        batch, requests = self._batch[:], self._distinct(self._requests)
        self._batch.clear()
        self._requests.clear()
        if batch:
            size, self._bytes = self._bytes, 0
            self.behind = waits = not io_loop.lane.has_room(size)
            try:
                await io_loop.lane.put(functools.partial(self._deliver, batch), size)
            except RuntimeError as exc:  # the lane stopped: the process is exiting
                self.bridge.losses.add(LANE_STOPPED, len(batch) + len(requests), str(exc))
                return
            finally:
                self.behind = False
                if waits:
                    self.behind_at = time.monotonic()
        if requests:
            self._offer_requests(requests)

    def _distinct(self, requests: list[tuple[Msg, int]]) -> list[tuple[Msg, int]]:
        """``requests`` without the copies: a request that came through two of the
        bridge's subscriptions comes twice in a row (the same reply subject, the same
        bytes), and is handed over, refused or counted once. (Otherwise a copy could take
        the room of the next request, or be refused after the request was taken and tell
        its asker so.)"""
        distinct = []
        for msg, before in requests:
            last = self._last_request
            if last is None or last[0] != msg.reply or last[1] != msg.data:
                self._last_request = (msg.reply, msg.data)
                distinct.append((msg, before))
        return distinct

    def _offer_requests(self, requests: list[tuple[Msg, int]]) -> None:
        """Hand ``requests`` to the answering thread without waiting. A request that finds
        its lane full is refused: its asker gets a ``QueueFull`` entry at once, and the
        refusal is counted in the bridge's losses. Waiting for room instead would hold up
        the client's reading task, and with it every message and answer of the process,
        for as long as a receiver does not return. What is left when the lane stopped
        (the process is exiting) is counted as lost.
        """
        lane = answer_lane()
        for i, (msg, before) in enumerate(requests):
            try:
                taken = lane.offer(functools.partial(self.on_request, msg, before),
                                   len(msg.data) + MESSAGE_OVERHEAD)
            except RuntimeError as exc:
                self.bridge.losses.add(LANE_STOPPED, len(requests) - i, str(exc))
                return
            if not taken:
                self._refuse(msg, lane)

    def _refuse(self, msg: Msg, lane: DeliveryLane) -> None:
        """Tell the asker of ``msg`` that it was not taken (the answering lane is full)
        and count it."""
        waiting, _ = lane.pending
        problem = (f"request refused: {waiting} requests wait for this process's "
                   "receivers, which have not returned (the answering lane is full)")
        self.bridge.asking.refuse(msg.reply, problem)
        self.bridge.losses.add(REQUEST_REFUSED, 1, f"{msg.subject}: {problem}")

    def _deliver(self, batch: list[tuple[Callable[[Msg], None], Msg]]) -> None:
        try:
            for handler, msg in batch:
                handler(msg)
        finally:
            with progress.cond:
                self.delivered += len(batch)
                progress.cond.notify_all()

    def wait_delivered(self, count: int, timeout: float) -> bool:
        """Wait until the first ``count`` messages gathered have been delivered."""
        with progress.cond:
            return progress.cond.wait_for(lambda: self.delivered >= count, timeout)

    # -- on the lanes ---------------------------------------------------------------------

    def _decode(self, msg: Msg) -> tuple[Message, Identifier | None, Mapping[str, Any]] | None:
        """The message in ``msg`` (:func:`berrymq.wire.decode_message`), its kwargs marked
        when a local shared queue matches it (see :class:`FromBroker`); None for what is
        not a message, counted as undecodable, and for a message that did not come on its
        identifier's subject (see the module docs)."""
        try:
            message, reply_to, extras = decode_message(loads(msg.data))
        except ValueError as exc:  # ParseError, WireError: a foreign or broken message
            self.bridge.undecodable(msg.subject, exc)
            return None
        if not self.on_its_subject(msg, message[0]):
            return None
        shared = self.bridge.shared
        if (shared.entries or shared.dirty) and shared.marked(message[0]):
            message = new_message((message[0], message[1], FromBroker(message[2]), message[3],
                                   message[4]))
        return message, reply_to, extras

    def on_its_subject(self, msg: Msg, ident: Identifier) -> bool:
        """Whether ``ident`` came on its own subject; if not, it is counted as dropped."""
        expected = self.bridge.subjects.subject_of(ident)
        if msg.subject == expected and not ident.is_local:
            return True
        self.bridge.losses.add(WRONG_SUBJECT, 1, f"{ident} came on {msg.subject}, not on "
                               f"{expected}" if not ident.is_local else
                               f"{ident} is a local identifier, which never crosses NATS")
        return False

    def on_message(self, msg: Msg) -> None:
        """A message from a plain subscription (the delivery lane)."""
        decoded = self._decode(msg)
        if decoded is None:
            return
        message, reply_to, _ = decoded
        bridge = self.bridge
        bridge.stats.message_in(message[0], bridge.address, len(msg.data))  # stats: as JSON-RPC's
        try:  # not sent back; one seen before (two subscriptions or ways): the core counts
            bridge.bus.receive(message, bridge.forwarder, reply_to)
        except Exception as exc:  # noqa: BLE001 - no sender here to raise to
            self._receivers_failed(message, exc)

    def _receivers_failed(self, message: Message, exc: Exception) -> None:
        """Receivers here failed on a message from NATS, whose publisher cannot be told: a
        refusal (:class:`~berrymq.QueueFull`) is a message lost, counted in the bridge's
        losses (one line per burst), unless a peer's link refused it (counted by the core:
        :attr:`~berrymq.QueueFull.not_forwarded`); other failures are logged."""
        refused: Exception | None = exc if _refused_here(exc) else None
        others: Exception | None = None if isinstance(exc, QueueFull) else exc
        if isinstance(exc, ExceptionGroup):  # several receivers failed (or raise_errors)
            refused, rest = exc.split(_refused_here)
            others = None if rest is None else rest.split(QueueFull)[1]
        if refused is not None:
            self.bridge.losses.add(REFUSED_HERE, 1, f"{message[0]}: {refused}")
        if others is not None:
            logger.error("receivers of %s (from NATS) failed: %r", message[0], others)

    def on_request(self, msg: Msg, before: int) -> None:
        """A request (the answering thread): answered once the ``before`` messages that
        came before it were delivered, unless this process is itself waiting for an
        answer (which may be what holds them up), or the asker has given up by then."""
        decoded = self._decode(msg)
        if decoded is None:
            return
        message, _, extras = decoded
        self.bridge.stats.message_in(message[0], self.bridge.address, len(msg.data))  # stats
        wait = asker_timeout(extras.get("timeout"))
        with progress.cond:
            progress.cond.wait_for(lambda: self.delivered >= before or progress.asks_waiting > 0,
                                   wait)
        self.bridge.asking.answer(message, wait, msg.reply)

    def for_group(self, group: str) -> Callable[[Msg], None]:
        """The handler of a queue-group subscription (for the shared queues of a pattern)."""
        bridge = self.bridge

        def on_queued(msg: Msg) -> None:
            if msg.reply:
                return  # asks are answered through the plain subscriptions
            try:
                message, _, extras = decode_message(loads(msg.data))
            except ValueError as exc:  # ParseError, WireError: a foreign or broken message
                bridge.undecodable(msg.subject, exc)
                return
            if not self.on_its_subject(msg, message[0]):
                return
            taken = extras.get("taken")
            if type(taken) is list and group in taken:
                return  # a shared queue of the sending process took it already
            if not bridge.shared.took_of(group).first(message[4]):
                bridge.stats.duplicate()  # stats
                return  # it came here another way too (an interconnect) and was taken then
            ident = message[0]
            bridge.stats.message_in(ident, bridge.address, len(msg.data))  # stats
            receiver = bridge.shared.receiver_of(group)
            if receiver is None:
                bridge.losses.add(QUEUE_FULL, 1, f"{ident} for group {group}: the queue closed")
                return
            message = new_message((ident, message[1], message[2], message[3] + 1, message[4]))
            try:
                receiver(message)  # type: ignore[operator]
            except Exception as exc:  # noqa: BLE001 - QueueFull and the like
                bridge.losses.add(QUEUE_FULL, 1, f"{ident} for group {group}: {exc}")

        return on_queued

"""The outbox of a connection: messages sent in quick succession, coalesced into batches.

A task on the I/O loop sends at once when it is idle, and while a batch is on its way
(written and not yet acknowledged) it gathers what comes in into the next
``send_messages`` request. So a lone message has the latency of one round trip, and a
stream of them goes out in a few requests. Each message is encoded by the sender, so a
message that JSON cannot hold, or that is over the size limit, is refused at the call that
sent it; a full outbox pushes back on the sender (:class:`Outbox`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from berrymq.errors import ConnectionClosed, MessageTooLarge, QueueFull
from berrymq.transports.ioloop import InheritedLoopError, io_loop
from berrymq.transports.support import waits_for_room
from berrymq.wire import byte_size
from berrymq_jsonrpc.jsonrpc_client import PeerQueueFull
from berrymq_jsonrpc.sizes import ENVELOPE, too_large_detail

__all__ = ["BATCH_BYTES", "DEFAULT_OUTBOX_BYTES", "DEFAULT_OUTBOX_SIZE", "ENVELOPE", "NOT_SENT",
           "REFUSED", "Outbox"]

logger = logging.getLogger("berrymq.remote")

#: How long a delivery lane waits for a full outbox whose peer has taken nothing, at
#: least (see :meth:`Outbox._wait_for_room`): a peer whose batches take longer to be
#: acknowledged is given :data:`LANE_ROUNDS` times its last batch's round trip, up to
#: ``outbox_wait``.
LANE_PATIENCE = 5.0
LANE_ROUNDS = 3
#: The most message text in one ``send_messages`` request: small enough that a hundred
#: senders' batches queued at one node are acknowledged well within a client's timeout
#: (at 256 KiB, 100 senders on a loaded 2-CPU machine waited past 10 s for their acks).
BATCH_BYTES = 64 * 1024
#: How many messages may wait in one connection's outbox (``outbox_size``): about two
#: batches of small messages. A sender faster than its peer waits here, and leaves the
#: CPUs to the node it sends to: 100 sending processes on 2 CPUs filling outboxes of 10 000
#: ran that node at 0.03 of a CPU (0.59-0.72x the raw floor of bench/ipc.py); 2 000: 0.9x.
DEFAULT_OUTBOX_SIZE = 2_000
#: How many bytes of message text may wait in one connection's outbox (``outbox_bytes``).
DEFAULT_OUTBOX_BYTES = 64 * 1024 * 1024
#: The reasons an outbox counts a message as not delivered (also the node's ``/status``).
REFUSED = "refused: queue full"
NOT_SENT = "not sent: connection failed or closed"


class _Marker:
    """A flush marker in the outbox: set once everything before it was handed over."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class Outbox:
    """Sends encoded messages from a task on the I/O loop, coalescing them into batches.

    Bounded in count and in bytes (the message text waiting): a sender beyond either bound
    waits up to ``block_timeout`` seconds for room, then gets :class:`berrymq.QueueFull`
    naming the setting (``outbox_size``, ``outbox_bytes``); nothing is dropped to make
    room. Room is made as the loop takes a batch out to send it, so at most one batch more
    is held, on its way. The byte count is kept without a lock: the senders add with
    ``+=`` and the loop subtracts, each a single step under CPython's GIL.

    A peer that refuses some messages of a batch (a full queue: :class:`~berrymq_jsonrpc.
    jsonrpc_client.PeerQueueFull`) does not stop the outbox: they are counted (:attr:`refused`)
    and reported to ``on_refused`` and the next :meth:`flush`; the rest keeps flowing.

    :param sink: ``await sink(texts)`` sends one batch and returns when the peer
        acknowledged it, or raises.
    :param max_bytes: the largest message accepted, as :mod:`berrymq_jsonrpc.sizes`
        measures it (``max_size`` less :data:`~berrymq_jsonrpc.sizes.ENVELOPE`).
    :param on_failure: called once, on the loop, with the first exception and how many
        messages it lost; it must not block. Later messages are counted as lost.
    :param limit: how many messages may wait (setting ``outbox_size``).
    :param byte_limit: how many bytes of message text may wait (setting ``outbox_bytes``);
        a message alone in the outbox is taken whatever its size.
    :param block_timeout: how long a sender waits for room (setting ``outbox_wait``).
    :param batch_bytes: the most message text in one batch (a larger message goes alone).
    :param on_refused: called on the loop with the peer's refusal and how many it refused.
    :param on_lost: called with a count each time messages are counted in :attr:`lost`
        (on the loop, or the thread closing the outbox), as it happens: a batch cancelled
        on its way by a close when the cancellation lands. It must not block.
    """

    def __init__(
        self,
        sink: Callable[[list[str]], Awaitable[None]],
        *,
        max_bytes: int,
        on_failure: Callable[[BaseException, int], None],
        name: str,
        limit: int = DEFAULT_OUTBOX_SIZE,
        byte_limit: int = DEFAULT_OUTBOX_BYTES,
        block_timeout: float = 10.0,
        batch_bytes: int = BATCH_BYTES,
        on_refused: Callable[[QueueFull, int], None] | None = None,
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        self._sink = sink
        self.max_bytes = max_bytes
        self.batch_bytes = min(batch_bytes, max_bytes)
        self._on_failure = on_failure
        self._on_refused = on_refused
        self._on_lost = on_lost
        self.name = name
        self.limit = limit
        self.byte_limit = byte_limit
        self.block_timeout = block_timeout
        self._items: collections.deque[str | _Marker] = collections.deque()
        #: bytes of message text waiting in the outbox (not counting the batch on its way)
        self.queued_bytes = 0
        self.failure: BaseException | None = None
        self.sent = 0
        self.batches = 0
        #: messages not sent: the connection failed or closed with them waiting
        self.lost = 0
        #: messages the peer refused (a full queue), and the last refusal
        self.refused = 0
        self.refusal: QueueFull | None = None
        self._refused_flushed = 0  # self.refused at the last flush that reported it
        self._room = threading.Condition(threading.Lock())
        self._stopped = False
        self._idle = False
        self._sending = False  # a batch is written and not yet acknowledged
        self.on_its_way = 0  # how many messages that batch holds (counted in pending)
        #: when the peer last made room (a batch taken off to send) and how long its last
        #: batch took: a delivery lane waits while the peer moves at its pace
        self._moved = time.monotonic()
        self._round = 0.0
        self._wake = asyncio.Event()
        self._task = io_loop.submit(self._run())
        io_loop.bind(self)

    @property
    def pending(self) -> int:
        """How many messages wait to be sent, or to be acknowledged (status shows it)."""
        return self.on_its_way + sum(1 for item in list(self._items) if type(item) is str)

    @property
    def losses(self) -> dict[str, int]:
        """The messages this outbox did not deliver, by reason (those with a count)."""
        reasons = {REFUSED: self.refused, NOT_SENT: self.lost}
        return {reason: count for reason, count in reasons.items() if count}

    def forked(self, error: InheritedLoopError) -> None:
        """In a process forked from this one's (see :mod:`berrymq.transports.ioloop`):
        what waits here is the parent's, which sends it, so it is let go of uncounted, and
        every later put and flush raises :class:`berrymq.ConnectionClosed` naming the fork."""
        self._items.clear()
        self.queued_bytes = 0
        self._sending = False
        self._room = threading.Condition(threading.Lock())  # a parent thread may have held it
        self.failure = error

    def _kick(self) -> None:
        if self._idle:
            self._idle = False
            io_loop.call_soon(self._wake.set)

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(f"{self.name}: the connection is closed"
                                + (f" ({self.failure})" if self.failure else ""))

    def put(self, text: str, unmeasured: int = 0) -> None:
        """Queue one encoded message (the sender's path: no lock unless over a bound).

        The message is measured as every node measures it (:mod:`berrymq_jsonrpc.sizes`):
        ``unmeasured`` is how many bytes of ``text`` the rule does not count (its hops:
        :func:`~berrymq_jsonrpc.sizes.unmeasured`). One over ``max_bytes`` raises
        :class:`berrymq.MessageTooLarge` in the words of a node's refusal."""
        if self.failure is not None or self._stopped:
            raise self._closed_error()
        size = byte_size(text)
        if size - unmeasured > self.max_bytes:
            raise MessageTooLarge(too_large_detail(size - unmeasured,
                                                   self.max_bytes + ENVELOPE))
        if len(self._items) >= self.limit or (
                self.queued_bytes and self.queued_bytes + size > self.byte_limit):
            self._wait_for_room(size)
        self.queued_bytes += size  # before the append: the loop never takes it uncounted
        self._items.append(text)
        self._kick()

    def _full(self, size: int) -> bool:
        return len(self._items) >= self.limit or (
            self.queued_bytes > 0 and self.queued_bytes + size > self.byte_limit)

    def _full_error(self, size: int, waited: float, why: str = "") -> QueueFull:
        if len(self._items) >= self.limit:
            bound = f"{self.limit} messages wait to be sent (setting outbox_size)"
        else:
            bound = (f"{self.queued_bytes} bytes wait to be sent and {size} more would go "
                     f"over {self.byte_limit} (setting outbox_bytes)")
        took = why or f"no room came within {waited:g}s (setting outbox_wait)"
        return QueueFull(f"{self.name}: {bound}; {took}; this message was not sent")

    def _wait_for_room(self, size: int) -> None:
        if io_loop.in_loop():
            raise self._full_error(size, 0, "a sender on the I/O loop cannot wait for room")
        # A transport's delivery lane, handing on a message from another process, carries
        # every message that comes in: it waits for a peer that takes messages at its pace,
        # not for one that took none for longer (stopped, or not reading), which held up
        # every client of the node for outbox_wait, again and again.
        lane = not waits_for_room()
        deadline = time.monotonic() + self.block_timeout
        with self._room:
            while self._full(size) and self.failure is None and not self._stopped:
                now = time.monotonic()
                left = deadline - now
                patience = max(LANE_PATIENCE, LANE_ROUNDS * self._round)
                if lane and self._moved + patience - now < left:
                    left = self._moved + patience - now
                    if left <= 0:
                        raise self._full_error(size, 0, (
                            f"the peer took none of them for {now - self._moved:.3g}s (its "
                            f"last batch took {self._round:.3g}s), and a message from another "
                            "process does not wait longer (it would hold up every other one)"))
                if left <= 0:
                    raise self._full_error(size, self.block_timeout)
                self._room.wait(left)
        if self.failure is not None or self._stopped:
            raise self._closed_error()

    def flush(self, timeout: float | None = None, *, report: bool = True) -> bool:
        """Wait until everything queued so far was sent and acknowledged; False on
        timeout. Raises the failure that stopped the outbox, if any, and (``report``)
        :class:`berrymq.QueueFull` when the peer refused messages since the last flush
        that reported (the outbox goes on)."""
        if self.failure is None and not self._task.done():
            if not self._items and not self._sending:
                done = True  # nothing queued, nothing on its way: no round trip to the loop
            elif io_loop.in_loop():
                done = not self._items
            else:
                marker = _Marker()
                self._items.append(marker)
                self._kick()
                done = marker.event.wait(timeout)
        else:
            done = True
        if self.failure is not None:
            with self._room:  # until the loop has counted what the failure lost (_send)
                pass
            raise ConnectionClosed(f"{self.name}: {self.failure}") from self.failure
        refused = self.refused - self._refused_flushed
        if refused and report:
            self._refused_flushed += refused
            raise QueueFull(f"{self.name}: the peer refused {refused} message(s) sent since "
                            f"the last flush ({self.refusal}); the others were delivered")
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (waiting at most ``timeout``; not at all on the loop),
        then stop the task."""
        if self._stopped:
            return
        if timeout > 0 and not io_loop.in_loop():
            with contextlib.suppress(ConnectionClosed, QueueFull):
                self.flush(timeout)
        self._stopped = True
        self._task.cancel()
        self._drop_rest()
        with self._room:
            self._room.notify_all()

    async def _run(self) -> None:
        items = self._items
        popleft = items.popleft
        try:
            while True:
                if not items:
                    self._sending = False
                    self._idle = True
                    if not items:
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    self._idle = False
                self._sending = True  # before the pop: flush never sees neither
                item = popleft()
                if type(item) is _Marker:
                    item.event.set()
                    continue
                assert type(item) is str
                batch = [item]
                size = byte_size(item)
                budget = self.batch_bytes
                while items and type(items[0]) is str and size + byte_size(items[0]) + 1 <= budget:
                    text = popleft()
                    assert type(text) is str
                    batch.append(text)
                    size += byte_size(text) + 1
                self.queued_bytes -= size - len(batch) + 1
                self._moved = taken = time.monotonic()
                self.on_its_way = len(batch)
                self._notify_room()
                try:
                    if await self._send(batch):
                        self._round = time.monotonic() - taken
                finally:
                    self.on_its_way = 0
        finally:
            self._drop_rest()

    def _notify_room(self) -> None:
        if len(self._items) < self.limit:
            with self._room:
                self._room.notify_all()

    def _count_lost(self, count: int) -> None:
        """``count`` more messages not sent: counted here and reported to ``on_lost``."""
        self.lost += count
        if self._on_lost is not None:
            try:
                self._on_lost(count)
            except Exception:
                logger.exception("%s: reporting a loss failed", self.name)

    async def _send(self, batch: list[str]) -> bool:
        """Send ``batch``; whether the peer answered it (took it, or refused some)."""
        if self.failure is not None:
            self._count_lost(len(batch))
            return False
        try:
            await self._sink(batch)
            self.sent += len(batch)
            self.batches += 1
            return True
        except asyncio.CancelledError:  # closed while the batch was on its way
            self._count_lost(len(batch))
            logger.error("%s: closed with %d messages on their way, not acknowledged",
                         self.name, len(batch))
            raise
        except PeerQueueFull as exc:
            # some (or all) were refused by a full queue of the peer: not a broken
            # connection; the others were delivered
            indexes = exc.refused
            count = len(batch) if indexes is None else min(len(indexes), len(batch))
            self.sent += len(batch) - count
            self.batches += 1
            self.refused += count
            self.refusal = exc
            if self._on_refused is not None:
                try:
                    self._on_refused(exc, count)
                except Exception:
                    logger.exception("%s: reporting a refusal failed", self.name)
            return True
        except Exception as exc:  # noqa: BLE001 - reported through on_failure
            # the failure and every message it lost are counted under _room, which a flush
            # that sees the failure waits for: that flush reports all of them, the next
            # none (counting thousands queued behind the batch takes milliseconds)
            with self._room:
                self.failure = exc
                self._count_lost(len(batch))
                dropped = self._drop_rest()
                self._room.notify_all()
            try:
                self._on_failure(exc, len(batch) + dropped)  # the batch and all behind it
            except Exception:
                logger.exception("%s: reporting a failure failed", self.name)
            return False

    def _drop_rest(self) -> int:
        """Count every message still queued as not sent (and free the flush markers);
        how many they were."""
        items = self._items
        dropped = 0
        markers: list[_Marker] = []
        while items:
            try:
                item = items.popleft()
            except IndexError:
                break
            if type(item) is str:
                dropped += 1
                self.queued_bytes -= byte_size(item)
            else:
                assert type(item) is _Marker
                markers.append(item)
        if dropped:
            self._count_lost(dropped)
            if self.failure is None and self._stopped:
                logger.error("%s: closed with %d messages not sent", self.name, dropped)
            elif self.failure is None:  # (a failure's own report names them: _on_failure)
                logger.error("%s: %d messages not sent: the program ended before they were "
                             "acknowledged", self.name, dropped)
        for marker in markers:  # once counted: a flush they wake reports these losses
            marker.event.set()
        return dropped

"""The way out: from a sending thread to NATS, and what happens when the server goes away.

- **Connected**: :meth:`Outbox.put` (the sender's thread) appends the encoded message to a
  deque and, only when the I/O loop is not already woken, wakes it once; the loop's
  publisher drains the deque into ``nats-py``'s write buffer, which writes in batches. One
  thread hop per message and no lock. At most ``buffer_limit`` messages and ``buffer_bytes`` bytes
  wait for the loop (one message always fits); beyond, the sender waits up to
  ``send_timeout`` seconds for room, then gets :class:`~berrymq_nats.options.BrokerBufferFull`.
  (What the loop handed to ``nats-py`` and the server has not read is bounded by
  ``nats-py``: past its write buffer, 2 MiB, the publisher waits.)
- **Counted from the hand-over**: a message is counted as published before ``nats-py``
  takes it, as ``nats-py`` may hold it (buffered) and wait inside ``publish`` for the
  server: if the connection then drops, or the bridge closes, it is counted with the rest.
- **Confirmed**: after publishing, the loop sends a PING behind what it wrote; the PONG
  means the server has read all of it (:mod:`berrymq_nats.confirming` counts). What was
  published and not confirmed when the connection drops is counted as possibly lost
  (:data:`~berrymq_nats.losses.IN_FLIGHT`) and not sent again (the server may have routed
  it). What ``nats-py`` still held unwritten is not lost: it goes out after the reconnect,
  behind the re-subscriptions.
- **Disconnected**: sent messages wait in the disconnect buffer, at most ``buffer_limit``
  messages and ``buffer_bytes`` bytes; past either the sending call raises
  ``BrokerBufferFull``. Messages that were waiting for the loop when the drop was noticed
  join the buffer even past its bounds (they were accepted; at most ``buffer_limit`` more).
- **Reconnected**: ``nats-py`` subscribes again and confirms it with a PING/PONG before it
  tells the bridge; only then is the buffer published, before anything newer.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import TYPE_CHECKING

from nats.aio.client import Client
from nats.errors import MaxPayloadError, OutboundBufferLimitError

from berrymq.errors import ConnectionClosed
from berrymq.identifier import Identifier
from berrymq.transports.ioloop import InheritedLoopError, io_loop
from berrymq_nats.confirming import Confirmations
from berrymq_nats.losses import (
    CONTROL_UNSENT,
    IN_FLIGHT,
    NOT_SENT_AT_CLOSE,
    UNPUBLISHABLE,
    Losses,
)
from berrymq_nats.options import BrokerBufferFull, BrokerOptions

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Item", "Outbox"]

#: ``(subject, payload, reply subject or "")``
Item = tuple[str, bytes, str]


#: The room of the bridge's own messages beyond ``buffer_limit`` and ``buffer_bytes``.
CONTROL_ROOM = 10_000
CONTROL_BYTES = 16 * 2**20


class _Control(tuple):  # type: ignore[type-arg]
    """An item of the bridge's own (presence, acknowledgement, reply): not one of the
    application's messages, so it is not counted as lost and not held while disconnected."""

    __slots__ = ()



class Outbox:
    """The bridge's outgoing messages: waiting for the loop, held while disconnected, and
    counted while the server has not confirmed them.

    :param describe: a function that says where NATS is and in which state, for errors.
    """

    def __init__(self, options: BrokerOptions, losses: Losses, describe: Callable[[], str]) -> None:
        self.limit = options.buffer_limit
        self.byte_limit = options.buffer_bytes
        #: how many more messages, and bytes, than those bounds the bridge's own may take
        #: (:meth:`put_control`): its answers to peers do not depend on ``buffer_limit``
        self.control_room = CONTROL_ROOM
        self.control_bytes = CONTROL_BYTES
        self.send_timeout = options.send_timeout
        self.losses = losses
        self.describe = describe
        self.nc: Client | None = None
        self.connected = False
        self.closed = False
        self._out: collections.deque[Item] = collections.deque()
        # The payload bytes in _out are _added - _taken, with no lock on the senders' path:
        # _added grows in the sending threads, _taken in the loop's publisher alone (and
        # where the deque is emptied at once). Two senders' += at the same instant may
        # lose one of them; the publisher evens the two out whenever it finds _out empty,
        # so such a miss is one message's bytes, for as long as the deque stays non-empty.
        self._added = 0
        self._taken = 0
        self._epoch = 0  # counts connection_lost: what a publish under way finds changed
        self._wake_pending = False
        self._wake = asyncio.Event()
        self._room = threading.Event()
        self._room_wanted = False
        self._held: collections.deque[Item] = collections.deque()
        self._held_bytes = 0
        self._held_lock = threading.Lock()
        #: what was published on this connection, and what the server confirmed of it
        self.confirmations = Confirmations(lambda: self.nc)
        #: the application's messages handed to ``nats-py``, over every connection, less
        #: those counted lost in flight since (the bridge's ``sent`` in ``/status``;
        #: control messages are not counted)
        self.sent = 0
        #: why this outbox refuses: it is the parent's, in a forked process (see :meth:`forked`)
        self.forked_error: InheritedLoopError | None = None
        io_loop.bind(self)

    def forked(self, error: InheritedLoopError) -> None:
        """In a process forked from this one's (see :mod:`berrymq.transports.ioloop`):
        what waits here is the parent's, which publishes it, so it is let go of uncounted,
        and every later message is refused with :class:`berrymq.ConnectionClosed` naming
        the fork (counted by the bus as not forwarded, as any closed link's)."""
        self._held_lock = threading.Lock()  # a parent thread may have held it
        self._out.clear()
        self._held.clear()
        self._held_bytes = self._added = self._taken = 0
        self.connected = False
        self.closed = True
        self.forked_error = error

    @property
    def held(self) -> tuple[int, int]:
        """``(messages, bytes)`` in the disconnect buffer."""
        return len(self._held), self._held_bytes

    @property
    def waiting(self) -> int:
        """Messages accepted and not yet handed to ``nats-py`` (held or waiting for the loop)."""
        return len(self._held) + len(self._out)

    # -- sending threads ------------------------------------------------------------------

    def put(self, item: Item, ident: Identifier | str, wait: float | None = None) -> None:
        """Accept one message to publish (any thread; the hot path of every message);
        ``wait``: wait for room at most so long, when shorter than ``send_timeout``."""
        if self.connected:
            out = self._out
            size = len(item[1])
            if self._full(size):
                self._wait_for_room(ident, size, wait)
            self._added += size
            out.append(item)
            if not self._wake_pending:
                self._wake_pending = True
                io_loop.call_soon(self._wake.set)
            return
        self._hold(item, ident)

    def put_control(self, item: Item) -> None:
        """Publish a message of the bridge's own (acknowledgements, replies, presence):
        never waits, so that the I/O thread can send it; dropped while disconnected (the
        asker's deadline reports a missing reply), and dropped, counted as the bridge's
        own (:data:`~berrymq_nats.losses.CONTROL_UNSENT`), when :attr:`control_room`
        more messages than ``buffer_limit`` wait, or :attr:`control_bytes` more bytes
        than ``buffer_bytes``: other clients' hellos and requests, each answered by one
        of these, queued them without bound (a flood of 700,000 hellos left 692,012
        waiting, 320 MB)."""
        if self.connected:
            if (len(self._out) >= self.limit + self.control_room
                    or self._added - self._taken + len(item[1])
                    > self.byte_limit + self.control_bytes):
                self.losses.add(CONTROL_UNSENT, 1, f"on {item[0]}: {len(self._out)} messages "
                                "wait to be published (buffer_limit and its room for the "
                                "bridge's own)")
                return
            self._added += len(item[1])
            self._out.append(_Control(item))
            if not self._wake_pending:
                self._wake_pending = True
                io_loop.call_soon(self._wake.set)

    def _full(self, size: int) -> bool:
        """Whether one more message of ``size`` bytes would go over a bound (one always
        fits in an empty deque)."""
        out = self._out
        return len(out) >= self.limit or (
            bool(out) and self._added - self._taken + size > self.byte_limit)

    def _wait_for_room(self, ident: Identifier | str, size: int, wait: float | None) -> None:
        wait = self.send_timeout if wait is None else max(0.0, min(wait, self.send_timeout))
        deadline = time.monotonic() + wait
        while self._full(size) and self.connected:
            left = deadline - time.monotonic()
            if io_loop.in_loop() or left <= 0:
                count, waiting = len(self._out), max(0, self._added - self._taken)
                bound = (f"buffer_limit = {self.limit}" if count >= self.limit
                         else f"buffer_bytes = {self.byte_limit}")
                raise BrokerBufferFull(
                    f"the NATS bridge to {self.describe()} has had {count} messages "
                    f"({waiting} bytes) waiting for the I/O thread for {wait:g}s "
                    f"({bound}); message {ident} was refused"
                )
            self._room.clear()
            self._room_wanted = True
            if self._full(size):
                self._room.wait(left)

    def _hold(self, item: Item, ident: Identifier | str) -> None:
        with self._held_lock:
            if self.connected:  # reconnected meanwhile
                self._added += len(item[1])
                self._out.append(item)
                io_loop.call_soon(self._wake.set)
                return
            if self.closed:
                raise ConnectionClosed(f"the NATS bridge to {self.describe()} is closed"
                                       + (f" ({self.forked_error})" if self.forked_error else ""))
            # A message this thread put just before the drop was noticed comes first.
            self._move_out()
            size = len(item[1])
            count, held_bytes = len(self._held), self._held_bytes
            if count >= self.limit or (count and held_bytes + size > self.byte_limit):
                bound = (f"buffer_limit = {self.limit}" if count >= self.limit
                         else f"buffer_bytes = {self.byte_limit}")
                raise BrokerBufferFull(
                    f"NATS at {self.describe()} is unreachable and {count} messages "
                    f"({held_bytes} bytes) already wait ({bound}); message {ident} was refused"
                )
            self._held.append(item)
            self._held_bytes += size

    # -- the I/O loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """The publisher task: publish whatever the sending threads put, when woken."""
        wake = self._wake
        while not self.closed:
            await wake.wait()
            wake.clear()
            self._wake_pending = False
            await self.pump()

    async def pump(self) -> None:
        """Hand everything waiting to ``nats-py`` (or to the disconnect buffer)."""
        out = self._out
        nc = self.nc
        if nc is None:
            return
        confirmations = self.confirmations
        published = confirmations.published
        while out:
            if not self.connected:
                self.hold_out()
                break
            if confirmations.full():
                await confirmations.wait(nc)
                continue
            item = out.popleft()
            if out:
                self._taken += len(item[1])
            else:  # empty now: even out what senders' racing += may have missed
                self._taken = self._added
            if self._room_wanted:
                self._room_wanted = False
                self._room.set()
            # counted before nats-py has it: it may wait inside publish with it buffered
            epoch = self._epoch
            control = type(item) is _Control
            confirmations.count(len(item[1]), control)
            if not control:
                self.sent += 1
            try:
                await nc.publish(item[0], item[1], item[2])
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the rest
                if epoch != self._epoch:  # connection_lost counted it meanwhile
                    continue
                confirmations.uncount(len(item[1]), control)  # nats-py refused it before buffering it
                if not control:
                    self.sent -= 1
                if isinstance(exc, OutboundBufferLimitError):
                    self._taken -= len(item[1])
                    out.appendleft(item)
                    self.hold_out()
                    break
                reason = CONTROL_UNSENT if control else UNPUBLISHABLE
                self.losses.add(reason, 1, f"on {item[0]}: {_why_unsent(exc, item[1], nc)}")
            if self.closed:
                break
        if self._room_wanted:
            self._room_wanted = False
            self._room.set()
        if confirmations.published != published:
            confirmations.start(nc)

    def connection_lost(self, closing: bool = False) -> int:
        """The connection dropped: count what was in flight, hold what waits. Returns the
        number of messages counted as possibly lost. ``closing``: the bridge is closing
        (its last flush failed), so what ``nats-py`` holds unwritten is never sent after
        a reconnect: it is counted too."""
        self.connected = False
        self._epoch += 1
        nc = self.nc
        unwritten = 0  # still in nats-py's buffer: written after the reconnect, not lost
        if not closing:
            for command in getattr(nc, "_pending", ()) or ():
                if command.startswith((b"PUB ", b"HPUB ")):
                    unwritten += 1
        lost = self.confirmations.connection_lost(unwritten)
        self.sent -= lost  # (counted lost instead: the status row's counts add up)
        self.hold_out()
        self.losses.add(IN_FLIGHT, lost,
                        "published to a NATS server that went away before it confirmed them")
        return lost

    def hold_out(self) -> None:
        """Move what waits for the loop into the disconnect buffer (loop thread)."""
        with self._held_lock:
            self.connected = False
            self._move_out()
        self._room.set()

    def _move_out(self) -> None:
        # Under _held_lock: what waits for the loop joins the disconnect buffer, in order.
        self._taken = self._added
        while self._out:
            item = self._out.popleft()
            if type(item) is not _Control:
                self._held.append(item)
                self._held_bytes += len(item[1])

    def resume(self, nc: Client) -> None:
        """(Re)connected with subscriptions confirmed: publish the held messages first."""
        with self._held_lock:
            self.nc = nc
            held, self._held = self._held, collections.deque()
            self._held_bytes = 0
            if held:
                self._added += sum(len(item[1]) for item in held)
                self._out.extendleft(reversed(held))
            self.connected = True
        self._wake.set()
        confirmations = self.confirmations
        if confirmations.published > confirmations.confirmed:
            confirmations.start(nc)

    def close(self, connected: bool) -> int:
        """Stop accepting; count what could not be sent (``connected`` false: NATS was
        unreachable). Returns that count."""
        with self._held_lock:
            self.closed = True
            self.connected = False
            lost = len(self._held) + len(self._out)
            self._held.clear()
            self._out.clear()
            self._held_bytes = 0
            self._epoch += 1
            self._taken = self._added
        self._room.set()
        self.confirmations.stop()
        if lost:
            self.losses.add(NOT_SENT_AT_CLOSE, lost)
        return lost


def _why_unsent(exc: Exception, payload: bytes, nc: Client) -> str:
    """What nats-py's refusal of a payload means: the sizes for one over the server's
    ``max_payload`` (e.g. sent before the first connection told the limit, which the call
    that sent it checks once it is known), else the error itself."""
    if isinstance(exc, MaxPayloadError):
        return (f"MessageTooLarge: {len(payload)} bytes as JSON, over the NATS server's "
                f"max_payload of {nc.max_payload} bytes")
    return repr(exc)

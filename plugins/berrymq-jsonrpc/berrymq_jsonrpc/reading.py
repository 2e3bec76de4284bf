"""The bytes of requests a node holds while it reads them, every connection and transport
together (setting ``max_reading_bytes``).

Each connection may hold :data:`FREE_READING` bytes of a request being read on its own:
small requests, the common case, never wait here. A longer one takes a :class:`Share` of
the node's :class:`ReadingBytes` before more of it is read: the most its request may be
(``max_size``; over HTTP its ``Content-Length``), given back once the node takes the
request up: over TCP when it is whole or, an ``ask`` waiting for one of the node's
threads, when it begins; over HTTP once it is answered.
So the asks of many clients waiting for a thread hold no more than the cap either.
When the shares held would go over ``max_reading_bytes`` the connection is not read until
one is given back, in the order they were asked for: a flood of large requests begun and
not finished (300 connections each holding 1 MiB of a line held 356 MB) makes the others
wait instead of growing the node without bound. One share always fits when none is held,
so a ``max_size`` larger than ``max_reading_bytes`` still takes its requests, one at a
time. A connection that holds a share is read on, under its ``read_timeout`` (the
deadline of a whole request; over TCP, also of answers it leaves unread), so a share is
always given back; while a connection waits for one it has no deadline.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable

from berrymq.bursts import BurstLog
from berrymq.state import StateKey

__all__ = ["DEFAULT_MAX_READING_BYTES", "FREE_READING", "READING", "ReadingBytes", "Share"]

logger = logging.getLogger("berrymq.remote")

#: What one connection may hold of a request being read without a share.
FREE_READING = 64 * 1024

#: The default ``max_reading_bytes``.
DEFAULT_MAX_READING_BYTES = 64 * 1024 * 1024


class Share:
    """A part of ``max_reading_bytes`` asked for by one connection: held, waiting, or
    given back."""

    __slots__ = ("given_back", "held", "limit", "loop", "size", "waited", "wake")

    def __init__(self, size: int, limit: int, loop: asyncio.AbstractEventLoop,
                 wake: Callable[[], object]) -> None:
        self.size = size
        self.limit = limit  # the max_reading_bytes of the transport that asked
        self.loop = loop
        self.wake = wake  # called on ``loop`` when the share, waiting, is held
        self.held = False
        self.given_back = False
        self.waited = False  # it was not held at once

    @property
    def waiting(self) -> bool:
        """Whether the share is asked for and not held yet."""
        return not self.held and not self.given_back


class ReadingBytes:
    """The shares of one node (one bus, all its transports): how many bytes are held, and
    the connections waiting for room, in the order they asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # (the servers of tests may run on loops of their own)
        self.total = 0
        self._waiting: collections.deque[Share] = collections.deque()
        #: connections that waited for room: one log line per burst
        self.waits = BurstLog(logger)

    def ask(self, size: int, limit: int, loop: asyncio.AbstractEventLoop,
            wake: Callable[[], object]) -> Share:
        """A share of ``size`` bytes, held at once when it fits under ``limit`` and nobody
        waits before it; else waiting, and ``wake`` is called on ``loop`` once it is held.
        """
        share = Share(size, limit, loop, wake)
        with self._lock:
            if not self._waiting and self._fits(share):
                self.total += size
                share.held = True
                return share
            self._waiting.append(share)
            share.waited = True
        self.waits.warning("a connection waits to read a request over %d KiB: the node "
                           "holds max_reading_bytes (%d bytes) of requests being read",
                           FREE_READING // 1024, limit)
        return share

    async def wait_for(self, size: int, limit: int) -> Share:
        """:meth:`ask` from a coroutine on the running loop, returning once the share is
        held (given back if the coroutine is cancelled while it waits)."""
        loop = asyncio.get_running_loop()
        held: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not held.done():
                held.set_result(None)

        share = self.ask(size, limit, loop, wake)
        if share.waiting:
            try:
                await held
            except BaseException:
                self.give_back(share)
                raise
        return share

    def give_back(self, share: Share) -> None:
        """The request of ``share`` is whole, or its connection gone (a waiting share
        leaves the line); the shares waiting behind it that now fit are held."""
        with self._lock:
            if share.given_back:
                return
            if share.held:
                self.total -= share.size
            else:
                self._waiting.remove(share)
            share.held, share.given_back = False, True
            woken = self._hold_waiting()
        for held in woken:
            try:
                held.loop.call_soon_threadsafe(held.wake)
            except RuntimeError:  # its loop is closed: its connection is gone with it
                self.give_back(held)

    def _fits(self, share: Share) -> bool:
        return self.total == 0 or self.total + share.size <= share.limit

    def _hold_waiting(self) -> list[Share]:
        # Caller holds _lock.
        woken = []
        while self._waiting and self._fits(self._waiting[0]):
            share = self._waiting.popleft()
            self.total += share.size
            share.held = True
            woken.append(share)
        return woken


#: The reading shares of a bus's connections (setting ``max_reading_bytes``).
READING: StateKey[ReadingBytes] = StateKey("jsonrpc reading bytes", lambda bus: ReadingBytes())

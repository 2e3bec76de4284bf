"""What the server has confirmed: the messages published on one connection, counted until
a PING written behind them is answered.

NATS acknowledges no single message; a PONG means the server has read everything written
before its PING. :class:`Confirmations` counts what the outbox handed to ``nats-py`` on
the current connection and what a PONG confirmed of it, so that a connection that drops
is charged with exactly what was in flight (the bridge's own control messages apart: they
are not the application's, so not counted as lost), and it bounds how much may be in
flight at all. It is apart from :mod:`berrymq_nats.outbox`, which moves messages from the
sending threads to ``nats-py``, because it is a count of its own, read by the outbox and
by the bridge's flush alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from berrymq_nats.client import confirm_written

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.client import Client

__all__ = ["UNCONFIRMED_BYTES", "UNCONFIRMED_LIMIT", "Confirmations"]

#: Seconds a PING may take before the confirmation is given up (the connection is dead).
_CONFIRM_TIMEOUT = 10
#: At most this many messages are published and not yet confirmed by the server: what a
#: crash of the server can take without a trace on the wire is bounded by it.
UNCONFIRMED_LIMIT = 2000
#: ... and at most about this many bytes of them. asyncio's own bound on what waits in a
#: socket's buffer (the writer pauses above 64 KiB) is missing from the ``writelines``
#: nats-py uses on Python 3.12.0-3.12.8 and 3.13.0-3.13.1 (CPython gh-127655): there a
#: stalled server let 60 MB pile up in this process. This bound holds on any Python.
UNCONFIRMED_BYTES = 8 * 1024 * 1024


class Confirmations:
    """The messages published on the current connection and those the server confirmed;
    counted on the I/O thread.

    :param current: the outbox's current ``nats-py`` client (None before the first
        connection): confirmations of an older client's are not taken.
    """

    def __init__(self, current: Callable[[], Client | None]) -> None:
        self.current = current
        # Counted on the I/O thread, per connection: published, and confirmed by a PONG.
        self.published = 0
        self.confirmed = 0
        self.published_bytes = 0  # of payload, on this connection (approximately, see Outbox.pump)
        self.confirmed_bytes = 0
        self._control: list[int] = []  # the numbers of the published items that were control
        self._confirming: asyncio.Task[None] | None = None
        self._confirmed = asyncio.Event()  # set when confirmations advance or the link drops

    def full(self) -> bool:
        """Whether as many messages, or bytes, are in flight as may be (then the
        publisher waits for a confirmation)."""
        return (self.published - self.confirmed >= UNCONFIRMED_LIMIT
                or self.published_bytes - self.confirmed_bytes >= UNCONFIRMED_BYTES)

    def count(self, size: int, control: bool) -> None:
        """One more message of ``size`` bytes published (a ``control`` message of the
        bridge's own, or the application's); counted before ``nats-py`` has it, as it may
        wait inside ``publish`` with it buffered."""
        self.published += 1
        self.published_bytes += size
        if control:
            self._control.append(self.published)

    def uncount(self, size: int, control: bool) -> None:
        """``nats-py`` refused the message :meth:`count` counted last before buffering it."""
        self.published -= 1
        self.published_bytes -= size
        if control and self._control and self._control[-1] > self.published:
            self._control.pop()

    def start(self, nc: Client) -> None:
        """Have what was published on ``nc`` confirmed, unless that is under way."""
        if self._confirming is None:
            self._confirming = asyncio.get_running_loop().create_task(self._confirm(nc))

    async def wait(self, nc: Client) -> None:
        """Wait until confirmations advance (or the link drops)."""
        self.start(nc)
        self._confirmed.clear()
        await self._confirmed.wait()

    async def _confirm(self, nc: Client) -> None:
        """PING behind what was written until the server has confirmed all of it."""
        try:
            while self.published > self.confirmed and self.current() is nc and nc.is_connected:
                target, target_bytes = self.published, self.published_bytes
                await confirm_written(nc, _CONFIRM_TIMEOUT)
                if self.current() is nc and self._confirming is asyncio.current_task():
                    self.confirmed_up_to(target, target_bytes)
        except Exception:  # noqa: BLE001 - the connection dropped: connection_lost counts
            pass
        finally:
            if self._confirming is asyncio.current_task():
                self._confirming = None
            self._confirmed.set()  # a pump waiting for it looks again

    def confirmed_up_to(self, published: int, published_bytes: int) -> None:
        """The server has read the first ``published`` messages of this connection, of
        ``published_bytes`` bytes of payload."""
        self.confirmed_bytes = max(self.confirmed_bytes, published_bytes)
        if published > self.confirmed:
            self.confirmed = published
            self._control = [n for n in self._control if n > published]
            self._confirmed.set()

    def connection_lost(self, unwritten: int) -> int:
        """The connection dropped with ``unwritten`` messages still in ``nats-py``'s
        buffer (the newest ones, written after the reconnect): start counting again from
        them, and return how many of the application's messages were written and not
        confirmed (possibly lost)."""
        written = self.published - unwritten  # the newest ones are the unwritten ones
        control = sum(1 for n in self._control if self.confirmed < n <= written)
        lost = max(0, written - self.confirmed - control)
        self.published, self.confirmed, self._control = unwritten, 0, []
        # (the unwritten ones' bytes are not known: the next connection's count starts
        # low by at most nats-py's buffer, 2 MiB)
        self.published_bytes = self.confirmed_bytes = 0
        self._confirmed.set()
        if self._confirming is not None:
            self._confirming.cancel()
            self._confirming = None
        return lost

    def stop(self) -> None:
        """The outbox closed: no more confirming."""
        if self._confirming is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._confirming.cancel()

"""The three connection styles of the SPEC, written once over any :class:`Link`.

A transport's ``connect_*`` does what its protocol needs to open a connection (a session,
a token, a queue on the peer) and returns a :class:`LinkConnection` over the resulting
link; the styles themselves are here, the same for every transport:

- ``interconnect`` (style 01): the link is a forwarder of the bus, so every non-local
  message goes to the peer, and :func:`berrymq.ask` reaches the peer's receivers;
- ``oneway`` (style 02): the link carries what :meth:`LinkConnection.send` sends, and
  ``ask`` (through an :func:`~berrymq.transports.base.asker`), nothing else;
- ``queue`` (style 03): as ``oneway``, and :meth:`LinkConnection.get` pulls from the
  queue the peer keeps for this client, through the transport's :class:`Inbox`.

A transport that cannot offer a style refuses it in its ``connect_*`` with a
``TypeError`` that says what to use instead (NATS has no per-client queue on the peer).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from berrymq.errors import ConnectionClosed
from berrymq.transports.base import Connection, ConnectionRow, Forwarder, Link, asker

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.message import Message

__all__ = ["STYLES", "Inbox", "LinkConnection"]

logger = logging.getLogger("berrymq")

#: The styles of the SPEC, as :attr:`Connection.style <berrymq.transports.base.Connection.style>` names them.
STYLES = ("interconnect", "oneway", "queue")


class Inbox(Protocol):
    """The client's end of the queue a peer keeps for it (style 03)."""

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next message; :class:`berrymq.Empty` when none comes in time."""

    def get_nowait(self) -> Message:
        """The next message if one is stored now; else :class:`berrymq.Empty`."""

    def close(self) -> None:
        """Free the queue (idempotent)."""


class LinkConnection(Connection):
    """A connection from ``bus`` to a peer over ``link``, in one of the :data:`STYLES`.

    :param inbox: the peer's queue for this client; given for ``queue``, and only for it.
    :param on_close: the transport's part of closing, called once, before the link is
        closed, with whether the close is polite (:meth:`close`, which may hand over what
        is queued and tell the peer) or not (:meth:`lost`, the peer is gone: free at once).
    """

    def __init__(self, bus: Bus, link: Link, style: str, *, address: str | None = None,
                 inbox: Inbox | None = None,
                 on_close: Callable[[bool], None] | None = None) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown connection style {style!r}; one of {', '.join(STYLES)}")
        if (style == "queue") != (inbox is not None):
            raise ValueError("a queue connection needs an inbox, and only it has one")
        self.bus = bus
        self.link = link
        self.style = style
        self.address = address if address is not None else link.address
        self.inbox = inbox
        self.opened = time.monotonic()  # its age in /status (status_row)
        self.closed = False
        #: why the connection closed, as later errors say it (empty while open)
        self.reason = ""
        self._on_close = on_close
        self._lock = threading.Lock()
        self.forwarder: Forwarder = link if style == "interconnect" else asker(link)
        bus.add_forwarder(self.forwarder)

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(f"connection to {self.address} is closed{self.reason}")

    def send(self, message: Message) -> None:
        """Send one message to the peer's receivers (raises once the connection is closed,
        and what the link refuses: :class:`berrymq.QueueFull`, :class:`berrymq.MessageTooLarge`)."""
        if self.closed:
            raise self._closed_error()
        # As given, without a uid: the peer gives it one if it passes it on (stamping
        # here cost a third of a one-way sender's throughput).
        self.link.send(message)

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        if self.inbox is None:
            return super().get(block, timeout)
        if self.closed:
            raise self._closed_error()
        return self.inbox.get(block, timeout)

    def get_nowait(self) -> Message:
        if self.inbox is None:
            return super().get_nowait()
        if self.closed:
            raise self._closed_error()
        return self.inbox.get_nowait()

    def flush(self, timeout: float | None = None) -> bool:
        return self.link.flush(timeout)

    def close(self) -> None:
        """Hand over what was sent, tell the peer, free everything (idempotent)."""
        self._close(True)

    def lost(self, reason: str) -> None:
        """The peer or the link is gone: close at once, and let later calls say ``reason``
        (idempotent; call it from a thread that may block, not the I/O loop). An
        interconnection also says so on the ``berrymq`` logger, once: nothing calls it
        (``twitter`` forwards through it), and a peer gone with nothing on its way closed
        it without a word; a one-way or queue connection's next call raises instead."""
        if not self.closed:
            self.reason = f" ({reason})"
        self._close(False, lost=reason)

    def _close(self, polite: bool, lost: str | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            # out of the bus's list before it reads closed: who sees closed sees it gone
            self.bus.untrack_connection(self)
            self.closed = True
        if lost is not None and self.style == "interconnect":  # no call of the user's will
            logger.warning("%s connection to %s lost: %s; it is closed (later calls on it "
                           "raise ConnectionClosed)", self.style, self.address, lost)
        self.bus.remove_forwarder(self.forwarder)
        if self._on_close is not None:
            self._on_close(polite)
        self.link.close()
        if self.inbox is not None:
            self.inbox.close()

    def status_row(self) -> ConnectionRow:
        """:meth:`Connection.status_row`, ``closed`` once it is."""
        row = super().status_row()
        return dataclasses.replace(row, state="closed") if self.closed else row

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.style} {self.address} {state}>"

"""Messages the bridge accepted and could not deliver, counted with their reasons.

Nothing is dropped without a word: a message that can still be refused is refused by the
call that sent it (:class:`~berrymq_nats.options.BrokerBufferFull`); what cannot be (it
was in flight when the server died, a shared queue was full when it came in from NATS)
is counted here, readable as :attr:`Losses.counts` and in the bridge's status line, and
reported by one log line per burst: the first loss is logged at once, later ones are
summed and logged at most every ``interval`` seconds.

Not everything counted here is a message this process accepted: what another client
published that is not a berryMQ message (:data:`UNDECODABLE`, :data:`WRONG_SUBJECT`) and
the bridge's own presence and control messages (:data:`CONTROL_UNSENT`) are counted and
logged the same way, but apart (:data:`FOREIGN`): they are no loss of this process's
messages, so ``flush()`` (which tells about those, :attr:`Losses.own`) does not fail on them.

The losses of this process's messages are also counted in the bus's own
:attr:`~berrymq.Bus.losses`, as ``nats: REASON`` (without a second log line), so that
whatever reads them (a node's ``/status`` and ``/metrics``, a program) sees the NATS ones
with the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from berrymq.transports.ioloop import io_loop
from berrymq.transports.support import LOSSES

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["CONTROL_UNSENT", "FOREIGN", "IN_FLIGHT", "LANE_STOPPED", "NOT_SENT_AT_CLOSE",
           "OUTGOING", "PUBLISH_DENIED", "QUEUE_FULL", "REFUSED_HERE", "REQUEST_REFUSED", "UNDECODABLE",
           "UNPUBLISHABLE", "WRONG_SUBJECT", "Losses"]

#: Published on a connection that died before the server confirmed it (PING/PONG):
#: possibly lost. Not sent again, as the server may have routed it already.
IN_FLIGHT = "in flight when the connection dropped"
#: Waiting in the disconnect buffer when the bridge was closed.
NOT_SENT_AT_CLOSE = "not sent: the bridge closed while NATS was unreachable"
#: Came in from NATS for a shared queue that refused it (full or closed).
QUEUE_FULL = "refused by a local shared queue"
#: Came in from NATS for a receiver here that refused it (``QueueFull``: a full bounded
#: ``Queue``, an ``async def`` receiver with ``async_pending_limit`` messages outstanding):
#: its publisher is not there to be told.
REFUSED_HERE = "refused by a local receiver"
#: Came in from NATS while the process was exiting (the delivery lane had stopped).
LANE_STOPPED = "not delivered: the delivery lane had stopped"
#: A request from NATS that found the answering lane full (receivers that do not return):
#: not run, its asker answered with a ``QueueFull`` entry.
REQUEST_REFUSED = "request refused: the answering lane was full"
#: Came in from NATS but was not a berryMQ message.
UNDECODABLE = "undecodable message from NATS"
#: The client refused to publish it (too large for the server, say).
UNPUBLISHABLE = "refused by the NATS client"
#: The server refused it: this connection's user may not publish on its subject
#: (``-ERR 'Permissions Violation for Publish to ...'``).
PUBLISH_DENIED = "denied by the NATS server's permissions"
#: Came in from NATS on a subject its identifier does not map to: another client
#: published it where it may (its NATS permissions), naming receivers it may not reach.
WRONG_SUBJECT = "dropped: its identifier does not match the subject it came on"
#: A presence, acknowledgement or reply of the bridge's own that could not be published
#: (over the server's max_payload, say): not one of the application's messages.
CONTROL_UNSENT = "the bridge's own control message not sent"

#: The reasons that are losses of messages on their way out (the bridge's ``lost`` in a
#: node's ``/status`` ``connections``); :data:`PUBLISH_DENIED` is its ``refused``.
OUTGOING = frozenset({IN_FLIGHT, NOT_SENT_AT_CLOSE, UNPUBLISHABLE})

#: The reasons that are no loss of a message this process accepted (see the module docs).
FOREIGN = frozenset({UNDECODABLE, WRONG_SUBJECT, CONTROL_UNSENT})


class Losses:
    """Per-reason counts of lost messages, and the rate-limited log line that reports them."""

    def __init__(self, logger: logging.Logger, who: str, interval: float = 5.0,
                 bus: Bus | None = None) -> None:
        self.counts: dict[str, int] = {}
        #: the bus whose ``losses`` count this process's lost messages too
        self._bus = bus
        self.total = 0
        #: of :attr:`total`, the messages this process accepted (all but :data:`FOREIGN`)
        self.own = 0
        self._logger = logger
        self._who = who
        self._interval = interval
        self._lock = threading.Lock()
        self._unreported: dict[str, int] = {}
        self._last_log = -interval
        self._scheduled = False

    def add(self, reason: str, count: int = 1, detail: str = "") -> None:
        """Count ``count`` messages lost for ``reason`` and report them (rate-limited)."""
        if count <= 0:
            return
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + count
            self.total += count
            if reason not in FOREIGN:
                self.own += count
                if self._bus is not None:
                    self._bus.state(LOSSES).add_many(f"nats: {reason}", count)
            self._unreported[reason] = self._unreported.get(reason, 0) + count
            wait = self._last_log + self._interval - time.monotonic()
            if wait > 0:
                if not self._scheduled:  # report the burst when the interval is over
                    self._scheduled = True
                    io_loop.call_soon(self._report_later, wait)
                return
        self._report(detail)

    def _report_later(self, wait: float) -> None:
        io_loop.loop.call_later(wait, self._report)

    def _report(self, detail: str = "") -> None:
        with self._lock:
            unreported, self._unreported = self._unreported, {}
            self._scheduled = False
            self._last_log = time.monotonic()
        if unreported:
            text = ", ".join(f"{n} {reason}" for reason, n in unreported.items())
            self._logger.error("%s lost %d message(s): %s%s (%d lost in all)", self._who,
                               sum(unreported.values()), text,
                               f"; {detail}" if detail else "", self.total)

    def snapshot(self) -> dict[str, int]:
        """A copy of :attr:`counts`, taken under the lock."""
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        """Report what is still unreported now (the bridge is closing)."""
        self._report()

    def summary(self) -> str:
        """``"lost 3 (2 in flight ..., 1 refused ...)"``, or '' when nothing was lost."""
        with self._lock:
            if not self.total:
                return ""
            return f"lost {self.total} (" + ", ".join(
                f"{n} {reason}" for reason, n in self.counts.items()) + ")"

"""What the NATS server and client report to a bridge besides messages: ``-ERR`` lines and
the client's errors (``nats-py``'s ``error_cb`` and ``closed_cb``).

- **Publish denied** (``-ERR 'Permissions Violation for Publish to "S"'``): the server
  dropped one message (it sends one line per message and keeps the connection). A message
  of the application's is counted as lost (:data:`~berrymq_nats.losses.PUBLISH_DENIED`,
  so ``flush()`` returns False, one log line per burst); one of the bridge's own (presence,
  replies) apart (:data:`~berrymq_nats.losses.CONTROL_UNSENT`).
- **Subscription denied** (``... for Subscription to "S"``): nothing published there will
  come. Said by an error line (the first of a burst at once, then one line per 5 s with
  the count), and kept in :attr:`ServerErrors.denied`, which the bridge's status line
  shows, while the bridge keeps that subscription: a subject it no longer follows is
  forgotten, so that a client that makes the bus follow ever new patterns (sessions of
  ``connect_via_queue`` opened and closed) does not grow it without end.
- **The client closed for good**: ``nats-py`` closes the client, without reconnecting,
  after a server error other than a stale connection or a permission (a protocol error
  such as ``Maximum Control Line Exceeded``): the state and the log line name that error.
- **The client stopped reading** while connected (:func:`~berrymq_nats.client.
  watch_reading`): said, and the client reconnects.
- Anything else is the last error (the state line shows it while not connected).
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from berrymq.bursts import BurstLog
from berrymq_nats.client import reconnect
from berrymq_nats.losses import CONTROL_UNSENT, PUBLISH_DENIED

if TYPE_CHECKING:
    from nats.aio.client import Client

    from berrymq_nats.bridge import NatsBridge

__all__ = ["ServerErrors"]

logger = logging.getLogger("berrymq.nats")

# (nats-py passes the server's line on in lower case, the subject too)
_PERMISSION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"'
                         r'(?: using queue "([^"]*)")?', re.IGNORECASE)


def describe(exc: BaseException) -> str:
    """``Type: text`` of an error, as the state line shows it."""
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


class ServerErrors:
    """One bridge's handling of the errors its client reports."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        #: the subscriptions the server refused that the bridge still has: subject (and
        #: queue group) -> its -ERR text
        self.denied: dict[str, str] = {}
        self._denials = BurstLog(logger)
        #: whether nobody waits for the first connection (a bridge started in the
        #: background, as from the settings file): then the attempts that fail before it
        #: are said (at once, then once a minute); a caller that waits raises instead
        self.in_background = False
        self._unreached = BurstLog(logger, interval=60.0)
        self._since = time.monotonic()

    def reached_or_closed(self) -> None:
        """The bridge connected, or closed: a warning that it had not reached its server,
        still to be written at the end of its minute, would no longer be true."""
        self._unreached.discard()

    async def on_error(self, exc: Exception) -> None:
        """``nats-py``'s ``error_cb``."""
        bridge = self.bridge
        text = str(exc)
        found = _PERMISSION.search(text)
        if found is not None:
            kind, subject, group = found.groups()
            if kind.lower() == "publish":
                self.publish_denied(subject, text)
            else:
                subject, group = self._cased(subject, group)
                self.subscription_denied(f"{subject} (queue group {group})" if group else subject,
                                         text)
            return
        bridge.last_error = describe(exc)
        bridge.attempt_failed.set()
        if bridge.outbox.connected:
            logger.warning("NATS bridge of bus %s: %s", bridge.bus.name, bridge.last_error)
            return
        # each failed reconnection attempt: the state line shows the last one
        logger.debug("NATS bridge of bus %s: %s", bridge.bus.name, bridge.last_error)
        if self.in_background and not bridge.closed and not bridge.wait_connected(0):
            # (a bridge started from the settings file said nothing while NATS was down)
            self._unreached.warning(
                "NATS bridge of bus %s has not reached %s in %.0f s of trying: %s; "
                "messages sent meanwhile wait in its buffer (buffer_limit %d)",
                bridge.bus.name, bridge.address, time.monotonic() - self._since,
                bridge.last_error, bridge.options.buffer_limit)

    def publish_denied(self, subject: str, text: str) -> None:
        """The server dropped one message on ``subject``: count it (the log is per burst)."""
        prefix, subject = self.bridge.subjects.prefix.lower(), subject.lower()
        own = subject.startswith(f"{prefix}.") and not subject.startswith(f"{prefix}.~~.")
        self.bridge.losses.add(PUBLISH_DENIED if own else CONTROL_UNSENT, 1,
                               f"on {subject}: {text}")

    def _cased(self, subject: str, group: str | None) -> tuple[str, str | None]:
        """The subscription's subject and group as the bridge made them (in their case)."""
        following = self.bridge.following
        for made, made_group in [(s, None) for s in following.plain] + list(following.queued):
            if made.lower() == subject.lower() and (group is None) == (made_group is None) and (
                    group is None or made_group.lower() == group.lower()):  # type: ignore[union-attr]
                return made, made_group
        return subject, group

    def subscription_denied(self, what: str, text: str) -> None:
        self._forget_unfollowed()
        if what in self.denied:
            return
        self.denied[what] = text
        self._denials.error("NATS bridge of bus %s: the NATS server refused the subscription "
                            "to %s (%s): nothing published there reaches this process",
                            self.bridge.bus.name, what, text)

    def _forget_unfollowed(self) -> None:
        """Drop the denials of subscriptions the bridge no longer has."""
        following = self.bridge.following
        kept = set(following.plain)
        kept.update(f"{subject} (queue group {group})" for subject, group in following.queued)
        for what in [what for what in self.denied if what not in kept]:
            del self.denied[what]

    def close(self) -> None:
        """The bridge closed: write the closing line of a burst of denials now."""
        self._denials.flush()

    def status(self) -> str:
        """The part of the status line about subscriptions the server denied, or that were
        not made as they would not fit (:attr:`Following.unfit <berrymq_nats.following.
        Following.unfit>`); '' when there are none."""
        parts = []
        self._forget_unfollowed()
        if self.denied:
            parts.append(f"{len(self.denied)} subscriptions denied by the NATS server: "
                         + ", ".join(sorted(self.denied)))
        unfit = self.bridge.following.unfit
        if unfit:
            parts.append(f"{len(unfit)} patterns not subscribed (their NATS subjects would "
                         "not fit the server's control line): " + ", ".join(sorted(unfit)))
        return "; ".join(parts)

    async def on_closed(self) -> None:
        """``nats-py``'s ``closed_cb``: the client closed without being asked to (it gave
        up reconnecting, or a server error closed it): the state and log say why."""
        bridge = self.bridge
        if bridge.closed:
            return
        nc = bridge.client
        error = getattr(nc, "last_error", None) if nc is not None else None
        if error is not None:
            bridge.last_error = describe(error)
        state = f"failed: the NATS client {bridge.options.gave_up}"
        if error is not None and bridge.options.max_reconnect_attempts < 0:
            state += f" after the error: {bridge.last_error}"
        bridge.failed(state)

    def reading_stopped(self, nc: Client) -> None:
        """nats-py's reading task ended while connected (:func:`~berrymq_nats.client.
        watch_reading`): say so and reconnect. What the server had not confirmed is then
        counted as lost; what it sent meanwhile is a reconnection's at-most-once window."""
        bridge = self.bridge
        if bridge.closed or nc is not bridge.client:
            return
        bridge.last_error = "nats-py stopped reading the connection (its reading task ended)"
        bridge.state = "reconnecting (nats-py stopped reading)"
        logger.error("NATS bridge of bus %s: nats-py's task that reads from %s ended while "
                     "the connection was up (see nats-py's 'encountered error' line), so "
                     "nothing more would be received; reconnecting", bridge.bus.name,
                     bridge.server)
        reconnect(nc, bridge.last_error)

"""The NATS subscriptions of a bridge, following its bus's subscriptions.

The bus tells the bridge of every change (a subscription listener, called under the bus's
lock); the loop thread then makes the NATS side match: one plain subscription per subject
the bus's patterns need (minimised, so ``a.*`` covers ``a.b``), one queue-group
subscription per subject of a shared queue, and the patterns announced to the peers that
``ask`` through NATS.

A receiver whose subjects would not fit the server's control line
(:meth:`~berrymq_nats.subjects.SubjectMap.subscribe_problem`) is refused as it is made
(:class:`~berrymq_nats.subjects.SubjectTooLong` from the call that made it, and the bus
takes the subscription back); one made before the bridge is not subscribed through NATS, and
the status line says so (:attr:`Following.unfit`). Otherwise the server would answer
``-ERR`` and ``nats-py`` close the client for good.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from nats.aio.subscription import Subscription as NatsSubscription

from berrymq.identifier import Identifier
from berrymq.transports.ioloop import io_loop
from berrymq_nats.client import subscribe_direct
from berrymq_nats.subjects import SubjectTooLong, minimize

if TYPE_CHECKING:
    from berrymq_nats.bridge import NatsBridge

__all__ = ["Following"]

logger = logging.getLogger("berrymq.nats")


class Following:
    """A bridge's NATS subscriptions (:attr:`plain` by subject, :attr:`queued` by subject
    and group), kept in step with its bus's on the I/O loop."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self.plain: dict[str, NatsSubscription] = {}
        self.queued: dict[tuple[str, str], NatsSubscription] = {}
        self._lock = asyncio.Lock()
        self._scheduled = False
        #: the patterns not subscribed through NATS, as their subjects would not fit
        self.unfit: dict[str, str] = {}

    def changed(self, subscription: Any, added: bool) -> None:
        """The bus's subscription listener.

        :raises SubjectTooLong: for a new receiver whose subjects would not fit the server's
            control line: the bus then takes the subscription back, at once."""
        # Called by the bus, under its lock, in the thread that changed a subscription:
        # only note the change; the loop thread follows it.
        bridge = self.bridge
        if added and bridge.subscribe_enabled and not subscription.pattern.is_local:
            problem = bridge.subjects.subscribe_problem(subscription.pattern,
                                                        subscription.shared)
            if problem is not None:
                raise SubjectTooLong(f"receiver of {subscription.pattern} refused: {problem}")
        self.bridge.shared.changed()
        if not self._scheduled and not self.bridge.closed:
            self._scheduled = True
            io_loop.call_soon(self._schedule)

    def _schedule(self) -> None:
        self._scheduled = False
        io_loop.loop.create_task(self.sync())

    def _fits(self, pattern: Identifier, shared: bool) -> bool:
        problem = self.bridge.subjects.subscribe_problem(pattern, shared)
        if problem is None:
            return True
        if str(pattern) not in self.unfit:
            self.unfit[str(pattern)] = problem
            logger.error("NATS bridge of bus %s: receivers of %s get no messages through "
                         "NATS: %s", self.bridge.bus.name, pattern, problem)
        return False

    async def sync(self) -> None:
        """Make the NATS subscriptions follow the bus's (loop thread)."""
        bridge = self.bridge
        async with self._lock:
            nc = bridge.client
            if nc is None or bridge.closed or not bridge.subscribe_enabled:
                return
            shared = bridge.shared
            subjects = bridge.subjects
            shared.refresh()
            plain: set[str] = set()
            patterns: set[str] = set()
            queued: dict[tuple[str, str], Identifier] = {}
            shared_subs = {id(sub) for sub, _, _ in shared.entries}
            for sub in bridge.bus.subscriptions():
                pattern = sub.pattern
                if pattern.is_local or not self._fits(pattern, id(sub) in shared_subs):
                    continue
                if id(sub) in shared_subs:
                    group = subjects.group(pattern)
                    for subject in subjects.interest(pattern):
                        queued[(subject, group)] = pattern
                else:
                    plain.update(subjects.interest(pattern))
                    patterns.add(str(pattern))
            plain = minimize(plain)
            for subject in [s for s in self.plain if s not in plain]:
                await self.plain.pop(subject).unsubscribe()
            for key in [k for k in self.queued if k not in queued]:
                await self.queued.pop(key).unsubscribe()
            on_message = bridge.inbound.gather(bridge.inbound.on_message, requests=True)
            for subject in sorted(plain - self.plain.keys()):
                self.plain[subject] = await subscribe_direct(nc, subject, "", on_message)
            for key in sorted(queued.keys() - self.queued.keys()):
                subject, group = key
                sink = bridge.inbound.gather(bridge.inbound.for_group(group))
                self.queued[key] = await subscribe_direct(nc, subject, group, sink)
            announced = tuple(sorted(patterns))
            if announced != bridge.asking.patterns:
                if bridge.outbox.connected:
                    bridge.asking.announce("here", announced)
                else:
                    bridge.asking.patterns = announced

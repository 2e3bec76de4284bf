"""The NATS subscriptions of a bridge, following its bus's subscriptions.

The bus tells the bridge of every change (a subscription listener, called under the bus's
lock); the loop thread then makes the NATS side match: one plain subscription per subject
the bus's patterns need (minimised, so ``a.*`` covers ``a.b``), one queue-group
subscription per subject of a shared queue, and the patterns announced to the peers that
``ask`` through NATS.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from nats.aio.subscription import Subscription as NatsSubscription

from berrymq.identifier import Identifier
from berrymq.transports.ioloop import io_loop
from berrymq_nats.client import subscribe_direct
from berrymq_nats.subjects import minimize

if TYPE_CHECKING:
    from berrymq_nats.bridge import NatsBridge

__all__ = ["Following"]


class Following:
    """A bridge's NATS subscriptions (:attr:`plain` by subject, :attr:`queued` by subject
    and group), kept in step with its bus's on the I/O loop."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self.plain: dict[str, NatsSubscription] = {}
        self.queued: dict[tuple[str, str], NatsSubscription] = {}
        self._lock = asyncio.Lock()
        self._scheduled = False

    def changed(self, subscription: Any, added: bool) -> None:
        """The bus's subscription listener."""
        # Called by the bus, under its lock, in the thread that changed a subscription:
        # only note the change; the loop thread follows it.
        self.bridge.shared.changed()
        if not self._scheduled and not self.bridge.closed:
            self._scheduled = True
            io_loop.call_soon(self._schedule)

    def _schedule(self) -> None:
        self._scheduled = False
        io_loop.loop.create_task(self.sync())

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
                if pattern.is_local:
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

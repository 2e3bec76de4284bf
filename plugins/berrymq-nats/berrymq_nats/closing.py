"""Closing a NATS bridge: send what waits, count what could not be sent, disconnect.

Closing is the one part of a :class:`~berrymq_nats.bridge.NatsBridge`'s life that has to
bound every step (the server may be stalled, the program may be ending, Ctrl-C may cut it
short) and still account for every message accepted: what was not confirmed is counted in
the bridge's ``losses`` before :meth:`close <berrymq.transports.styles.LinkConnection.close>`
returns. It is apart from :mod:`berrymq_nats.bridge`, which connects and flushes, because
it is one sequence read on its own; it uses only the bridge's public attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from berrymq.transports.ioloop import io_loop
from berrymq_nats.at_exit import LIVE
from berrymq_nats.client import close_client, confirm_written, first_of, within

if TYPE_CHECKING:
    from nats.aio.client import Client

    from berrymq_nats.bridge import NatsBridge

__all__ = ["CLOSE_DELIVERY_WAIT", "abandon", "close_bridge", "finish", "give_up",
           "send_the_rest", "shutdown"]

logger = logging.getLogger("berrymq.nats")

#: How long closing a bridge waits for the delivery of what it read from NATS before.
CLOSE_DELIVERY_WAIT = 10.0


def close_bridge(bridge: NatsBridge, polite: bool) -> None:
    """The bridge's part of closing (from :meth:`LinkConnection.close
    <berrymq.transports.styles.LinkConnection.close>`, once, after the bus stopped
    forwarding to it): send what waits while connected (polite or not: it goes to the
    broker, not to a peer that is gone), unsubscribe and disconnect. What could not be
    sent is counted in the bridge's ``losses`` and logged."""
    LIVE.discard(bridge)
    bridge.errors.reached_or_closed()
    bus = bridge.bus
    bus.remove_subscription_listener(bridge.following.changed)
    bridge.shared.unguard()
    while bridge in bus.connections():  # tracked once per way it was opened
        bus.untrack_connection(bridge)
    if bridge.outbox.forked_error is not None:  # the parent's client, in a forked process:
        bridge.up.clear()  # nothing of it runs here to shut down (the parent closes it)
        bridge.state = "closed"
        return
    if io_loop.in_loop():
        io_loop.loop.create_task(shutdown(bridge))
        return
    wait = bridge.options.connect_timeout
    try:  # shutdown bounds its own steps: this bound is for a loop held up elsewhere
        io_loop.run(shutdown(bridge), 3 * wait + 5.0)
    except Exception as exc:  # noqa: BLE001 - closing goes on regardless
        logger.error("NATS bridge of bus %s did not shut down cleanly: %r", bus.name, exc)
        give_up(bridge, wait + 1.0, wait_for_client=True)
    except KeyboardInterrupt:  # Ctrl-C: no more waiting, but what was not sent is counted
        give_up(bridge, 1.0, wait_for_client=False)
        raise
    if not io_loop.lane.in_lane():  # (a receiver closing its bus would wait for itself)
        # what was read from NATS reaches the receivers before the bus forgets them;
        # what the lane runs later is counted as lost by the closed node
        inbound = bridge.inbound
        if not inbound.wait_delivered(inbound.gathered, CLOSE_DELIVERY_WAIT):
            logger.warning("NATS bridge of bus %s closed with %d message(s) read from NATS "
                           "not delivered after %gs (receivers slower than they came): "
                           "they are delivered later, or counted as lost if the bus "
                           "closes first", bus.name, inbound.gathered - inbound.delivered,
                           CLOSE_DELIVERY_WAIT)


def give_up(bridge: NatsBridge, timeout: float, *, wait_for_client: bool) -> None:
    """Closing was cut short (it failed, or Ctrl-C ended it): count what was not
    confirmed or not sent, and report it, before returning; let the client go, waiting
    up to ``timeout`` for it only when ``wait_for_client``."""
    try:
        io_loop.run(abandon(bridge, wait_for_client), timeout)
    except Exception as exc:  # noqa: BLE001 - nothing more to do
        logger.error("NATS bridge of bus %s: the I/O loop did not count what was "
                     "not sent: %r", bridge.bus.name, exc)


async def abandon(bridge: NatsBridge, wait_for_client: bool) -> None:
    """Loop thread: :func:`give_up`'s part, counting what was not sent, then letting the
    client go (waiting for it only when ``wait_for_client``)."""
    if bridge.state == "closed":
        return
    bridge.outbox.connection_lost(closing=True)
    finish(bridge)
    nc = bridge.client
    if nc is None or nc.is_closed:
        return
    if not wait_for_client:  # it goes on closing, or ends with the loop
        bridge.tasks.append(asyncio.get_running_loop().create_task(
            close_client(nc, bridge.options.connect_timeout)))
        return
    with contextlib.suppress(Exception):
        await close_client(nc, bridge.options.connect_timeout)


def finish(bridge: NatsBridge, connected: bool = False) -> None:
    """Count what could not be sent (see :meth:`Outbox.close
    <berrymq_nats.outbox.Outbox.close>`), report the losses now, and say closed."""
    bridge.outbox.close(connected)
    bridge.up.clear()
    bridge.state = "closed"
    bridge.losses.close()
    bridge.errors.close()


async def shutdown(bridge: NatsBridge) -> None:
    """Send what waits and have it confirmed, within ``connect_timeout`` (the server
    may be stalled); count what was not, then close the client, within
    ``connect_timeout`` again (at once when the server did not confirm in time). What
    was not sent is counted before the client is closed, so ``close()`` returns with
    it counted. First, a first connection still
    being made (a short program closes, or ends, at once) is waited for until it is
    made or an attempt fails, within ``connect_timeout``: what waits goes out on it."""
    current = asyncio.current_task()
    wait = bridge.options.connect_timeout
    connecting = [t for t in bridge.tasks[1:] if t is not current and not t.done()]
    if connecting:  # until it is done subscribing too; once closed it makes no new attempt
        bridge.attempt_failed.clear()
        await first_of(connecting, bridge.attempt_failed, wait)
    for task in bridge.tasks:
        task.cancel()
    nc = bridge.client
    connected = nc is not None and nc.is_connected and bridge.outbox.connected
    if nc is not None and connected:
        try:
            await within(send_the_rest(bridge, nc, wait), wait, "sending what waits")
        except Exception as exc:  # noqa: BLE001 - counted, closing goes on
            if isinstance(exc, TimeoutError):  # stalled: it would not drain a close either
                exc = TimeoutError(f"NATS did not confirm within connect_timeout = {wait:g}s")
                wait = 0.1
            logger.error("NATS bridge of bus %s: last flush failed: %r", bridge.bus.name, exc)
            bridge.outbox.connection_lost(closing=True)
    finish(bridge, connected)
    if nc is not None and not nc.is_closed:
        await close_client(nc, wait)
    others = [task for task in bridge.tasks if task is not current]
    if others:  # (bounded: a task stuck in nats-py's publish may not end on a cancel)
        await asyncio.wait(others, timeout=min(wait, 0.5))


async def send_the_rest(bridge: NatsBridge, nc: Client, timeout: float) -> None:
    """Say bye, publish what waits, and have the server confirm it."""
    bridge.asking.announce("bye")
    await bridge.outbox.pump()
    await confirm_written(nc, timeout)

"""A message from NATS that a receiver here refuses (``QueueFull``: a busy ``async def``
receiver, a full bounded ``Queue``) has no publisher to be told: it is counted in the
bridge's losses (one log line per burst), not logged once per message and forgotten."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from berrymq_nats.losses import REFUSED_HERE
from berrymq_nats.testing import bridge_of, settle, wait_until

from berrymq import Bus, Message
from berrymq.plugins import PluginHost

WAIT = 10.0


def test_a_refusal_by_a_busy_async_receiver_is_counted(nats_server: Any,
                                                       nats_host: PluginHost) -> None:
    sender = Bus(raise_errors=True, plugins=nats_host, name="sender")
    receiving = Bus(raise_errors=True, async_pending_limit=1, async_pending_wait=0,
                    plugins=nats_host, name="receiving")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    release = asyncio.Event()
    got: list[int] = []

    async def slow(message: Message) -> None:
        await release.wait()
        got.append(message.args[0])

    async def register() -> None:
        receiving.subscribe("job:*", slow, weak=False)

    try:
        asyncio.run_coroutine_threadsafe(register(), loop).result(WAIT)
        bridges = bridge_of(sender, nats_server.url), bridge_of(receiving, nats_server.url)
        settle(*bridges)
        for i in range(3):  # the first is held by the receiver; the next two are refused
            sender.twitter("job:x", i)
        losses = bridges[1].losses
        wait_until(lambda: losses.counts.get(REFUSED_HERE) == 2, WAIT, "two refusals counted")
        assert bridges[1].flush(WAIT) is False  # what was lost since the last flush
        loop.call_soon_threadsafe(release.set)
        wait_until(lambda: got, WAIT, "the first message delivered")
        assert got == [0]
    finally:
        loop.call_soon_threadsafe(release.set)
        sender.close()
        receiving.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()

"""asyncio: await a ``berrymq.Queue`` and iterate it with ``async for``; the loop keeps
running while it waits, and the messages come from a plain thread.

Expected output:
    first: task:run ('a',)
    task:run ('b',)
    task:run ('c',)
    queue closed: done
"""

from __future__ import annotations

import asyncio
import threading

import berrymq


def producer(queue: berrymq.Queue) -> None:
    for name in ("a", "b", "c"):
        berrymq.twitter("task:run", name)
    queue.close()  # ends the async for once the stored messages are taken


async def main() -> None:
    queue = berrymq.Queue("task:*")
    # Nothing is there yet: get_async waits on the loop, no thread is blocked.
    waiting = asyncio.create_task(queue.get_async(timeout=5))
    await asyncio.sleep(0)
    threading.Thread(target=producer, args=(queue,)).start()
    first = await waiting
    print("first:", first.id, first.args)
    async for message in queue:
        print(message.id, message.args)
    print("queue closed: done")


if __name__ == "__main__":
    asyncio.run(main())

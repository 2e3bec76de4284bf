"""asyncio: ``async def`` receivers run on the event loop they were registered from,
whichever thread sends; ``ask_async`` awaits their replies without blocking the loop.

Expected output:
    on_order: order:placed 42 (in MainThread)
    on_order: order:placed 43 (in MainThread)
    replies: ['price of 42 is 4.20', 'sync quote']
"""

from __future__ import annotations

import asyncio
import threading

import berrymq
from berrymq import Message


async def main() -> None:
    handled = asyncio.Event()
    count = 0

    # Registered inside the running loop: its coroutines run on this loop.
    @berrymq.following_function("order:*")
    async def on_order(message: Message) -> None:
        nonlocal count
        await asyncio.sleep(0.01)  # real async work: the loop stays free meanwhile
        print(f"on_order: {message.id} {message.args[0]} "
              f"(in {threading.current_thread().name})")
        count += 1
        if count == 2:
            handled.set()

    # A sender in another thread, and one in the loop itself: neither waits.
    sender = threading.Thread(target=berrymq.twitter, args=("order:placed", 42))
    sender.start()
    sender.join()
    await asyncio.sleep(0.05)  # keep the printed order stable for this example
    berrymq.twitter("order:placed", 43)
    await handled.wait()

    @berrymq.following_function("price:*")
    async def price(message: Message) -> str:
        await asyncio.sleep(0.01)
        return f"price of {message.args[0]} is {message.args[0] / 10:.2f}"

    berrymq.regist_function("price:*", lambda message: "sync quote", weak=False)
    print("replies:", await berrymq.ask_async("price:get", 42, timeout=5))


if __name__ == "__main__":
    asyncio.run(main())

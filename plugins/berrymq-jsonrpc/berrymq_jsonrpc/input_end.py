"""The end of a client's input on one connection, which its blocking ``get``s wait for."""

from __future__ import annotations

import asyncio

__all__ = ["InputEnd"]


class InputEnd:
    """Done once a client ended its input or its connection: the blocking ``get``s of that
    connection then stop waiting, answered *Queue is empty* with nothing taken (see
    :meth:`~berrymq_jsonrpc.queue_methods.QueueMethods.get_waiting`). Used on the I/O loop
    only.

    Each waiting ``get`` is woken through a set of futures, not through a done-callback of
    one future that all of them share: asyncio removes a callback by scanning all of them,
    so a connection's n waits cost n squared, and a batch of 10,000 blocking gets held the
    loop (every connection of the node) for seconds."""

    __slots__ = ("_ended", "_waiters")

    def __init__(self) -> None:
        self._ended = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def watched(self) -> int:
        """How many waiting ``get``s the end would wake now."""
        return len(self._waiters)

    def done(self) -> bool:
        """Whether the input has ended."""
        return self._ended

    def end(self) -> None:
        """The input ended: wake every waiting ``get`` (once; later calls do nothing)."""
        if self._ended:
            return
        self._ended = True
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def watch(self, waiter: asyncio.Future[None]) -> None:
        """Have ``waiter`` done at the end of the input (at once if it has ended)."""
        if not self._ended:
            self._waiters.add(waiter)
        elif not waiter.done():
            waiter.set_result(None)

    def unwatch(self, waiter: asyncio.Future[None]) -> None:
        """Forget ``waiter``, done or given up on."""
        self._waiters.discard(waiter)

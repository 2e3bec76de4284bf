"""The hop count of the message being delivered in the current thread.

A receiver that sends passes its message's hop count plus one on, so that a loop of
receivers (or of nodes) ends at the bus's hop limit. The count lives in a context variable
holding a one-element list (the "box"): the hot path does one ``ContextVar.get`` and then
only indexes the list. Every thread starts with an empty context and so gets its own box;
asyncio tasks copied from one context share a box, which is safe because a synchronous
delivery restores it before any task can run again (async receivers run in a fresh
context, see :mod:`berrymq.aio`).

:func:`berrymq._delivery.deliver` sets the box around the receivers it runs; the code
that carries a count to another thread or task sets it there, and restores it, around
the one call it makes: the coroutine wrapper of :mod:`berrymq.aio`, ``ask_async``'s
executor call (:mod:`berrymq.ask`) and the reply of an async receiver to ``talk``
(:mod:`berrymq._pending`). Everything else reads it.
"""

from __future__ import annotations

import contextvars

__all__ = ["get_box", "hop_box"]

_hops: contextvars.ContextVar[list[int]] = contextvars.ContextVar("berrymq_hops")

#: ``get_box(None)``: this thread's box, or None before the thread's first delivery.
get_box = _hops.get


def hop_box() -> list[int]:
    """This thread's hop box: ``box[0]`` is the hop count of the message being delivered."""
    box = _hops.get(None)
    if box is None:
        box = [0]
        _hops.set(box)
    return box

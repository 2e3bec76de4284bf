"""The hop count of the message being delivered in the current thread.

A receiver that sends passes its message's hop count plus one on, so that a loop of
receivers (or of nodes) ends at the bus's hop limit. The count lives in a context variable
holding a small list (the "box": the count, and the thread it belongs to): the hot path
does one ``ContextVar.get`` and then only indexes the list. A box is only ever changed by
its own thread. A context copied into another thread (``asyncio.to_thread`` copies the
caller's) brings the other thread's box with it: the first delivery there finds a box of
another thread and makes the thread its own, starting at the count it found, so two
threads never save and restore one count (they did: sends from ``to_thread`` workers left
the loop thread's count stuck above 0, and messages were dropped at the hop limit).

:func:`berrymq._delivery.deliver` sets the box around the receivers it runs; the code
that carries a count to another thread or task sets it there, and restores it, around
the one call it makes: the coroutine wrapper of :mod:`berrymq.aio`, ``ask_async``'s
executor call (:mod:`berrymq.ask`) and the reply of an async receiver to ``talk``
(:mod:`berrymq._pending`). Everything else reads it.
"""

from __future__ import annotations

import contextvars
from threading import get_ident

__all__ = ["get_box", "get_ident", "hop_box"]

_hops: contextvars.ContextVar[list[int]] = contextvars.ContextVar("berrymq_hops")

#: ``get_box(None)``: the context's box, or None before its first delivery. It is this
#: thread's when ``box[1] == get_ident()``; otherwise :func:`hop_box` gives this thread's.
get_box = _hops.get


def hop_box() -> list[int]:
    """This thread's hop box: ``box[0]`` is the hop count of the message being delivered,
    ``box[1]`` the thread's ident."""
    box = _hops.get(None)
    ident = get_ident()
    if box is None or box[1] != ident:  # none yet, or another thread's (a copied context)
        box = [0 if box is None else box[0], ident]
        _hops.set(box)
    return box

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

:func:`berrymq._delivery.deliver` sets the box around the receivers it runs (written out
there: it is the hot path); the code that carries a count to another thread or task sets
it with :func:`carrying_hops` around the one call it makes there (``ask_async``'s executor
call in :mod:`berrymq.ask`, the reply of an async receiver to ``talk`` in
:mod:`berrymq._pending`), or with :func:`set_hops` in a task's own context (the coroutine
wrapper of :mod:`berrymq.aio`). Everything else reads it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from threading import get_ident

__all__ = ["carrying_hops", "get_box", "get_ident", "hop_box", "set_hops"]

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


def set_hops(count: int) -> None:
    """Set this thread's hop count in the current context, for good: in a context of its
    own (a task's), which nothing else delivers in."""
    hop_box()[0] = count


@contextlib.contextmanager
def carrying_hops(count: int) -> Iterator[None]:
    """This thread's hop count is ``count`` inside the block, and what it was after it:
    for a call that carries a message's count to another thread or to a callback."""
    box = hop_box()
    outer = box[0]
    box[0] = count
    try:
        yield
    finally:
        box[0] = outer

"""The blocking ``get``s waiting on one remote client's queue, in the order they came.

An entry that comes goes to the ``get`` that has waited longest, as a local
:class:`berrymq.Queue`'s ``get_async`` does: the queue is first in, first out, and so are
the requests that take from it (a client matching answers by id, or pipelining gets on one
connection, sees its messages in order). So only the first of the line is woken when an
entry comes, and the next one once the first is gone with what it took, while entries are
left. Used on the I/O loop only; a thread that stores an entry calls :meth:`GetLine.wake`
through the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from berrymq_jsonrpc.input_end import InputEnd

__all__ = ["GetLine", "Place"]


class Place:
    """One ``get``'s place in the line: its future is done when it may look again."""

    __slots__ = ("woken",)

    def __init__(self) -> None:
        self.woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class GetLine:
    """The waiting ``get``s of one queue, oldest first (an ordered dict: one that gives up
    leaves from anywhere in the line at no cost, however many wait)."""

    __slots__ = ("_places",)

    def __init__(self) -> None:
        self._places: collections.OrderedDict[Place, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._places)

    def join(self) -> Place:
        """A place at the end of the line."""
        place = Place()
        self._places[place] = None
        return place

    def is_first(self, place: Place) -> bool:
        """Whether ``place`` is the one an entry goes to now."""
        return next(iter(self._places)) is place

    def leave(self, place: Place, entries_left: bool) -> None:
        """``place``'s get is answered or gave up; the next is woken when it is now first
        and ``entries_left``."""
        was_first = self.is_first(place)
        del self._places[place]
        if was_first and entries_left:
            self.wake()

    def wake(self) -> None:
        """An entry came: the first of the line looks again."""
        if self._places:
            _wake(next(iter(self._places)))

    def wake_all(self) -> None:
        """The queue closed: every get looks again (and finds it closed)."""
        for place in self._places:
            _wake(place)

    async def wait(self, place: Place, timeout: float, ended: InputEnd | None) -> None:
        """Return once ``place`` is woken, after ``timeout`` seconds, or once ``ended`` is
        done (the client's input ended)."""
        woken = place.woken
        if ended is not None:
            ended.watch(woken)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken, timeout)
        finally:
            if ended is not None:
                ended.unwatch(woken)
            if woken.done():
                place.woken = woken.get_loop().create_future()


def _wake(place: Place) -> None:
    if not place.woken.done():
        place.woken.set_result(None)

"""The accepting end's share of the node's ``max_reading_bytes`` for a long line
(:mod:`berrymq_jsonrpc.reading`).

Without a share a connection is read :data:`~berrymq_jsonrpc.reading.FREE_READING` bytes
at a time, so that the start of a line it holds stays under twice that; a line longer than
that takes a share of the most a line may be, and the connection is read in full reads
again. The share goes with the request its line held (see
:meth:`~berrymq_jsonrpc_tcp.answering.Answerer.own`): given back when the request is taken
up, a request that may wait when it begins. While the share waits for room the connection
is not read, and has no read deadline (see :mod:`berrymq_jsonrpc_tcp.deadline`).
:class:`ReadingShare` is a base class of :class:`~berrymq_jsonrpc_tcp.channel.LineChannel`,
before the protocol whose ``get_buffer`` it narrows.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from berrymq_jsonrpc.reading import FREE_READING, Share

if TYPE_CHECKING:
    from berrymq_jsonrpc.service import Service

    from berrymq_jsonrpc_tcp.answering import Answerer

__all__ = ["ReadingShare"]


class ReadingShare:
    """The share a line being read holds, or waits for."""

    if TYPE_CHECKING:  # kept by LineChannel
        service: Service
        answers: Answerer
        closed: bool
        read_timeout: float | None
        _rest: bytes
        _loop: asyncio.AbstractEventLoop | None

        def pause(self) -> None: ...

        def _line_limit(self) -> int: ...

    _share: Share | None = None
    _small: memoryview | None = None  # the start of the thread's read buffer

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer: memoryview = super().get_buffer(sizehint)  # type: ignore[misc]
        if self._share is not None or self.read_timeout is None:
            return buffer
        small = self._small
        if small is None:
            small = self._small = buffer[:FREE_READING]
        return small

    def _weigh_line(self) -> None:
        """After a read: take a share when the line begun is over
        :data:`~berrymq_jsonrpc.reading.FREE_READING` (not read on until it is held)."""
        if self.closed or self._share is not None or self.read_timeout is None \
                or self._loop is None:
            return
        service = self.service
        share = self._share = service.reading.ask(self._line_limit(), service.max_reading_bytes,
                                                  self._loop, self._share_held)
        if share.waiting:
            self.pause()

    def _share_held(self) -> None:
        """The share waited for is held: read on (unless something else holds reading)."""
        if not self.closed:
            self.answers.dispatch()

    def _waiting_for_share(self) -> bool:
        """Whether the connection is not read for want of room in ``max_reading_bytes``."""
        return self._share is not None and self._share.waiting

    def _line_ended(self) -> Share | None:
        """The share of the line that just ended, which goes with its request (see
        :meth:`~berrymq_jsonrpc_tcp.channel.LineChannel._take`); the next line asks anew."""
        share, self._share = self._share, None
        return share

    def _give_back_share(self) -> None:
        share, self._share = self._share, None
        if share is not None:
            self.service.reading.give_back(share)

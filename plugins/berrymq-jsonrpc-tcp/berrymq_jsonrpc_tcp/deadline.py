"""The accepting end's read deadlines on one TCP connection: the deadline of a line and the
idle limit.

A line not complete ``read_timeout`` seconds after its first byte (a stall, or a slow drip:
the deadline is for the whole line, not per read) is answered *Limit reached* and closes
the connection (:meth:`~berrymq_jsonrpc_tcp.refusing.Refusing._stalled`), and a connection
idle that long without an open session is closed. While the node itself does not read the
connection (its requests wait for the delivery lane, the peer leaves its answers unread, or
a long line waits for room in ``max_reading_bytes``) there is no deadline.

One timer per connection checks both limits and is armed again for the next moment either
could pass. :class:`ReadDeadline` is a base class of
:class:`~berrymq_jsonrpc_tcp.channel.LineChannel` rather than an object of its own, so that
reading notes when a line began and when anything came (``_began``, ``_last``) on the
channel itself: the deadline costs the way of a line nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berrymq_jsonrpc.service import Service

    from berrymq_jsonrpc_tcp.answering import Answerer
    from berrymq_jsonrpc_tcp.calls import Calls

__all__ = ["ReadDeadline"]

logger = logging.getLogger("berrymq.remote.tcp")


class ReadDeadline:
    """The timer that closes a stalled or idle connection on the accepting end."""

    if TYPE_CHECKING:  # kept by LineChannel
        url: str
        closed: bool
        service: Service
        answers: Answerer
        read_timeout: float | None
        calls: Calls
        _rest: bytes
        _began: float
        _last: float

        def unread_answers(self) -> bool: ...

        def close_transport(self) -> None: ...

        def _stalled(self, read_timeout: float) -> None: ...

        def _waiting_for_share(self) -> bool: ...

    _watch: asyncio.TimerHandle | None = None

    def _arm(self, when: float) -> None:
        self._watch = asyncio.get_running_loop().call_at(when, self._check)

    def _disarm(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _in_use(self) -> bool:
        return bool(self.calls.owed) or bool(self.answers.unanswered) or self.service.ties(self)

    def _check(self) -> None:
        self._watch = None
        if self.closed or self.read_timeout is None:
            return
        limit = self.read_timeout
        now = asyncio.get_running_loop().time()
        if self.answers.stalled() or self.unread_answers() or self._waiting_for_share():
            # the node is not reading: no deadline
            self._arm(now + limit)
            return
        if self._rest:
            if now - self._began >= limit:
                self._stalled(limit)
                return
            self._arm(self._began + limit)
            return
        if now - self._last >= limit:
            if not self._in_use():
                logger.debug("%s idle without a session; closed", self.url)
                self.close_transport()
                return
            self._arm(now + limit)
            return
        self._arm(self._last + limit)

"""The requests one end of a TCP connection sent and the peer has not answered yet.

Each request waits under its id: on an asyncio future (:meth:`Calls.exchange`, a task on
the I/O loop) or on a :class:`~berrymq.transports.handback.Handback` that a blocked thread
waits on (:meth:`Calls.call`: a callback writes the request and the reply goes straight to
the thread). A reply line is matched to its request by id (:meth:`Calls.response`); when
the connection ends, every request still waiting fails at once, with the reason the
connection gave (:meth:`Calls.fail`). :class:`Calls` is an object of the
:class:`~berrymq_jsonrpc_tcp.channel.LineChannel`'s, as its
:class:`~berrymq_jsonrpc_tcp.answering.Answerer` is, apart from the reading and writing of
lines: this is the side of the connection that asks, the answerer the side that answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.channel import Late, NoAnswer
from berrymq_jsonrpc.jsonrpc_client import error_for

from berrymq.bursts import BurstLog
from berrymq.errors import ConnectionClosed, TransportError
from berrymq.transports.handback import Handback
from berrymq.transports.ioloop import io_loop

if TYPE_CHECKING:
    from berrymq_jsonrpc_tcp.channel import LineChannel

__all__ = ["NL", "Calls", "is_response"]

logger = logging.getLogger("berrymq.remote.tcp")

#: The end of every request and response line.
NL = b"\n"
#: Errors without id from peers: one log line per burst, however many lines a client sends.
_odd_replies = BurstLog(logger)
#: Answers to no request waiting (an id never sent, or answered already): one line per burst.
_stray = BurstLog(logger)
#: The most requests given up on (no answer in time) whose answers are still expected:
#: such an answer, come late, is read as an answer (up to the answer limit) and handed to
#: the request's ``late`` (see :meth:`berrymq_jsonrpc.channel.Channel.exchange`), if any.
LATE_ANSWERS = 64
#: The most of those whose answers go to a ``late`` (gets that gave up: an answer may carry
#: a message, reported when it comes), kept beyond LATE_ANSWERS.
LATE_TAKERS = 4096
#: Late answers no longer waited for (over LATE_TAKERS): one log line per burst.
_forgotten = BurstLog(logger)


def is_response(obj: Any) -> bool:
    """Whether ``obj`` (a parsed line, or a member of a batch) is a response, not a request."""
    return type(obj) is dict and "method" not in obj and ("result" in obj or "error" in obj)


class Calls:
    """The requests ``channel`` sent and the futures waiting for their answers."""

    def __init__(self, channel: LineChannel) -> None:
        self.channel = channel
        #: requests sent and not answered yet: asyncio futures (:meth:`exchange`) and
        #: futures that a blocked thread waits on (:meth:`call`)
        self.owed: dict[Any, asyncio.Future[Any] | Handback[Any]] = {}
        #: the ids of requests whose callers gave up waiting (at most LATE_ANSWERS, the
        #: latest), with what to call with their answers, which may still come
        self.late: dict[Any, Late | None] = {}
        #: the last error without id the peer sent (a node's refusal of a line it could
        #: not take as a request), named when the connection ends
        self.null_error: dict[str, Any] | None = None

    def response(self, reply: dict[str, Any]) -> None:
        """Hand ``reply`` to the request it answers."""
        key = reply.get("id")
        # (an id of no request of ours, an object or an array a peer made up, is
        # unhashable: looked up, it raised and ended the connection)
        ours = type(key) in (int, str)
        future = self.owed.pop(key, None) if ours else None
        if future is None:
            if ours and key in self.late:  # its caller gave up waiting
                late = self.late.pop(key)
                if late is not None:
                    late(reply)
            elif key is None and "error" in reply:
                self.null_error = reply["error"]
                _odd_replies.warning("%s answered an error without id: %.200s",
                                     self.channel.url, reply["error"])
            else:  # (a get's answered twice held a message taken for nobody: said here)
                _stray.warning("%s sent an answer to no request waiting (id %.40r: never "
                               "asked, answered already, or answered long after its "
                               "caller gave up); dropped: %.200s",
                               self.channel.url, key, reply)
            return
        if not future.done():
            future.set_result(reply)

    def expecting(self) -> bool:
        """Whether an answer may come: one owed, or one whose caller gave up waiting."""
        return bool(self.owed or self.late)

    def give_up(self, request_id: Any, late: Late | None = None) -> None:
        """The caller of ``request_id`` stopped waiting (on the loop): an answer that comes
        later is still taken as an answer, handed to ``late`` (or dropped), rather than
        read as an oversized request (an ``ask`` answered just after its timeout, with
        replies over max_size, closed the connection)."""
        if self.owed.pop(request_id, None) is not None:
            self.late[request_id] = late
            if len(self.late) > LATE_ANSWERS:
                self._forget_one_late()

    def _forget_one_late(self) -> None:
        """Forget the oldest request given up on whose answer nothing waits for; those
        whose answers go to a ``late`` (a get's, which may carry a message) are kept, up
        to :data:`LATE_TAKERS`, and one forgotten beyond that is said in the log."""
        for key, late in self.late.items():
            if late is None:
                del self.late[key]
                return
        if len(self.late) > LATE_TAKERS:
            del self.late[next(iter(self.late))]
            _forgotten.warning("%s: no longer waiting for the answers of %d gets that gave up; "
                               "a message one of them carries would be lost unreported",
                               self.channel.url, LATE_TAKERS)

    async def exchange(self, text: str, request_id: int, timeout: float,
                       late: Late | None = None) -> Any:
        """See :meth:`berrymq_jsonrpc.channel.Channel.exchange`."""
        channel = self.channel
        if channel.closed or channel.transport is None:
            raise channel.gone()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.owed[request_id] = future
        try:
            async with asyncio.timeout(timeout):
                if channel.writable is not None:  # the peer reads slowly: write no more yet,
                    await asyncio.shield(channel.writable)  # so each link has one request out
                if channel.closed or channel.transport is None:
                    raise channel.gone()
                channel.write_request(channel.transport, text)
                return await future
        except TimeoutError:
            self.give_up(request_id, late)
            raise NoAnswer(channel.url, timeout) from None
        except (OSError, RuntimeError) as exc:
            await channel.aclose()
            raise ConnectionClosed(f"{channel.url}: {exc}") from None
        finally:
            self.owed.pop(request_id, None)

    def call(self, text: str, request_id: int, wait: float, late: Late | None = None) -> Any:
        """Send the request ``text`` from a thread other than the loop's, and wait for its
        reply at most ``wait`` seconds (then :class:`~berrymq_jsonrpc.channel.NoAnswer`;
        ``late`` as for :meth:`exchange`)."""
        future: Handback[Any] = Handback()
        io_loop.call_soon(self._send_request, text, request_id, future)
        try:
            return future.result(wait)
        except TimeoutError:
            io_loop.call_soon(self._gave_up, request_id, future, late)
            raise NoAnswer(self.channel.url, wait) from None

    def _gave_up(self, request_id: int, future: Handback[Any], late: Late | None) -> None:
        """:meth:`give_up` for :meth:`call`, whose reply may have come between the caller's
        timeout and this (it was handed back to nobody): that one is late too."""
        if not future.done():
            self.give_up(request_id, late)
        elif late is not None:
            with contextlib.suppress(Exception):  # an exception set: no answer came
                late(future.result(0))

    def _send_request(self, text: str, request_id: int, future: Handback[Any]) -> None:
        channel = self.channel
        transport = channel.transport
        if channel.closed or transport is None or transport.is_closing():
            future.set_exception(channel.gone())
            return
        self.owed[request_id] = future
        channel.write_request(transport, text)

    def fail(self, answer_too_large: bool) -> None:
        """The connection ended: fail every request still waiting, naming why (the peer's
        answer over the answer limit when ``answer_too_large``, a request the node refused
        as too large, else the connection's close)."""
        channel = self.channel
        null_error = self.null_error
        for key in list(self.owed):
            future = self.owed.pop(key, None)
            if future is None or future.done():
                continue
            if answer_too_large:
                future.set_exception(TransportError(
                    f"{channel.url} answered with over {channel.answer_limit} bytes "
                    f"({p.REPLY_SIZE_FACTOR}x the setting max_size); the connection is closed"))
            elif null_error is not None and null_error.get("code") == p.TOO_LARGE:
                future.set_exception(error_for(p.TOO_LARGE, str(null_error.get("message")),
                                               null_error.get("data"), channel.url))
            else:
                future.set_exception(channel.gone())

"""Channels: requests to one peer and their replies, on the process's one I/O loop
(:data:`berrymq.transports.ioloop.io_loop`); no thread is started per connection.

Each transport plugin subclasses :class:`Channel` with its sockets (the coroutine
:meth:`Channel.exchange`); synchronous callers use :meth:`Channel.call`, which waits with a
deadline. :class:`~berrymq_jsonrpc.client.Link` sends messages through one.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from berrymq.errors import ConnectionClosed, MessageTooLarge, RemoteError, TransportError
from berrymq.transports.ioloop import io_loop
from berrymq.wire import byte_size
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc_client import encode_request, parse_reply, unauthorised

__all__ = ["Channel", "Late", "NoAnswer"]

logger = logging.getLogger("berrymq.remote")

#: Called on the I/O loop with the reply to a request whose caller had given up waiting
#: (see :meth:`Channel.exchange`).
Late = Callable[[Any], None]

#: Extra seconds a synchronous caller waits beyond the request's own timeout, so that the
#: channel's deadline (with its clear error) always fires first.
_GRACE = 1.0


class NoAnswer(TransportError):
    """A request to ``url`` had no answer within ``seconds``: the peer stopped, or is cut
    off, without the connection closing (a client such as ``berrymq listen`` takes it for
    the node going away, unlike an answer that came malformed)."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(f"{url} did not answer within {seconds:g}s")


class Channel(ABC):
    """Requests to one peer and their replies, on the I/O loop.

    :param url: the peer's address.
    :param secret: sent as ``secret`` in every request when set.
    :param max_size: the largest request this side sends, in bytes.
    :param timeout: seconds to wait for a reply (and to connect) by default.
    """

    #: how many requests that may wait (``ask``, a blocking ``get``) this side has on the
    #: channel at once, or None for no bound here (see :meth:`waiting_turn`)
    waiting_at_once: int | None = None

    def __init__(self, url: str, *, secret: str | None, max_size: int, timeout: float) -> None:
        self.url = url
        self.secret = secret
        self.max_size = max_size
        self.timeout = timeout
        self.closed = False
        self._ids = itertools.count(1)
        self._turns = (None if self.waiting_at_once is None
                       else threading.Semaphore(self.waiting_at_once))

    @contextlib.contextmanager
    def waiting_turn(self, deadline: float | None) -> Iterator[bool]:
        """A turn for a request that may wait, taken in a synchronous caller's thread for
        the ``with`` block: False when none came by ``deadline`` (a ``time.monotonic()``
        time; None: as long as it takes).

        A node runs a connection's waiting requests :data:`waiting_at_once` at a time
        (its ``max_waiting``) and refuses one more with *Limit reached*: the threads of a
        program sharing one connection (a web server's) wait here for a turn instead.
        :raises berrymq.ConnectionClosed: the channel closed meanwhile."""
        turns = self._turns
        if turns is None:
            yield True
            return
        taken = False
        while not self.closed:
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            taken = turns.acquire(timeout=max(0.0, left))
            if taken or (deadline is not None and time.monotonic() >= deadline):
                break
        else:
            raise ConnectionClosed(f"the connection to {self.url} is closed")
        try:
            yield taken
        finally:
            if taken:
                turns.release()

    @abstractmethod
    async def exchange(self, text: str, request_id: int, timeout: float,
                       late: Late | None = None) -> Any:
        """Send one request text and return its reply, parsed from JSON (on the loop).

        Raises :class:`berrymq.ConnectionClosed` when the peer is gone and
        :class:`berrymq.TransportError` for other failures, including no answer within
        ``timeout`` seconds. ``late``, when given, is called with the reply if it comes
        after that (within the channel's own ``timeout`` more): the answer to a ``get``
        carries a message the node took from its queue, which is then reported, not
        dropped unsaid.
        """

    async def alive(self) -> bool:
        """Whether the peer may still be there (on the loop): False only when it is known
        gone. A connection-oriented channel notices a closed connection by itself, so this
        says True; a channel without a standing connection (HTTP) looks."""
        return not self.closed

    @abstractmethod
    async def aclose(self) -> None:
        """Close the sockets (idempotent, on the loop); pending requests fail with
        :class:`berrymq.ConnectionClosed`."""

    def close(self) -> None:
        """Close the channel from any thread (idempotent)."""
        if io_loop.in_loop():
            io_loop.loop.create_task(self.aclose())
            return
        try:
            io_loop.run(self.aclose(), self.timeout)
        except (TimeoutError, RuntimeError):
            logger.debug("closing the channel to %s took too long", self.url)

    def _request(self, method: str, params: Mapping[str, Any]) -> tuple[str, int]:
        params = dict(params)
        if self.secret is not None:
            params[p.PARAM_SECRET] = self.secret
        request_id = next(self._ids)
        text = encode_request(method, params, request_id)
        size = byte_size(text)
        if size > self.max_size:
            raise MessageTooLarge(
                f"a {method} request of {size} bytes is over the limit of "
                f"{self.max_size} bytes; it was not sent"
            )
        return text, request_id

    async def acall(self, method: str, params: Mapping[str, Any],
                    timeout: float | None = None, late: Late | None = None) -> Any:
        """Call ``method`` on the peer (on the loop) and return its result, or raise its
        error as a berryMQ exception (:func:`berrymq_jsonrpc.jsonrpc_client.error_for`);
        ``late`` as for :meth:`exchange`."""
        text, request_id = self._request(method, params)
        reply = await self.exchange(text, request_id,
                                    self.timeout if timeout is None else timeout, late)
        return self.result_of(reply, request_id)

    def result_of(self, reply: Any, request_id: int) -> Any:
        """The result of ``reply`` (:func:`~berrymq_jsonrpc.jsonrpc_client.parse_reply`);
        an *Unauthorised* answer raised saying whether this channel sent a secret."""
        try:
            return parse_reply(reply, request_id, self.url)
        except RemoteError as exc:
            if exc.code != p.UNAUTHORISED:
                raise
            raise unauthorised(exc, self.url, given=self.secret is not None) from None

    def call(self, method: str, params: Mapping[str, Any], timeout: float | None = None,
             late: Late | None = None) -> Any:
        """:meth:`acall` for a synchronous caller: waits at most about ``timeout``."""
        wait = self.timeout if timeout is None else timeout
        try:
            return io_loop.run(self.acall(method, params, wait, late), wait + _GRACE)
        except TimeoutError:
            raise NoAnswer(self.url, wait) from None

    async def send_messages(self, token: str, texts: list[str], timeout: float | None = None) -> None:
        """Send already encoded messages in one ``send_messages`` request (on the loop).

        :raises berrymq.TransportError: the peer could not be asked, or answered something
            else than ``"ok"``.
        """
        params: dict[str, Any] = {"token": token, "messages": []}
        if self.secret is not None:
            params[p.PARAM_SECRET] = self.secret
        request_id = next(self._ids)
        envelope = encode_request(p.METHOD_SEND_MESSAGES, params, request_id)
        # "messages":[] is the first occurrence: only the token (URL-safe text) precedes it
        text = envelope.replace('"messages":[]', '"messages":[' + ",".join(texts) + "]", 1)
        try:
            reply = await self.exchange(text, request_id,
                                        self.timeout if timeout is None else timeout)
            result = parse_reply(reply, request_id, self.url)
        except MessageTooLarge as exc:  # a peer with a smaller max_size than this side's
            raise MessageTooLarge(
                f"{self.url}: {exc}; the batch of {len(texts)} message(s) was {byte_size(text)} bytes, "
                f"within this side's max_size ({self.max_size}): set the same max_size on "
                "every node and client a message crosses") from None
        if result != p.RESULT_OK:
            # not an acknowledgement: a malformed answer, as one that is not JSON-RPC (the
            # outbox reports the batch lost and the link closes)
            raise TransportError(f"{self.url} answered send_messages with {result!r:.80}, "
                                 f"not {p.RESULT_OK!r}")

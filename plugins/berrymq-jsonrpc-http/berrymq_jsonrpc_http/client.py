"""The HTTP client of a node: a few keep-alive HTTP/1.1 connections per peer, answers
parsed by httptools (:mod:`berrymq_jsonrpc_http.http11`) on asyncio streams on the I/O
loop.

Over HTTP a peer cannot answer on the connection it was called on, so style 01 needs both
nodes to serve: ``interconnect`` sends this node's server URL and the peer calls it back.

Every connection a channel opens is closed on the loop before the loop stops, whoever was
to close the channel (:meth:`HttpChannel.loop_stopping`): a keep-alive connection left in
the pool when the loop stopped at exit (a program that did not close its connection, or
one closed on a daemon thread that the exit overtook, as ``berrymq listen
--no-reconnect`` did after the node went away) stayed open, and at interpreter exit
asyncio warned of an unclosed transport on a closed loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import netloc, split_url
from berrymq_jsonrpc.channel import Channel, Late, NoAnswer
from berrymq_jsonrpc.replies import reply_limit

from berrymq.errors import ConnectionClosed, TransportError
from berrymq.transports.ioloop import io_loop
from berrymq.wire import ParseError, loads
from berrymq_jsonrpc_http.http11 import Answer, AnswerTooLarge, NotHttp, post
from berrymq_jsonrpc_http.streams import READ_CHUNK, open_stream

__all__ = ["HttpChannel"]

_PATH = p.HTTP_PATH.encode()
#: The most bytes of an answer's head read beside its body.
_HEAD_ROOM = 16 * 1024


class _Stale(Exception):
    """A reused keep-alive connection turned out closed before any answer came."""


class _ClientConnection:
    """One keep-alive HTTP/1.1 connection to the peer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host_header: bytes, answer_limit: int) -> None:
        self.reader = reader
        self.answer_limit = answer_limit
        self.writer = writer
        self.host_header = host_header
        self.since = time.monotonic()

    async def roundtrip(self, body: bytes, reused: bool) -> tuple[int, bytes, bytes, bool]:
        """Send one POST; return (status, content type, body, keep-alive)."""
        self.writer.write(post(_PATH, self.host_header, body))
        answer = Answer(self.answer_limit)
        try:
            while not answer.done:
                try:
                    data = await self.reader.read(READ_CHUNK)
                except OSError:
                    data = b""
                if not data:
                    if not answer.head and reused:
                        raise _Stale()
                    if answer.head and answer.until_close:
                        break  # an answer whose end is the connection's end
                    raise ConnectionResetError(
                        "the server closed the connection without an answer")
                answer.feed(data)
            return (answer.status, answer.content_type, b"".join(answer.chunks),
                    answer.keep_alive())
        finally:
            # The Answer and its parser refer to each other, so only the cyclic collector
            # frees them: drop the body read (up to the answer limit, 4 MiB by default) now,
            # whatever happened (an answer over the limit held it until a collection).
            answer.chunks.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.close()

    def abort(self) -> None:
        """Close at once, with whatever is still to be written dropped (the loop stops)."""
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.transport.abort()


class HttpChannel(Channel):
    """Requests to one peer over keep-alive HTTP connections (one per concurrent request).

    A pooled connection idle for long may have been closed by the server: one it is seen
    to have closed is not reused, and a request that finds its reused connection closed
    before any answer is sent once more on a new one. That covers the server closing an
    idle connection as the request is written, which it then never read (a node closes
    one at its ``read_timeout``); a server that reads a request and closes without
    answering gets it twice (a node does not: see docs/delivery.md).
    """

    def __init__(self, url: str, *, secret: str | None, max_size: int, timeout: float,
                 idle: float) -> None:
        super().__init__(url, secret=secret, max_size=max_size, timeout=timeout)
        self.host, self.port = split_url(url, "http")
        self.host_header = netloc(self.host, self.port).encode()
        self.idle = idle
        #: the most bytes of one answer read: the longest a node answers (as the TCP
        #: client's longest line) and a head of up to 16 KiB
        self.answer_limit = reply_limit(max_size) + _HEAD_ROOM
        self._pool: list[_ClientConnection] = []
        self._busy: set[_ClientConnection] = set()
        io_loop.at_stop(self)

    def _take(self) -> _ClientConnection | None:
        if self.closed:
            raise ConnectionClosed(f"the channel to {self.url} is closed")
        now = time.monotonic()
        while self._pool:
            conn = self._pool.pop()
            if (now - conn.since < self.idle and not conn.writer.is_closing()
                    and not conn.reader.at_eof()):  # (the server closed it meanwhile)
                return conn
            conn.close()
        return None

    async def _roundtrip(self, body: bytes) -> tuple[int, bytes, bytes]:
        for attempt in (0, 1):
            conn = self._take()
            reused = conn is not None
            if conn is None:
                reader, writer = await open_stream(self.host, self.port)
                conn = _ClientConnection(reader, writer, self.host_header, self.answer_limit)
            self._busy.add(conn)
            keep = False
            try:
                status, ctype, data, keep = await conn.roundtrip(body, reused)
                return status, ctype, data
            except _Stale:
                if attempt == 0:
                    continue  # the server had closed this idle connection
                raise ConnectionClosed(f"{self.url} closed the connection") from None
            finally:
                self._busy.discard(conn)
                if keep and not self.closed:
                    conn.since = time.monotonic()
                    self._pool.append(conn)
                else:
                    conn.close()
        raise AssertionError("unreachable")

    async def exchange(self, text: str, request_id: int, timeout: float,
                       late: Late | None = None) -> Any:
        roundtrip = asyncio.ensure_future(self._roundtrip(text.encode()))
        try:  # (shielded from the timeout only when its answer may go to late)
            status, ctype, data = await asyncio.wait_for(
                roundtrip if late is None else asyncio.shield(roundtrip), timeout)
        except TimeoutError:
            self._after(roundtrip, late)
            raise NoAnswer(self.url, timeout) from None
        except AnswerTooLarge:
            raise TransportError(
                f"{self.url} answered with over {self.answer_limit} bytes ({p.REPLY_SIZE_FACTOR}x "
                f"the setting max_size, and a head); the connection is closed") from None
        except (OSError, NotHttp) as exc:
            if self.closed:
                raise ConnectionClosed(f"the channel to {self.url} is closed") from None
            raise ConnectionClosed(f"cannot reach {self.url}: {exc}") from None
        except BaseException:  # the caller was cancelled: so is the round trip
            roundtrip.cancel()
            raise
        return self._answer(status, ctype, data)

    def _after(self, roundtrip: asyncio.Future[tuple[int, bytes, bytes]],
               late: Late | None) -> None:
        """The caller of ``roundtrip`` gave up waiting: without ``late`` it is cancelled
        (its connection closed); with it, it may end within the channel's ``timeout``
        more, and its answer goes to ``late``."""
        if late is None:
            roundtrip.cancel()
            return
        cancel = asyncio.get_running_loop().call_later(self.timeout, roundtrip.cancel)

        def ended(done: asyncio.Future[tuple[int, bytes, bytes]]) -> None:
            cancel.cancel()
            if not done.cancelled() and done.exception() is None:
                with contextlib.suppress(TransportError):  # no answer to take a message from
                    late(self._answer(*done.result()))

        roundtrip.add_done_callback(ended)

    def _answer(self, status: int, ctype: bytes, data: bytes) -> Any:
        """The parsed answer of a round trip; :class:`berrymq.TransportError` when it is
        none (not JSON, or a result with an error status)."""
        if ctype.startswith(b"text/xml"):  # the original berryMQ's server answers so
            raise TransportError(
                f"{self.url} answered HTTP {status} as text/xml: is it a node of the original "
                "berryMQ 0.3 (or another XML-RPC server)? berryMQ connects to JSON-RPC 2.0 "
                "nodes only; a 0.3 process can connect to this one instead (docs/dialects.md)")
        if not ctype.startswith(b"application/json"):
            text = data[:200].decode("utf-8", "replace").strip()  # what it said, as text
            raise TransportError(f"{self.url} answered HTTP {status} without JSON: {text!r}")
        try:
            answer = loads(data)
        except ParseError as exc:
            raise TransportError(f"{self.url} answered HTTP {status} with malformed JSON: "
                                 f"{exc}") from None
        if status != 200 and type(answer) is dict and "result" in answer:
            # a node answers errors with other statuses (413, 503), a result with 200 only
            raise TransportError(f"{self.url} answered HTTP {status} with a result: "
                                 f"{data[:200]!r}")
        return answer

    async def alive(self) -> bool:
        """Whether the peer's server still accepts a connection: refused or unreachable
        means gone; a slow answer is not taken as death (the ttl or a send decides)."""
        if self.closed:
            return False
        try:
            _, writer = await asyncio.wait_for(open_stream(self.host, self.port),
                                               self.timeout)
        except TimeoutError:
            return True
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _take_all(self) -> list[_ClientConnection]:
        """Every connection of the channel, idle or busy, taken out of its pool and set (a
        busy one's request then closes it instead of putting it back)."""
        pool, self._pool = self._pool, []
        busy, self._busy = self._busy, set()
        return [*pool, *busy]

    async def aclose(self) -> None:
        self.closed = True
        for conn in self._take_all():  # also wakes a caller waiting for an answer
            conn.close()

    def loop_stopping(self) -> None:
        """The I/O loop stops (at exit, or :meth:`~berrymq.transports.ioloop.IOLoop.stop`)
        and its requests were cancelled: close every connection still open on it, each one
        that was idle in the pool above all, before the loop closes. The channel itself is
        not closed: a later request opens a new connection on the loop started for it."""
        for conn in self._take_all():
            conn.abort()

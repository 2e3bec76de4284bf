"""asyncio streams whose sockets are read into the I/O thread's buffer.

:func:`asyncio.start_server` and :func:`asyncio.open_connection` build a plain protocol, for
which asyncio makes a new 256 KiB ``bytes`` on every read (see
:func:`berrymq.transports.ioloop.read_buffer`): about a tenth of an HTTP request's round
trip here. These two do what those do, with a protocol that reads into the thread's buffer
and hands the stream a copy of what came; the reader and writer are asyncio's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from berrymq_jsonrpc.input_end import InputEnd

from berrymq.transports.ioloop import ThreadBufferedProtocol

__all__ = ["READ_CHUNK", "EndingReader", "discard", "open_stream", "serve_streams"]

#: How much a connection asks of its stream reader at once.
READ_CHUNK = 1 << 16
#: The most of a refused (oversized) body read before the connection is closed.
_DISCARD = 1 << 18


class _BufferedStream(asyncio.StreamReaderProtocol, ThreadBufferedProtocol):
    """asyncio's stream protocol, reading into the thread's buffer, :data:`READ_CHUNK` at
    a time: what a connection holds unread stays under the reader's own pause mark and one
    read (a connection waiting for room in ``max_reading_bytes`` holds no more)."""

    _chunk: memoryview | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        chunk = self._chunk
        if chunk is None:
            chunk = self._chunk = super().get_buffer(sizehint)[:READ_CHUNK]
        return chunk


class EndingReader(asyncio.StreamReader):
    """asyncio's stream reader, with :attr:`ended`: done at the end of the client's input
    or of the connection, even while nothing reads (a blocking ``get`` being answered
    then stops waiting, see :meth:`berrymq_jsonrpc.queue_methods.QueueMethods.get_waiting`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self.ended = InputEnd()
        #: done when the connection failed (reset), not at a clean end of the input
        #: (a half-close, whose request is still answered): an ``ask`` not begun then
        #: leaves the queue of ask threads (see :mod:`berrymq_jsonrpc_http.server`)
        self.reset = InputEnd()

    def feed_eof(self) -> None:
        super().feed_eof()
        self.ended.end()

    def set_exception(self, exc: Exception) -> None:
        super().set_exception(exc)
        self.ended.end()
        self.reset.end()


async def serve_streams(connected: Any, host: str, port: int, **kwargs: Any) -> asyncio.Server:
    """:func:`asyncio.start_server` (``kwargs`` go to ``loop.create_server``)."""
    loop = asyncio.get_running_loop()

    def protocol() -> _BufferedStream:
        return _BufferedStream(EndingReader(loop), connected, loop=loop)

    return await loop.create_server(protocol, host, port, **kwargs)


async def open_stream(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`asyncio.open_connection`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = _BufferedStream(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def discard(reader: asyncio.StreamReader, length: int) -> None:
    """Read and drop a small part of a body the server refused (at most 256 KiB of its
    ``length``, for at most a second in all), so that closing the socket does not reset
    the connection before the client has read the answer; the rest is never read."""
    loop = asyncio.get_running_loop()
    left = min(length, _DISCARD)
    deadline = loop.time() + 1.0
    with contextlib.suppress(TimeoutError, OSError):
        while left > 0:
            chunk = await asyncio.wait_for(reader.read(min(left, READ_CHUNK)),
                                           max(0.0, deadline - loop.time()))
            if not chunk:
                break
            left -= len(chunk)

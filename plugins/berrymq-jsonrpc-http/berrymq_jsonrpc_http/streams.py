"""asyncio streams whose sockets are read into the I/O thread's buffer.

:func:`asyncio.start_server` and :func:`asyncio.open_connection` build a plain protocol, for
which asyncio makes a new 256 KiB ``bytes`` on every read (see
:func:`berrymq.transports.ioloop.read_buffer`): about a tenth of an HTTP request's round
trip here. These two do what those do, with a protocol that reads into the thread's buffer
and hands the stream a copy of what came; the reader and writer are asyncio's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from berrymq.transports.ioloop import ThreadBufferedProtocol

__all__ = ["READ_CHUNK", "open_stream", "serve_streams"]

#: How much a connection asks of its stream reader at once.
READ_CHUNK = 1 << 16


class _BufferedStream(asyncio.StreamReaderProtocol, ThreadBufferedProtocol):
    """asyncio's stream protocol, reading into the thread's buffer."""


async def serve_streams(connected: Any, host: str, port: int, **kwargs: Any) -> asyncio.Server:
    """:func:`asyncio.start_server` (``kwargs`` go to ``loop.create_server``)."""
    loop = asyncio.get_running_loop()

    def protocol() -> _BufferedStream:
        return _BufferedStream(asyncio.StreamReader(loop=loop), connected, loop=loop)

    return await loop.create_server(protocol, host, port, **kwargs)


async def open_stream(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`asyncio.open_connection`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = _BufferedStream(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

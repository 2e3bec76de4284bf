"""The HTTP server of a node: each request is parsed on the I/O loop (httptools, through
:mod:`berrymq_jsonrpc_http.http11`), the protocol's answer is made on the delivery lane
(``ask`` on a :data:`~berrymq_jsonrpc.sessions.WAITS` thread; a blocking ``get`` awaits its
queue on the loop; a request that delivers nothing and never waits, such as
``get_nowait``, is answered on the loop once what its connection handed to the lane ran).

``POST`` to the paths of :data:`berrymq_jsonrpc.dialect.HTTP_PATHS` carries JSON-RPC (the
media types of :func:`berrymq_jsonrpc.dialect.accepts_media_type`); ``GET`` of the node's
status routes (``/``, ``/status``, ``/metrics``, ``/network``) is answered by
:class:`berrymq_jsonrpc.monitor.Monitor`. Each accepted connection is a
:class:`~berrymq_jsonrpc_http.accepted.ServerConnection`, which reads its requests, bounds
and refuses them, and answers them in order through :meth:`Server.dispatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import bind_family
from berrymq_jsonrpc.input_end import InputEnd
from berrymq_jsonrpc.jsonrpc import internal_error
from berrymq_jsonrpc.limits import Admission
from berrymq_jsonrpc.listener import Accepted, RemoteListener
from berrymq_jsonrpc.monitor import Monitor
from berrymq_jsonrpc.service import Service
from berrymq_jsonrpc.waiting import may_wait, refuse_waiting, waits_in

from berrymq.bursts import BurstLog
from berrymq.transports.ioloop import io_loop
from berrymq.wire import ParseError, dumps, loads
from berrymq_jsonrpc_http.accepted import ServerConnection
from berrymq_jsonrpc_http.streams import serve_streams

__all__ = ["Server"]

logger = logging.getLogger("berrymq.remote.http")
#: Batches with more waiting requests than ``max_waiting``: one log line per burst.
_over_waiting = BurstLog(logger)


def _reply_to(service: Service, body: bytes) -> tuple[Any, bool]:
    """Parse a body: ``(request, slow)``, the request being the :class:`ParseError` when
    the body is not JSON."""
    try:
        request = loads(body)
    except ParseError as exc:
        return exc, False
    return request, may_wait(request)


async def _answer_waiting(service: Service, request: Any, client: str,
                          ended: InputEnd | None, reset: InputEnd | None) -> bytes | None:
    """The answer to a request that may wait. A batch with more such members than
    ``max_waiting`` is refused whole: one body of ``max_size`` holds thousands of blocking
    gets, each waiting on the loop (40 connections of 7,000 took a node past 1 GiB). An
    ``ask`` whose connection is reset meanwhile gets no answer, and leaves the queue of
    ask threads if it has not begun (begun, it runs all its receivers)."""
    if (waits := waits_in(request)) > service.max_waiting:  # (a request alone is 1)
        return refuse_waiting(service, request, waits, 0, _over_waiting, client)
    if reset is None or type(request) is not dict or request.get("method") != p.METHOD_ASK:
        return await service.answer_waiting(request, None, ended)
    answering = asyncio.ensure_future(service.answer_waiting(request, None, ended))
    gone = asyncio.get_running_loop().create_future()
    reset.watch(gone)
    try:
        await asyncio.wait([answering, gone], return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        answering.cancel()
        raise
    finally:
        reset.unwatch(gone)
    if answering.done():
        return answering.result()
    answering.cancel()  # (see berrymq_jsonrpc.waiting_methods: not begun, it never runs)
    return None


class Server(RemoteListener):
    """A listening socket on the loop and the connections it accepted.

    Without a ``service`` it serves the :attr:`monitor`'s status routes only (the address
    of ``berrymq serve --monitor``).
    """

    def __init__(self, service: Service | None, max_size: int, read_timeout: float,
                 admission: Admission) -> None:
        self.service = service
        self.admission = admission
        self.max_size = max_size
        self.read_timeout = read_timeout
        self.connections: Accepted[asyncio.StreamWriter] = Accepted()
        self.monitor: Monitor | None = None  # answers GET /status, /metrics, / (set by _serve)

    async def start(self, host: str, port: int) -> int:
        family, bind_host = bind_family(host)
        self.server = await serve_streams(
            self._accept, bind_host, port, family=family, reuse_address=True, backlog=1024)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections.closed:  # the listener stopped since asyncio accepted it
            writer.transport.abort()
            return
        host = writer.get_extra_info("peername")[0]
        refusal = self.admission.admit(host)  # max_connections(_per_client)
        if refusal is not None:
            body = dumps(refusal).encode()
            with contextlib.suppress(asyncio.CancelledError):  # the loop is stopping (closed)
                await Admission.turn_away(reader, writer, (
                    "HTTP/1.1 503 Service Unavailable\r\nServer: berryMQ\r\n"
                    "Content-Type: application/json\r\nRetry-After: 1\r\n"
                    "Connection: close\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            return
        self.connections.add(writer)
        try:
            await ServerConnection(self, reader, writer).run()
        except asyncio.CancelledError:
            pass  # the loop is stopping (asyncio 3.11 would print a cancelled handler)
        finally:
            self.connections.discard(writer)
            self.admission.release(host)

    async def dispatch(self, body: bytes, client: str, ended: InputEnd | None = None,
                       after: int = 0, reset: InputEnd | None = None
                       ) -> tuple[bytes | None, list[Callable[[], object]]]:
        """The answer to one body from ``client``, and the delivery of a message it
        accepted without running its receivers, for the caller to give to the lane once
        the answer is written (the lane's thread would otherwise take the interpreter from
        the loop while it writes). The answer is made on the delivery lane; on a WAITS
        thread if the request may wait (a batch with more such members than
        ``max_waiting`` is refused whole); here on the loop if it delivers nothing and
        never waits, once the lane's work numbered ``after`` (the connection's last) ran."""
        service = self.service
        assert service is not None  # a status-only server answers no POST
        request, slow = _reply_to(service, body)
        if isinstance(request, ParseError):
            return service.dispatcher.parse_error(request), []
        if slow:
            return await _answer_waiting(service, request, client, ended, reset), []
        lane = io_loop.lane
        if service.answers_at_once(request) and lane.has_room(len(body)):
            # a send_message nothing can refuse: answered here, delivered on the lane
            return service.answer_at_once(request, None, len(body))
        try:
            if service.answers_on_loop(request) and lane.ran(after):
                return service.handle_parsed(request, None), []
            return await lane.call(functools.partial(service.handle_parsed, request, None,
                                                     len(body)), len(body)), []
        except Exception:
            logger.exception("answering an HTTP request failed")
            return internal_error(request), []

    async def _close_accepted(self) -> None:
        for writer in self.connections.close():
            writer.close()

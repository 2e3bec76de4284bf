"""The server of a JSON-RPC transport: the transport contract's
:class:`~berrymq.transports.base.Listener`, on the process's I/O loop."""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from typing import TypeVar

from berrymq.transports.base import Listener
from berrymq.transports.ioloop import io_loop

__all__ = ["Accepted", "RemoteListener"]

_Connection = TypeVar("_Connection")


class Accepted(set[_Connection]):
    """The connections a listener serves. Once :attr:`closed` (the listener stopped), a
    connection asyncio hands over is to be closed at once, not served: asyncio accepts up
    to a backlog (1,024) at once and makes each a connection a few turns of the loop
    later, and a listener stopped in between left them open until ``read_timeout``."""

    closed = False

    def close(self) -> list[_Connection]:
        """Take no more; the connections to close."""
        self.closed = True
        return list(self)


class RemoteListener(Listener):
    """A listening socket on the I/O loop and the connections it accepted. Besides
    closing, it can stop taking new connections while it serves the open ones (at exit:
    the answers to what they sent are still written)."""

    #: the bound address (set by the transport once it is bound)
    address = ""
    #: seconds :meth:`close` waits for the loop to close the connections
    close_timeout = 5.0

    @abstractmethod
    async def start(self, host: str, port: int) -> int:
        """On the loop: listen on ``host:port`` (0: a free port); the port bound."""

    #: the listening socket (set by :meth:`start`)
    server: asyncio.Server | None = None

    def stop_accepting(self) -> None:
        """On the loop: take no new connection; the connections open stay served.

        The listening socket is closed a turn of the loop later: asyncio makes each
        connection of the batch it last accepted in a task, and one whose task ran after
        its server closed failed inside asyncio (an assertion), its socket left open until
        the cyclic collector found it (a client saw a connection never answered nor
        closed). Those tasks have run by then, and their connections are refused
        (:class:`Accepted`)."""
        server = self.server
        if server is None:
            return
        loop = asyncio.get_running_loop()
        for sock in server.sockets:
            loop.remove_reader(sock.fileno())  # no new batch of connections
        loop.call_soon(server.close)

    async def stop(self) -> None:
        """On the loop: stop accepting and close every connection accepted."""
        self.stop_accepting()
        await asyncio.sleep(0)  # the listening socket closes meanwhile (see stop_accepting)
        await self._close_accepted()

    @abstractmethod
    async def _close_accepted(self) -> None:
        """On the loop: close the connections accepted, and refuse those still to come
        (:meth:`Accepted.close`)."""

    def close(self) -> None:
        """Stop serving and close the connections it accepted (from any thread but the
        loop's; waits up to :attr:`close_timeout`)."""
        with contextlib.suppress(TimeoutError, RuntimeError):  # slow, or the loop stopped
            io_loop.run(self.stop(), self.close_timeout)

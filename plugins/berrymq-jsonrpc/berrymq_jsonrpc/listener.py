"""The server of a JSON-RPC transport: the transport contract's
:class:`~berrymq.transports.base.Listener`, on the process's I/O loop."""

from __future__ import annotations

import contextlib
from abc import abstractmethod

from berrymq.transports.base import Listener
from berrymq.transports.ioloop import io_loop

__all__ = ["RemoteListener"]


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

    @abstractmethod
    def stop_accepting(self) -> None:
        """On the loop: close the listening socket; the connections open stay served."""

    @abstractmethod
    async def stop(self) -> None:
        """On the loop: stop accepting and close every connection accepted."""

    def close(self) -> None:
        """Stop serving and close the connections it accepted (from any thread but the
        loop's; waits up to :attr:`close_timeout`)."""
        with contextlib.suppress(TimeoutError, RuntimeError):  # slow, or the loop stopped
            io_loop.run(self.stop(), self.close_timeout)

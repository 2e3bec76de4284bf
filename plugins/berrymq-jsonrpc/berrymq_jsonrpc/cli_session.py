"""The session ``send`` and ``ask`` open on a node, and its end when a signal stops the
command (:class:`StoppableSession`)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from berrymq.api import connect_oneway
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.cli_support import open_session

__all__ = ["StoppableSession"]


class StoppableSession:
    """The one-way session a command opens on its own thread
    (:func:`~berrymq_jsonrpc.cli_support.run_until_stopped`),
    ended on the node when a signal stops the command (:meth:`give_up`): one left open
    stayed on the node for its ttl (1000 s for ``send -``)."""

    #: How long :meth:`give_up` waits for an opening under way, and then for the node.
    GIVE_UP_WAIT = 1.0

    def __init__(self) -> None:
        self.connection: Any = None
        self.opening_over = threading.Event()  # open, or failed to open

    def open(self, url: str, timeout: float, ttl: float) -> Any:
        """``connect_oneway`` through :func:`open_session`, noted for :meth:`give_up`."""
        try:
            self.connection = open_session(url, timeout, _oneway, ttl)
            return self.connection
        finally:
            self.opening_over.set()

    def give_up(self) -> None:
        """Tell the node to end the session (one still opening too), then close it at
        once, counting what the node had not acknowledged (in the connection's losses)
        instead of waiting for it; at most :attr:`GIVE_UP_WAIT` for each wait."""
        self.opening_over.wait(self.GIVE_UP_WAIT)
        connection = self.connection
        if connection is None:
            return
        with contextlib.suppress(Exception):  # gone, or too slow: its ttl ends it
            connection.call(p.METHOD_CLOSE_CONNECTION, {"token": connection.token},
                            self.GIVE_UP_WAIT)
        connection.lost("the command was stopped")


def _oneway(url: str, ttl: float) -> Any:
    return connect_oneway(url, ttl=ttl)

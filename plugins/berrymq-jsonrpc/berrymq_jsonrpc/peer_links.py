"""The link back to a peer that opened an ``interconnect`` session on this node.

A peer that interconnects asks this node to forward to it: back over the connection the
request came on (TCP), or by calling back the caller's own server at the ``addr`` it
gave, which ``callback_hosts`` must allow and which is tried once before the session is
opened, so that an address where nothing listens fails at once and leaves no session.
:class:`PeerLinks` is a base class of :class:`~berrymq_jsonrpc.transport.RemoteTransport`,
its :meth:`~PeerLinks.peer_link` the service's ``link_factory``; it is apart from the
transport because it is the one place where a node opens a connection it was asked to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

from berrymq.errors import ConnectionClosed, TransportError
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc.addresses import netloc, split_url
from berrymq_jsonrpc.jsonrpc import invalid_params
from berrymq_jsonrpc.limits import CALLBACK_CHECK, unreachable
from berrymq_jsonrpc.sessions import in_waits, link_failed

if TYPE_CHECKING:
    from berrymq_jsonrpc.channel import Channel
    from berrymq_jsonrpc.client import Link
    from berrymq_jsonrpc.service import Service

__all__ = ["PeerLinks"]

logger = logging.getLogger("berrymq.remote")


async def _within(check: Coroutine[Any, Any, bool], timeout: float) -> bool:
    """``await check``, at most ``timeout`` seconds (then TimeoutError)."""
    return await asyncio.wait_for(check, timeout)


class PeerLinks:
    """The outgoing links of the ``interconnect`` sessions that peers open on a
    transport's :attr:`service`."""

    if TYPE_CHECKING:  # the transport's own
        scheme: ClassVar[str]
        plugin: ClassVar[str]
        service: Service
        timeout: float

        def _open_channel(self, url: str) -> Channel: ...

        def _back_channel(self, context: Any) -> Channel | None: ...

        def make_link(self, channel: Channel, token: str, name: str,
                      on_dead: Callable[[BaseException], None], *,
                      owns_channel: bool = False) -> Link: ...

    def peer_link(self, addr: str | tuple[str, int] | None, token: str, context: Any,
                  peer_max_size: int | None = None) -> Link:
        # The outgoing link of an interconnect session opened by a peer. A callback goes
        # only to a host callback_hosts allows; it carries this node's secret, which the
        # peer proved it knows (the service refuses any request without it). What it
        # sends keeps within the peer's own max_size too, when the peer gave it.
        if addr is None:
            channel = self._back_channel(context)
            if channel is None:
                raise invalid_params(f"'addr' is required over {self.scheme}: the URL of the "
                                     "caller's own server, which this node forwards to")
            owns = False
        else:
            if isinstance(addr, tuple):  # the original's [host, port]: over this transport
                addr = f"{self.scheme}://{netloc(*addr)}"
            try:
                host, _ = split_url(addr, self.scheme)
            except ValueError:
                raise invalid_params(f"'addr' must be a {self.scheme}://host:port URL, or "
                                     "[host, port]") from None
            self.service.callbacks.check(host)
            channel = self._callback_channel(addr)
            owns = True
        if peer_max_size is not None:  # (over TCP: the peer's connection, whose peer it is)
            channel.max_size = min(channel.max_size, peer_max_size)
        link: Link

        def dead(exc: BaseException) -> None:
            session = link.session
            if session is not None:
                in_waits(self.service.close_session, session.token, link_failed(exc))
            if not owns:  # the peer's own connection carries both ways of the
                channel.close()  # interconnection: it ends with it, and the peer sees so

        link = self.make_link(channel, token, f"{self.scheme}:peer", dead, owns_channel=owns)
        return link

    def _callback_channel(self, addr: str) -> Channel:
        """A channel to ``addr``, the caller's own server, checked to accept a connection
        (an HTTP channel connects only when used: it is tried once here), so that an
        ``interconnect`` naming an address where nothing listens fails at once, with
        :data:`~berrymq_jsonrpc.protocol.NOT_AVAILABLE` naming it, and leaves no session."""
        try:
            channel = self._open_channel(addr)
        except (ConnectionClosed, TransportError) as exc:  # the exception's text stays here
            logger.info("%s: cannot call back %s for an interconnect: %s", self.plugin, addr, exc)
            raise unreachable(addr) from None
        wait = min(self.timeout, CALLBACK_CHECK)
        try:
            reachable = io_loop.run(_within(channel.alive(), wait), wait + 1.0)
        except TimeoutError:
            reachable = True  # slow is not gone: the first forward decides
        if not reachable:
            channel.close()
            raise unreachable(addr)
        return channel

""":class:`RemoteTransport`: the three connection styles over any JSON-RPC channel.

The ``jsonrpc-http`` and ``jsonrpc-tcp`` plugins subclass it and supply only sockets: a
server (:meth:`RemoteTransport._serve`), a client channel
(:meth:`RemoteTransport._open_channel`) and, for TCP, the way back over a connection
that a peer opened (:meth:`RemoteTransport._back_channel`). Everything else (sessions,
tokens, coalescing, cycles, talk and ask, expiry, errors) lives here once, the link back to
a peer that interconnected in :mod:`berrymq_jsonrpc.peer_links`.

Its settings are declared and described in :mod:`berrymq_jsonrpc.settings`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from berrymq.api import DEFAULT_TTL
from berrymq.errors import ConnectionClosed, QueueFull, SettingsError, TransportError
from berrymq.identifier import Identifier
from berrymq.transports.base import Connection, Transport
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import is_loopback, netloc, note_served, split_url, unresolved
from berrymq_jsonrpc.channel import Channel
from berrymq_jsonrpc.client import Link
from berrymq_jsonrpc.connection import RemoteConnection
from berrymq_jsonrpc.draining import CLOSE_DELIVERY_WAIT, LIVE_TRANSPORTS, deliver_what_came
from berrymq_jsonrpc.jsonrpc import JsonRpcError
from berrymq_jsonrpc.limits import (
    Admission,
    CallbackRule,
    fit_open_files,
    release_open_files,
)
from berrymq_jsonrpc.listener import RemoteListener
from berrymq_jsonrpc.outbox import DEFAULT_OUTBOX_BYTES, DEFAULT_OUTBOX_SIZE
from berrymq_jsonrpc.peer_links import PeerLinks
from berrymq_jsonrpc.reading import DEFAULT_MAX_READING_BYTES
from berrymq_jsonrpc.service import DEFAULT_MAX_WAITING, Service
from berrymq_jsonrpc.session_table import DEFAULT_LIVENESS_INTERVAL
from berrymq_jsonrpc.sessions import session_peer
from berrymq_jsonrpc.settings import DEFAULT_TIMEOUT, cidr_blocks, read_hosts, read_number, secret_check
from berrymq_jsonrpc.status import sample_rates

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["RemoteTransport"]

logger = logging.getLogger("berrymq.remote")


def _answered_token(address: str, method: str, token: object) -> str:
    """``token``, what the node at ``address`` answered ``method`` with, if it is a token
    (:func:`berrymq_jsonrpc.protocol.token_problem`); else a malformed answer."""
    problem = p.token_problem(token)
    if problem is None and isinstance(token, str):
        return token
    raise TransportError(f"{address} answered {method} with {token!r:.60}, not a token "
                         f"({problem})")


class RemoteTransport(PeerLinks, Transport):
    """A JSON-RPC transport: serves the bus and connects it to others.

    Subclasses set :attr:`scheme` and :attr:`plugin` and implement the socket parts.
    """

    scheme: ClassVar[str]
    plugin: ClassVar[str]

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        super().__init__(bus, settings)
        plugin = self.plugin
        source = bus.plugins.settings  # a bad value is an error naming its file and line

        def number(name: str, default: float) -> float:
            return read_number(settings, name, default, plugin, source)

        self.default_host: str = settings.get("host", "127.0.0.1")
        self.max_size = int(number("max_size", p.DEFAULT_MAX_SIZE))
        self.timeout = float(number("timeout", DEFAULT_TIMEOUT))
        self.read_timeout = float(number("read_timeout", p.DEFAULT_READ_TIMEOUT))
        self.max_get_wait = float(number("max_get_wait", p.DEFAULT_MAX_GET_WAIT))
        #: the bounds of every connection's outbox (:class:`~berrymq_jsonrpc.outbox.Outbox`)
        self.outbox_size = int(number("outbox_size", DEFAULT_OUTBOX_SIZE))
        self.outbox_bytes = int(number("outbox_bytes", DEFAULT_OUTBOX_BYTES))
        self.outbox_wait = float(number("outbox_wait", DEFAULT_TIMEOUT))
        self.secret: str | None = settings.get("secret") or os.environ.get(p.SECRET_ENV_VAR) or None
        if not settings.get("secret") and self.secret is not None:
            problem = secret_check(self.secret)  # (the settings file's is checked as it loads)
            if problem is not None:
                raise SettingsError(f"the environment variable {p.SECRET_ENV_VAR} {problem}")
        self.service = Service(
            bus, secret=self.secret, queue_size=int(number("queue_size", p.DEFAULT_QUEUE_SIZE)),
            max_get_wait=self.max_get_wait, link_factory=self.peer_link, name=plugin,
            max_sessions=int(number("max_sessions", p.DEFAULT_MAX_SESSIONS)),
            callbacks=CallbackRule(read_hosts(settings, "callback_hosts", plugin, source,
                                              cidr_blocks)),
            liveness_interval=float(number("liveness_interval", DEFAULT_LIVENESS_INTERVAL)),
            max_queued_bytes=int(number("max_queued_bytes", p.DEFAULT_MAX_QUEUED_BYTES)),
            max_waiting=int(number("max_waiting", DEFAULT_MAX_WAITING)),
            max_reading_bytes=int(number("max_reading_bytes", DEFAULT_MAX_READING_BYTES)),
            max_ttl=number("max_ttl", p.DEFAULT_MAX_TTL),  # as given: data.limit 100, not 100.0
            max_size=self.max_size, callback_timeout=self.timeout)
        #: the connections the servers accepted, and the caps on them (the I/O loop's)
        self.admission = Admission(
            int(number("max_connections", p.DEFAULT_MAX_CONNECTIONS)),
            int(number("max_connections_per_client", p.DEFAULT_MAX_CONNECTIONS_PER_CLIENT)),
            logger)
        # the Host names the status pages answer to
        self.names: list[str] = read_hosts(settings, "names", plugin, source) or []
        self.urls: list[str] = []
        self._servers: list[RemoteListener] = []
        self._served: list[tuple[str, int]] = []  # their addresses (see note_served)
        self._files_counted = False  # see fit_open_files
        self._connections: list[RemoteConnection] = []
        self._lock = threading.Lock()
        #: losses (refused or not sent) on any link of this transport since the last
        #: flush: the next flush returns False for them, even if the link is gone by then
        self._losses_since_flush = 0
        self._losses_lock = threading.Lock()
        self.service.on_loss = self._note_loss  # interconnections of JSON-RPC 1.0 peers
        self._closed = False
        LIVE_TRANSPORTS.add(self)

    # -- what a plugin supplies -----------------------------------------------------------

    @abstractmethod
    def _listener(self, host: str) -> RemoteListener:
        """A server feeding :attr:`service`, to listen on ``host`` (not started yet)."""

    @abstractmethod
    def _open_channel(self, url: str) -> Channel:
        """A client channel to the node at ``url`` (requests it sends back, over TCP, go
        to :attr:`service`)."""

    def _back_channel(self, context: Any) -> Channel | None:
        """The channel back to the peer that sent a request over ``context``, if the
        transport has one (TCP: the same connection); None otherwise."""
        return None

    # -- serving --------------------------------------------------------------------------

    def listen(self, address: str) -> str:
        host, port = split_url(address, self.scheme)
        why = unresolved(host)
        if why is not None:  # (before the secret's rule, which it would be taken for)
            raise TransportError(f"cannot serve {address}: the host name {host!r} names no "
                                 f"address ({why})")
        if not is_loopback(host) and not self.secret:
            raise TransportError(
                f"refusing to serve {address}: it is not a loopback address, and a server "
                f"others can reach needs a shared secret: set 'secret' in the "
                f"[berrymq.{self.plugin}] table of the settings file or the environment "
                f"variable {p.SECRET_ENV_VAR}"
            )
        if self._closed:
            raise ConnectionClosed(f"the {self.scheme} transport is closed")
        with self._lock:  # the transport's cap counts once, however many addresses
            counted, self._files_counted = self._files_counted, True
        if not counted:
            fit_open_files(self.admission.max_connections, logger)
        server = self._listener(host)
        server.close_timeout = self.timeout
        try:
            bound = io_loop.run(server.start(host, port), self.timeout)
        except OSError as exc:  # the port is taken, the address is not this machine's...
            raise TransportError(f"cannot serve {address}: {exc}") from exc
        note_served(host, bound, True)
        with self._lock:
            self._servers.append(server)
            self._served.append((host, bound))
        url = server.address = f"{self.scheme}://{netloc(host, bound)}"
        self.urls.append(url)
        sample_rates(self.bus)
        return url

    def make_link(self, channel: Channel, token: str, name: str,
                  on_dead: Callable[[BaseException], None], *, owns_channel: bool = False) -> Link:
        """A link on ``channel`` for the session ``token`` there, with this transport's
        outbox bounds, counted in the node's stats, its losses reported by the next
        :meth:`flush`: the link of a connection this transport opens, or of an
        interconnection a peer opened to it."""
        link = Link(channel, token, name=name, on_dead=on_dead, owns_channel=owns_channel,
                    outbox_size=self.outbox_size, outbox_bytes=self.outbox_bytes,
                    outbox_wait=self.outbox_wait)
        link.stats = self.service.stats  # stats
        link.failures = self.service.link_failures
        link.on_loss = self._note_loss
        return link

    def _note_loss(self) -> None:
        """A link of this transport lost or had refused messages (on any thread)."""
        with self._losses_lock:
            self._losses_since_flush += 1

    # -- connecting -----------------------------------------------------------------------

    @property
    def connections(self) -> tuple[RemoteConnection, ...]:
        """The connections this transport opened to other nodes and has not forgotten yet
        (a snapshot: closing one while going through them is safe)."""
        with self._lock:
            return tuple(self._connections)

    def _track(self, connection: RemoteConnection) -> RemoteConnection:
        with self._lock:
            self._connections.append(connection)
        return connection

    def forget(self, connection: RemoteConnection) -> None:
        """Drop a closed connection from the ones :meth:`close` closes."""
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    def _channel(self, address: str) -> Channel:
        split_url(address, self.scheme)
        if self._closed:
            raise ConnectionClosed(f"the {self.scheme} transport is closed")
        return self._open_channel(address)

    def _open(self, address: str, style: str, method: str, params: dict[str, Any]
              ) -> RemoteConnection:
        channel = self._channel(address)
        try:
            token = _without_default_ttl(channel, method, params)
        except BaseException:
            channel.close()
            raise
        try:
            token = _answered_token(address, method, token)
        except TransportError:
            channel.close()
            raise
        # ask reaches the peer over this style too (the connection adds an asker)
        return self._track(RemoteConnection(self, channel, address, style, token))

    def call_once(self, address: str, method: str, params: Mapping[str, Any], *,
                  timeout: float, secret: str | None) -> Any:
        """One request to the node at ``address`` on a channel of its own (``berrymq
        graph URL`` asks ``network`` so); ``secret`` replaces this node's own."""
        channel = self._channel(address)
        channel.secret = secret
        try:
            return channel.call(method, params, timeout)
        finally:
            channel.close()

    def connect_oneway(self, address: str, ttl: float) -> Connection:
        return self._open(address, "oneway", p.METHOD_CONNECT_ONEWAY, {"ttl": ttl})

    def connect_via_queue(self, address: str, pattern: Identifier, ttl: float) -> Connection:
        if pattern.is_local:
            raise ValueError(f"pattern {pattern} is local (starts with '_'); local messages "
                             "never leave their process, so no remote queue can get them")
        return self._open(address, "queue", p.METHOD_CONNECT_VIA_QUEUE,
                          {"identifier": str(pattern), "ttl": ttl, "max_size": self.max_size})

    def _own_address(self) -> str | None:
        """What ``interconnect`` sends as ``addr`` (None: the peer answers over the same
        connection). HTTP overrides this: the peer calls back this node's server."""
        return None

    def interconnect(self, address: str, ttl: float) -> Connection:
        own = self._own_address()
        channel = self._channel(address)
        # (the default ttl is this node's cap where that is lower; the peer's is left
        # to the peer: see _without_default_ttl)
        own_ttl = min(ttl, self.service.max_ttl) if ttl is DEFAULT_TTL else ttl
        try:  # the session here that the peer's messages come in on
            session = self.service.open_session("interconnect", own_ttl, channel)
        except JsonRpcError as exc:  # a cap of this node's own (max_ttl, max_sessions)
            channel.close()
            detail = exc.data.get("detail") if isinstance(exc.data, dict) else exc.data
            raise TransportError(f"cannot interconnect with {address}: {detail}") from None
        try:
            token = _without_default_ttl(channel, p.METHOD_INTERCONNECT, {
                "addr": own, "token": session.token, "ttl": ttl, "max_size": self.max_size})
            token = _answered_token(address, p.METHOD_INTERCONNECT, token)
        except BaseException:
            self.service.close_session(session.token, "interconnect failed")
            channel.close()
            raise
        connection = RemoteConnection(self, channel, address, "interconnect", token)
        connection.local_session = session
        session.link = connection.link
        connection.link.session = session
        session.on_close.append(connection.local_session_closed)
        return self._track(connection)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message queued for a peer (on connections this node opened and
        on interconnections peers opened to it) was acknowledged; False on timeout, and
        (once) when messages were lost or refused on any of them since the last flush,
        including connections and interconnections torn down meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        boxes = [c.link.outbox for c in list(self._connections) if not c.closed]
        boxes += [s.link.outbox for s in list(self.service.sessions.values())
                  if s.link is not None]  # a Link, or a dialect_link.V1Link (JSON-RPC 1.0 peer)
        done = True
        for box in boxes:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                done = box.flush(left) and done
            except (ConnectionClosed, QueueFull):  # lost or refused: counted and logged
                done = False
        with self._losses_lock:  # this flush reports them: the next one only later ones
            lost, self._losses_since_flush = self._losses_since_flush, 0
        return done and not lost

    # -- state ----------------------------------------------------------------------------

    def peers(self) -> list[tuple[str, str]]:
        # not the sessions of the interconnects made here: those peers are connections
        made = {id(getattr(c, "local_session", None)) for c in list(self._connections)}
        return [(session_peer(session) or "(unknown address)", session.style)
                for session in list(self.service.sessions.values())
                if session.style == "interconnect" and id(session) not in made]

    def status(self) -> str:
        parts = [f"serving {', '.join(self.urls)}" if self.urls else "not serving"]
        parts.append(f"{len(self._connections)} connection(s) out")
        parts.append(f"{len(self.service.sessions)} session(s) in")
        return "; ".join(parts)

    @property
    def serving(self) -> bool:
        """Whether this transport has a server running."""
        return bool(self._servers)

    def stop_accepting(self) -> None:
        """Take no new connection, and keep serving the open ones: at exit, the answers
        to what they sent are still written (a client that came meanwhile would get no
        answer, and count its message as lost)."""
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            io_loop.call_soon(server.stop_accepting)

    def close(self) -> None:
        """Close every connection, every session and every server (idempotent)."""
        if self._closed:
            return
        self._closed = True
        used = bool(self._connections or self._servers)
        for connection in list(self._connections):
            connection.close()
        self.service.close()
        with self._lock:
            servers, self._servers = self._servers, []
            served, self._served = self._served, []
        for server in servers:
            server.close()
        for host, port in served:
            note_served(host, port, False)
        self.admission.flush()
        if self._files_counted:
            release_open_files(self.admission.max_connections)
        self.urls.clear()
        if used:
            deliver_what_came(CLOSE_DELIVERY_WAIT)


def _without_default_ttl(channel: Channel, method: str, params: dict[str, Any]) -> Any:
    """``channel.call(method, params)``, leaving out a ``ttl`` that is the default
    (:data:`berrymq.api.DEFAULT_TTL`): the node then gives 1000 s, or its ``max_ttl`` where
    that is lower. Asked for explicitly, such a session was refused by a node with a
    lower cap (counted in its ``refused``) and asked for again, every time."""
    if params.get("ttl") is DEFAULT_TTL:
        params = {key: value for key, value in params.items() if key != "ttl"}
    return channel.call(method, params)

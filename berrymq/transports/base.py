"""The contract between the bus and a transport plugin.

A transport plugin claims a URL scheme (``registry.add("tcp", factory, plugin=...)`` in
its :func:`~berrymq.hookspecs.berrymq_register_transports`). The bus creates one
:class:`Transport` per scheme on first use. A transport:

- serves the bus at an address (:meth:`Transport.listen`; a :class:`Listener`), so that
  other nodes connect;
- opens :class:`Connection` objects to other nodes in the three styles of the SPEC;
- carries messages to a peer over a :class:`Link` (send a batch, carry a request, close).
  A link is also what the bus forwards to: :meth:`Link.forward` hands one message on as a
  batch of one, :meth:`Link.request` carries :func:`berrymq.ask`. A transport adds the
  link of an interconnection with :meth:`Bus.add_forwarder <berrymq.Bus.add_forwarder>`,
  and gives incoming messages to :meth:`Bus.receive <berrymq.Bus.receive>`, which drops
  messages that went round a cycle;
- for ``ask`` over a one-way or queue connection, adds :func:`asker` of its link: it
  carries requests and forwards nothing else.

:func:`memory_link_pair` gives two :class:`Link` objects joining two buses in memory (the
``local`` transport is built on it), so the core and plugins can test what runs over a
link without sockets, as httpx's ``MockTransport`` does.

Lower-level errors are translated into :mod:`berrymq.errors` at this boundary.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from berrymq.errors import ConnectionClosed
from berrymq.identifier import Identifier
from berrymq.node import Forwarder, Requester

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.message import Message

__all__ = [
    "Address",
    "Connection",
    "ConnectionRow",
    "Forwarder",
    "Link",
    "Listener",
    "Requester",
    "Transport",
    "asker",
    "memory_link_pair",
    "normalize_address",
    "url_parts",
]

Address = str | tuple[str, int]


class Link(ABC):
    """A way to one peer node: the one thing every transport provides.

    A link sends batches of messages to the peer's bus (in order), carries requests to the
    peer's receivers and closes. Being a :class:`Forwarder` and a :class:`Requester`, it
    can be added to a bus as it is.
    """

    #: the peer's address, as a URL
    address: str

    @abstractmethod
    def send_batch(self, messages: Sequence[Message], reply_to: Identifier | None = None) -> None:
        """Hand ``messages`` to the peer's bus, in order (``reply_to`` as for
        :func:`berrymq.talk`). May queue them; raises :class:`berrymq.ConnectionClosed`
        once the link is closed or dead, and :class:`berrymq.QueueFull` or
        :class:`berrymq.MessageTooLarge` for what it refuses."""

    @abstractmethod
    def request(self, message: Message, timeout: float) -> list[Any]:
        """Deliver ``message`` to the peer's receivers and return their replies (see
        :class:`Requester`)."""

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """The bus's forwarder call: one message as a batch of one."""
        self.send_batch((message,), reply_to)

    def send(self, message: Message) -> None:
        """One message of :meth:`Connection.send`, which is not delivered here: as
        :meth:`forward`, unless the transport tells the two apart (NATS: no local shared
        queue took it)."""
        self.forward(message, None)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything sent so far was handed to the peer; False on timeout."""
        return True

    @abstractmethod
    def close(self) -> None:
        """Stop sending (idempotent); what was sent before is still handed over."""


class Listener(ABC):
    """A server of a transport: other nodes connect to :attr:`address`."""

    #: the bound address, as a URL (port 0 replaced by the real one)
    address: str

    @abstractmethod
    def close(self) -> None:
        """Stop serving and close the connections it accepted (idempotent)."""


class _Asker:
    """The forwarder of a one-way or queue connection: carries requests, nothing else."""

    def __init__(self, link: Requester) -> None:
        self.link = link

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Nothing: such a connection sends only what ``send`` sends."""

    def request(self, message: Message, timeout: float) -> list[Any]:
        return self.link.request(message, timeout)

    @property
    def keeps_deadline(self) -> bool:
        """As the link's (see :class:`Requester`)."""
        return bool(getattr(self.link, "keeps_deadline", False))

    def __repr__(self) -> str:
        return f"<ask over {self.link!r}>"


def asker(link: Requester) -> Forwarder:
    """What a transport adds to the bus (:meth:`Bus.add_forwarder
    <berrymq.Bus.add_forwarder>`) so that :func:`berrymq.ask` reaches the peer of a
    one-way or queue connection: it carries requests over ``link`` and forwards no other
    message. Remove it when the connection closes."""
    return _Asker(link)


class _MemoryLink(Link):
    """One direction of :func:`memory_link_pair`."""

    def __init__(self, peer: Bus, address: str) -> None:
        self.peer = peer
        self.address = address
        self.back: _MemoryLink | None = None
        self.closed = False
        self.watching = False  # whether the peer's changes refresh the sender's routes

    def send_batch(self, messages: Sequence[Message], reply_to: Identifier | None = None) -> None:
        if self.closed:
            raise ConnectionClosed(f"the link to {self.address} is closed")
        receive = self.peer.receive
        for message in messages:
            receive(message, self.back, reply_to)

    def follows(self, ident: Identifier) -> bool:
        """Whether the peer may do anything with a message of ``ident``: it has taps,
        forwarders other than the way back, or a subscription matching it.

        The sending bus asks when it builds a route (see :meth:`Node.wants
        <berrymq.node.Node.wants>`) and sends as if it had no peer when nothing wants it;
        from the first question on, the peer's new subscriptions, forwarders and taps
        refresh the sending bus's routes.
        """
        if self.closed or self.back is None:
            return True  # forwarding reports the closed link
        peer = self.peer
        index = peer.index
        if not self.watching:
            with index.lock:
                if not self.watching:
                    self.watching = True
                    index.watchers = (*index.watchers, self._peer_changed)
        node = peer.node
        if peer.taps or (node is not None and any(f is not self.back for f in node.forwarders)):
            return True
        return index.follows(ident)

    def _peer_changed(self, pattern: Identifier | None) -> None:
        if self.back is not None:
            self.back.peer.index.refresh(pattern)  # the sending bus's routes

    def request(self, message: Message, timeout: float) -> list[Any]:
        if self.closed:
            raise ConnectionClosed(f"the link to {self.address} is closed")
        uid = message[4]
        if uid is not None and not self.peer.first_request(uid):
            return []  # asked over another link to the same bus: its receivers ran once
        return self.peer.ask_local(message, timeout, from_peer=True)

    def close(self) -> None:
        self.closed = True
        index = self.peer.index
        with index.lock:
            index.watchers = tuple(w for w in index.watchers if w != self._peer_changed)

    def __repr__(self) -> str:
        return f"<memory link to {self.address}>"


def memory_link_pair(a: Bus, b: Bus, address_a: str = "memory://a",
                     address_b: str = "memory://b") -> tuple[Link, Link]:
    """Two links joining buses ``a`` and ``b`` in memory: the first carries ``a``'s
    messages to ``b`` (its address is ``address_b``), the second ``b``'s to ``a``. A
    message delivered through one is never forwarded back through the other.

    Add them with ``a.add_forwarder(first)`` and ``b.add_forwarder(second)`` for an
    interconnection, or use one alone as a one-way link.
    """
    there = _MemoryLink(b, address_b)
    back = _MemoryLink(a, address_a)
    there.back, back.back = back, there
    return there, back


def normalize_address(address: Address) -> tuple[str, str]:
    """Return ``(scheme, url)`` for a ``(host, port)`` tuple (HTTP) or a URL.

    >>> normalize_address(("localhost", 8000))
    ('http', 'http://localhost:8000')
    """
    if isinstance(address, tuple):
        if len(address) != 2 or not isinstance(address[0], str) or not isinstance(address[1], int):
            raise ValueError(f"an address tuple is (host: str, port: int), got {address!r}")
        host, port = address
        return "http", f"http://{host}:{port}"
    if not isinstance(address, str):
        raise TypeError(f"an address is a (host, port) tuple or a URL, got {address!r}")
    parts = url_parts(address)
    if not parts.scheme or "://" not in address:
        raise ValueError(
            f"address {address!r} has no scheme; write e.g. 'tcp://127.0.0.1:7000' or "
            "'http://127.0.0.1:8000'"
        )
    return parts.scheme.lower(), address


def url_parts(url: str) -> SplitResult:
    """``url`` split into its parts; a ValueError that names ``url`` when it cannot be
    (the standard library's own says only ``Invalid IPv6 URL``, which a program with
    several addresses cannot place)."""
    try:
        return urlsplit(url)
    except ValueError as error:
        raise ValueError(f"address {url!r} cannot be read: {error}") from None


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """One connection as a node's ``/status`` lists it (``connections``, and
    ``berrymq_connections`` of ``/metrics``): what :meth:`Connection.status_row` gives,
    whatever the transport.

    :param scheme: the URL scheme of its transport (``tcp``, ``http``, ``nats``).
    :param address: where it goes, as a URL.
    :param style: ``interconnect``, ``oneway`` or ``queue``.
    :param age_s: seconds since it was opened.
    :param pending: messages accepted and waiting to be sent.
    :param sent: messages sent (the transport's ``docs/status.md`` entry says when a
        message counts as sent: acknowledged by a JSON-RPC peer, published to NATS).
    :param lost: messages it accepted and could not send (it failed, closed, or its
        peer's connection dropped with them on their way).
    :param refused: messages the other side refused (a full queue of a JSON-RPC peer,
        the NATS server's permissions); the connection stays open.
    :param state: ``open`` or ``closed``, or the transport's own word for where it is
        (the NATS bridge: ``connecting``, ``connected``, ``reconnecting``, ``failed``).
    """

    scheme: str
    address: str
    style: str
    age_s: float
    pending: int = 0
    sent: int = 0
    lost: int = 0
    refused: int = 0
    state: str = "open"


class Connection(ABC):
    """A connection from this bus to another node, in one of the three styles."""

    #: the peer's address, as a URL
    address: str
    #: ``"interconnect"``, ``"oneway"`` or ``"queue"``
    style: str
    #: when it was opened (``time.monotonic()``); 0.0 when the transport does not say
    opened: float = 0.0

    def status_row(self) -> ConnectionRow:
        """This connection as ``/status`` shows it (read when someone asks, never on a
        message's way). A transport's connection overrides it to fill in what waits and
        what was sent and lost; this default knows the address, style and age alone."""
        scheme, sep, _ = self.address.partition("://")
        age = time.monotonic() - self.opened if self.opened else 0.0
        return ConnectionRow(scheme=scheme.lower() if sep else "", address=self.address,
                             style=self.style, age_s=round(age, 3))

    @abstractmethod
    def send(self, message: Message) -> None:
        """Send one message to the peer (``send_message`` of the protocol)."""

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        """Pull the next message from the peer's queue for this client (style 03)."""
        raise TypeError(f"a {self.style} connection has no queue to get from; use connect_via_queue")

    def get_nowait(self) -> Message:
        """Pull without waiting; raises :class:`berrymq.Empty` when nothing is stored."""
        return self.get(block=False)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message sent so far was handed to the peer; False if
        ``timeout`` passed first. Transports that send at once have nothing to wait for."""
        return True

    @abstractmethod
    def close(self) -> None:
        """Close the connection and free its resources on both sides (idempotent).
        Messages already sent are handed over first (bounded by the transport's timeout)."""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Transport(ABC):
    """One bus's endpoint for one URL scheme: a server and the connections it opened.

    :param bus: the bus whose messages this transport carries.
    :param settings: this plugin's table of the settings file.
    """

    #: The URLs this transport serves (what :meth:`listen` returned), for the picture of
    #: the network and ``/status``. None by default.
    urls: Sequence[str] = ()

    def __init__(self, bus: Bus, settings: Mapping[str, Any]) -> None:
        self.bus = bus
        self.settings = settings

    @abstractmethod
    def listen(self, address: str) -> str:
        """Start serving ``address`` (port 0 picks a free one); return the bound URL."""

    @abstractmethod
    def interconnect(self, address: str, ttl: float) -> Connection:
        """Style 01: forward every non-local message both ways with the node at ``address``."""

    @abstractmethod
    def connect_oneway(self, address: str, ttl: float) -> Connection:
        """Style 02: a connection that only sends to the node at ``address``."""

    @abstractmethod
    def connect_via_queue(self, address: str, pattern: Identifier, ttl: float) -> Connection:
        """Style 03: the node at ``address`` keeps a queue of ``pattern`` for this client."""

    def status(self) -> str:
        """A one-line description of this transport's state, for ``berrymq plugins``."""
        return "ready"

    @property
    def connections(self) -> Sequence[Connection]:
        """The connections this transport opened to other nodes and has not forgotten
        (a snapshot), which ``/status`` lists through :meth:`Connection.status_row`.
        None by default."""
        return ()

    def peers(self) -> list[tuple[str, str]]:
        """The nodes that connected to this one and are sent its messages (they called
        ``interconnect`` here): ``(address, style)`` each, for the picture of the network
        (:func:`berrymq.network.describe`). None by default."""
        return []

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything this transport queued for peers was handed over (on
        every connection and link); False if ``timeout`` passed first."""
        return True

    @abstractmethod
    def close(self) -> None:
        """Stop serving and close every connection this transport opened (idempotent)."""

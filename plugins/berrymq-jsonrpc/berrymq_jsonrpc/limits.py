"""The node's caps and rules against clients that ask too much (docs/protocol.md, "Limits").

- :class:`Admission`: counts the connections a transport's servers accepted, per node and
  per client address, and names the cap a new one is over (``max_connections``,
  ``max_connections_per_client``). The servers answer such a connection once (a JSON-RPC
  error line over TCP, a ``503`` over HTTP) and close it.
- :class:`CallbackRule`: the addresses a node calls back for ``interconnect``
  (``callback_hosts``: loopback only by default, else a list of hosts and CIDR blocks).
- :class:`QueuedBytes`: the bytes held in a node's ``connect_via_queue`` queues, against
  the cap ``max_queued_bytes`` (:func:`queued_bytes_for`: one per bus, every transport's).

Refusals are logged through :class:`berrymq.bursts.BurstLog` (one line per burst).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

try:
    import resource  # POSIX only
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

from berrymq.bursts import BurstLog
from berrymq.errors import RemoteError
from berrymq.state import StateKey
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import app_error, error_object

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["CALLBACK_CHECK", "Admission", "CallbackRule", "QueuedBytes", "fit_open_files",
           "queued_bytes_for", "release_open_files", "ttl_limit", "unreachable"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class QueuedBytes:
    """The bytes held in the server-side session queues of one node, all transports
    together, so that many sessions cannot each fill a bounded queue with large messages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def take(self, size: int, limit: int) -> bool:
        """Count ``size`` more bytes; False (nothing counted) when the total would go over
        ``limit``."""
        with self._lock:
            if self.total + size > limit:
                return False
            self.total += size
            return True

    def give(self, size: int) -> None:
        """Bytes counted by :meth:`take` left their queue."""
        with self._lock:
            self.total -= size


#: The bytes queued in the session queues of a bus (setting ``max_queued_bytes``).
QUEUED: StateKey[QueuedBytes] = StateKey("jsonrpc queued bytes", lambda bus: QueuedBytes())


def queued_bytes_for(bus: Bus) -> QueuedBytes:
    """The :class:`QueuedBytes` of ``bus`` (made on first use)."""
    return bus.state(QUEUED)


#: Files a node keeps for itself beside its connections (listeners, the loop's own,
#: settings, logs, outgoing links).
_SPARE_FILES = 256


class _OpenFiles:
    """The connections every server of this process accepted, against what its limit of
    open files (``RLIMIT_NOFILE``) leaves for them: process-wide on purpose, since the
    limit is the process's (counted on the I/O loop, the one that accepts)."""

    def __init__(self) -> None:
        self.open = 0
        #: the caps (``max_connections``) of the servers started so far, summed
        self.asked = 0
        #: the most connections the limit leaves room for (None: no limit known)
        self.cap: int | None = None
        self.soft = 0
        #: the sum of the caps when the shortfall was last told (0: never)
        self.told = 0
        self.lock = threading.Lock()


_files = _OpenFiles()


def release_open_files(max_connections: int) -> None:
    """A transport that called :func:`fit_open_files` stopped serving: its cap no longer
    counts among what the process's servers may open."""
    with _files.lock:
        _files.asked -= max_connections


def fit_open_files(max_connections: int, log: logging.Logger) -> None:
    """Let this process open a socket for every connection its servers' caps allow (the
    ``max_connections`` of each server started, this one's among them) and some to spare:
    raise the soft limit of open files (``RLIMIT_NOFILE``) up to the hard one.

    Under a hard limit too low for that, the servers of the process together accept no
    more connections than the limit leaves room for: one more is refused by the node
    itself, with *Limit reached* naming the limit (see :meth:`Admission.admit`), before
    the operating system would refuse it (``EMFILE``, on which asyncio logs a traceback
    per pending connection). Told in a line naming the numbers (a warning when the limit
    falls short of the caps by more than a tenth), and again only when another server
    adds to the shortfall (TCP and HTTP started together under a low limit: two lines,
    the second with the sum of both)."""
    if resource is None:
        return
    with _files.lock:
        _files.asked += max_connections
        wanted = _files.asked + _SPARE_FILES
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
            if raised > soft:
                with contextlib.suppress(ValueError, OSError):
                    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                    soft = raised
        if soft == resource.RLIM_INFINITY:
            _files.cap = None
            return
        _files.cap, _files.soft = max(1, soft - _SPARE_FILES), soft
        if soft >= wanted or _files.asked <= _files.told:
            return
        _files.told = _files.asked
        # a shortfall of a tenth or less (the default caps of TCP and HTTP under a hard
        # limit of 20,000) is routine; more is worth a warning
        level = logging.INFO if _files.cap >= 0.9 * _files.asked else logging.WARNING
    log.log(level, "this process may open %d files (RLIMIT_NOFILE, hard limit %s), fewer "
            "than its servers' max_connections (%d in all) and %d to spare: past %d "
            "connections in all they refuse new ones (Limit reached); raise the limit "
            "(ulimit -n) or lower max_connections", soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard, _files.asked,
            _SPARE_FILES, _files.cap)


class Admission:
    """The connections accepted by one transport's servers (touched on the I/O loop only).

    :param max_connections: the most open at once on the node.
    :param per_client: the most open at once from one client address.
    :param fixed: the caps are the server's own, not settings (the status server's), and
        its refusals say so rather than name a setting to change.
    """

    def __init__(self, max_connections: int, per_client: int, log: logging.Logger,
                 fixed: bool = False) -> None:
        self.fixed = fixed
        self.max_connections = max_connections
        self.per_client = per_client
        self.open = 0
        self.by_client: dict[str, int] = {}
        #: the connections refused, by the setting whose cap they were over (``/status``)
        self.refused: dict[str, int] = {}
        self._log = BurstLog(log)

    def admit(self, client: str) -> dict[str, Any] | None:
        """Count a new connection from ``client``; or, when it is over a cap, the JSON-RPC
        error object to answer it with (not counted: the caller closes it at once)."""
        held = self.by_client.get(client, 0)
        room = _files.cap
        if self.open >= self.max_connections:
            setting, limit = "max_connections", self.max_connections
            text = f"this transport has {limit} connections open, {self._cap(setting)}"
        elif room is not None and _files.open >= room:
            setting, limit = "max_connections", room
            text = (f"this process has {limit} connections open, as many as its limit of "
                    f"open files allows (RLIMIT_NOFILE {_files.soft}, less "
                    f"{_SPARE_FILES} to spare); raise it (ulimit -n)")
        elif held >= self.per_client:
            setting, limit = "max_connections_per_client", self.per_client
            text = f"{client} has {limit} connections open, {self._cap(setting)}"
        else:
            self.open += 1
            _files.open += 1
            self.by_client[client] = held + 1
            return None
        self.refused[setting] = self.refused.get(setting, 0) + 1
        self._log.warning("refused a connection from %s: %s", client, text)
        return error_object(p.LIMIT_REACHED, p.APPLICATION_ERRORS[p.LIMIT_REACHED], None,
                            {"setting": setting, "limit": limit, "detail": text})

    def _cap(self, setting: str) -> str:
        return "its fixed cap" if self.fixed else f"the cap (setting {setting})"

    def flush(self) -> None:
        """Write what the refusals came to since their last line (the servers close)."""
        self._log.flush()

    def release(self, client: str) -> None:
        """A connection counted by :meth:`admit` ended."""
        self.open -= 1
        _files.open -= 1
        held = self.by_client.get(client, 0) - 1
        if held > 0:
            self.by_client[client] = held
        else:
            self.by_client.pop(client, None)

    @staticmethod
    async def turn_away(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        answer: bytes) -> None:
        """Write ``answer`` to a refused connection and close it: the write side first,
        then a short, bounded read of what the client sent, so that the close does not
        reset the connection before the client has read the answer. Closed also when the
        loop stops meanwhile (cancelled: asyncio 3.11 would leave the socket open)."""
        try:
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                writer.write(answer)
                if writer.can_write_eof():
                    writer.write_eof()
                await asyncio.wait_for(writer.drain(), _TURN_AWAY)
                await asyncio.wait_for(reader.read(_TURN_AWAY_READ), _TURN_AWAY)
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


#: How long, and how much, a refused connection is read before it is closed.
_TURN_AWAY = 1.0
_TURN_AWAY_READ = 1 << 16


def _networks(hosts: Iterable[str]) -> tuple[list[_Network], set[str]]:
    networks: list[_Network] = []
    names: set[str] = set()
    for entry in hosts:
        text = str(entry).strip().strip("[]")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text.lower())
    return networks, names


#: The longest the node tries a callback address before it answers ``interconnect`` (the
#: request is answered on the delivery lane, which waits meanwhile), in either dialect.
CALLBACK_CHECK = 2.0


def unreachable(url: str) -> Exception:
    """The refusal of an ``interconnect`` whose callback address ``url`` accepts no
    connection: :data:`~berrymq_jsonrpc.protocol.NOT_AVAILABLE` in the node's own words
    (the exception's text is logged, never answered)."""
    return app_error(p.NOT_AVAILABLE, f"cannot call back {url}: nothing accepts a connection "
                                      "there")


class CallbackRule:
    """Which addresses ``interconnect`` may make the node call back.

    :param hosts: the ``callback_hosts`` setting: None for loopback only; else host names
        and addresses or CIDR blocks (``10.0.0.0/8``). A name is allowed when it is listed,
        or when every address it resolves to is in a listed block.
    """

    def __init__(self, hosts: Iterable[str] | None) -> None:
        self.loopback_only = hosts is None
        self.networks, self.names = _networks(
            ["127.0.0.0/8", "::1/128", "localhost"] if hosts is None else hosts)

    def _address_allowed(self, text: str) -> bool:
        address = ipaddress.ip_address(text.split("%", maxsplit=1)[0])
        return any(address in network for network in self.networks)

    def allowed(self, host: str) -> bool:
        """Whether the node may connect to ``host``."""
        bare = host.strip("[]")
        if bare.lower() in self.names:
            return True
        try:
            return self._address_allowed(bare)
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(bare, None)
        except OSError:
            return False
        return bool(infos) and all(self._address_allowed(str(i[4][0])) for i in infos)

    def check(self, host: str) -> None:
        """Raise the JSON-RPC error :data:`~berrymq_jsonrpc.protocol.NOT_ALLOWED` naming
        the setting (``data.setting``, as every refusal by a setting) when the node may not
        call ``host`` back."""
        if not self.allowed(host):
            rule = "loopback addresses only" if self.loopback_only else "the hosts it lists"
            raise app_error(p.NOT_ALLOWED, {
                "setting": "callback_hosts",
                "detail": f"this node calls back {rule} (setting callback_hosts); {host!r} "
                          "is not among them"})


def ttl_limit(exc: BaseException, asked: float) -> float | None:
    """The node's ``max_ttl`` when ``exc`` is its refusal of a session ``ttl`` over it
    (-32009 *limit reached* with ``data.setting`` ``"max_ttl"`` and the limit in
    ``data.limit``), if that is a usable ttl below ``asked``; else None."""
    if not (isinstance(exc, RemoteError) and exc.code == p.LIMIT_REACHED
            and isinstance(exc.data, dict) and exc.data.get("setting") == "max_ttl"):
        return None
    limit = exc.data.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        return None
    return float(limit) if 0 < limit < asked else None

"""What the server keeps per client: a :class:`Session` for each token, the bounded
:class:`SessionQueue` of a ``connect_via_queue`` client, and the threads (:data:`WAITS`)
that run what may wait or block (a blocking ``get``, ``ask``, the closing of sessions).

A queue refuses a message that does not fit, never drops it: :class:`Refusal` names the
setting that refused it, for the ``data`` of the error answered (:func:`refusal_data`).
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq.errors import ConnectionClosed, QueueFull
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.receivers.queues import QUEUES
from berrymq.transports.ioloop import io_loop
from berrymq.wait_threads import WaitThreads
from berrymq.wire import MAX_MESSAGE_DEPTH, byte_size, dumps, loads, nested_deeper
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.get_line import GetLine
from berrymq_jsonrpc.jsonrpc import app_error
from berrymq_jsonrpc.limits import queued_bytes_for

if TYPE_CHECKING:
    from berrymq.bus import Bus, Subscription
    from berrymq_jsonrpc.client import Link
    from berrymq_jsonrpc.dialect_link import V1Link

__all__ = ["ENTRY_OVERHEAD", "NOT_WRITABLE", "WAITS", "WAIT_THREADS", "NoRoom", "Refusal",
           "Session", "SessionQueue", "Unwritable", "in_waits", "link_failed", "refusal_data",
           "session_id", "session_peer"]

_CLOSED = object()

#: How many :data:`WAITS` threads there may be: twice a TCP connection's ``max_waiting``
#: (16), so that one connection whose asks' receivers are stuck leaves as many for others.
WAIT_THREADS = 32
#: The threads that run requests which may wait (``ask``'s receivers), and the closing of
#: sessions (which may flush a link). Started on demand (one more only when none is idle),
#: ended after 10 s idle, shared by every transport of the process.
WAITS = WaitThreads(WAIT_THREADS, "berrymq-wait")


def in_waits(function: Callable[..., object], *args: Any) -> None:
    """Run ``function(*args)`` on a :data:`WAITS` thread without waiting for it (nothing
    runs once the interpreter is shutting down: the process is ending anyway)."""
    with contextlib.suppress(RuntimeError):
        WAITS.submit(function, *args)


def link_failed(exc: BaseException) -> str:
    """Why an interconnection ends when its link could not send to the peer (``exc``), as
    the session's end is logged: unreachable, or what the peer answered (a 0.3 peer's
    ``"invalid token"``, a node's error) that the link cannot go on after."""
    if isinstance(exc, ConnectionClosed | OSError):
        return "peer unreachable"
    return f"sending to the peer failed: {exc}"


class Refusal(QueueFull):
    """A session queue refused a message because of one of the node's settings: which one
    (``setting``) and its value (``limit``), for the ``data`` of the error answered."""

    def __init__(self, text: str, setting: str, limit: int) -> None:
        super().__init__(text)
        self.setting = setting
        self.limit = limit


class NoRoom(Exception):
    """The next entry of a queue was not taken: the answer it would go in has no room."""


#: The reason a message refused as :class:`Unwritable` is counted under (``/status``).
NOT_WRITABLE = "refused: not writable as JSON"


class Unwritable(QueueFull, TypeError):
    """A session queue refused a message that no ``get`` could hand out: one JSON cannot
    hold, or nested deeper than :data:`~berrymq.wire.MAX_MESSAGE_DEPTH`. Refused like one
    for a full queue (a :class:`~berrymq.QueueFull`: the sender hears of it, a remote one
    as *Queue is full* with the text as ``data.detail``, and the node counts and logs it),
    and a ``TypeError`` as it always was."""


def refusal_data(indexes: list[int], first: BaseException | None) -> dict[str, Any]:
    """The ``data`` of a :data:`~berrymq_jsonrpc.protocol.QUEUE_FULL` answer: the refused
    indexes, and the setting (with its value) that refused the first of them when a
    setting of the session queues did, else (a receiver of the node's own refused it: a
    bounded ``Queue``, a busy ``async def`` receiver) ``detail``, the refusal's text, which
    says so when the node's receivers had the message and a further peer's full link
    refused it (:attr:`~berrymq.QueueFull.not_forwarded`)."""
    data: dict[str, Any] = {"refused": indexes}
    if isinstance(first, Refusal):
        data["setting"] = first.setting
        data["limit"] = first.limit
    elif isinstance(first, QueueFull) and first.not_forwarded:  # delivered, not handed on
        data["detail"] = (f"delivered to this node's receivers, but not forwarded: a link to "
                          f"a further peer refused it ({first})")
    elif first is not None:  # a receiver of the node refused it: its own words say why
        data["detail"] = str(first)
    return data


#: What a stored message costs the node beyond its JSON text, counted against
#: ``max_queued_bytes`` with it: the text's object, its size and the queue's slot (65-85
#: bytes measured on CPython 3.11; a small message held as Python objects cost 256).
ENTRY_OVERHEAD = 96


#: The message written last, with its text and size: a message goes to every session
#: queue that follows it, and is written once for all of them (a thousand queues wrote
#: it a thousand times). One entry, replaced whole: read and set from any thread; the
#: one message it keeps is let go of when it is refused (:func:`_forget_written`).
_last_written: tuple[Message | None, str, int] = (None, "", 0)


def _written(message: Message) -> tuple[str, int]:
    """``message`` as a queue entry's JSON text, and its size in bytes; :class:`Unwritable`
    when it is not JSON or is nested too deep."""
    global _last_written
    last = _last_written
    if last[0] is message:
        return last[1], last[2]
    ident = message[0]
    try:
        text = dumps([str(ident), list(message[1]), message[2]])
    except (TypeError, ValueError) as exc:
        raise Unwritable(
            f"message {ident} cannot go to a remote queue: it is not JSON ({exc})") from None
    if nested_deeper(text, MAX_MESSAGE_DEPTH):
        raise Unwritable(f"message {ident} cannot go to a remote queue: it is nested more "
                         f"than {MAX_MESSAGE_DEPTH} levels deep, the limit")
    size = byte_size(text)
    _last_written = (message, text, size)
    return text, size


def _forget_written() -> None:
    """A message refused is let go of at once (a node refusing large messages kept each
    until the next came); the next queue writes it again, as before it was kept."""
    global _last_written
    _last_written = (None, "", 0)


class SessionQueue:
    """The bounded queue the server keeps for a ``connect_via_queue`` client.

    It follows ``pattern`` on the bus, but never takes local (``_``) messages, which must
    not leave the process. Policy when full: the message is *refused*, not dropped: the
    sending ``twitter`` raises :class:`berrymq.QueueFull` (a remote sender gets
    :data:`~berrymq_jsonrpc.protocol.QUEUE_FULL`). A message no ``get`` could answer
    with is refused the same way, when it comes rather than when it is taken: one that
    cannot be written as JSON or is nested too deep (:class:`Unwritable`, also a
    ``TypeError`` naming it), or one over ``max_size`` bytes (a message sent from the
    node's own process may be that large; a client could not read the answer).

    Messages are held as their JSON text (read back when taken), and each counts its
    bytes and :data:`ENTRY_OVERHEAD` against ``max_queued_bytes``: so the cap bounds the
    memory they take, not only their size on the wire.
    """

    def __init__(self, bus: Bus, pattern: Identifier, maxsize: int,
                 max_bytes: int = p.DEFAULT_MAX_QUEUED_BYTES,
                 max_size: int = p.DEFAULT_MAX_SIZE, clients_limit: bool = False) -> None:
        self.pattern = pattern
        self.maxsize = maxsize
        #: who takes from the queue, as ``/status``'s recent messages name it (set by the
        #: session that owns it: its style, where it is from, the pattern)
        self.taker = f"queue {pattern}"
        #: the cap on the bytes of every session queue of the node (``max_queued_bytes``)
        self.max_bytes = max_bytes
        #: the largest message held, as JSON (``max_size``: the node's, or the smaller one
        #: the client gave when it connected, when ``clients_limit``)
        self.max_size = max_size
        self._limit_named = ("the max_size the client connected with" if clients_limit
                             else "setting max_size")
        self._budget = queued_bytes_for(bus)
        self._items: queue.Queue[object] = queue.Queue(maxsize + 1 if maxsize > 0 else 0)
        #: the sizes of the entries, in order; with _items under _lock
        self._sizes: collections.deque[int] = collections.deque()
        self._lock = threading.Lock()
        #: the blocking gets waiting for an entry, oldest first (on the I/O loop)
        self.line = GetLine()
        self.closed = False
        self.subscription: Subscription = bus.subscribe(
            pattern, self.put, weak=False, kind=QUEUES
        )

    def put(self, message: Message) -> None:
        """The receiver: store the message as ``[identifier, args, kwargs]``."""
        ident: Identifier = message[0]
        if ident.is_local or self.closed:
            return
        if 0 < self.maxsize <= len(self._sizes):  # before the cost of writing it (no lock)
            raise Refusal(
                f"the remote client's queue {self.pattern} is full ({self.maxsize} "
                f"message{'' if self.maxsize == 1 else 's'}, setting queue_size); message "
                f"{ident} was refused",
                "queue_size", self.maxsize)
        text, size = _written(message)
        if size > self.max_size:
            _forget_written()
            raise Refusal(
                f"message {ident} ({size} bytes as JSON) cannot go to a remote queue: it is "
                f"over {self.max_size} bytes ({self._limit_named}), more than the client "
                "reads in an answer to get", "max_size", self.max_size)
        if not self._budget.take(size + ENTRY_OVERHEAD, self.max_bytes):
            _forget_written()
            raise Refusal(
                f"the node's remote client queues hold {self._budget.total} bytes (their "
                f"JSON and {ENTRY_OVERHEAD} per message); message {ident} ({size} bytes) "
                f"would go over the cap of {self.max_bytes} (setting max_queued_bytes) and "
                "was refused", "max_queued_bytes", self.max_bytes)
        with self._lock:
            if self.closed:
                self._budget.give(size + ENTRY_OVERHEAD)
                return
            self._sizes.append(size)
            self._items.put_nowait(text)
        if self.line:  # (a get joins the line before it looks: none is missed)
            io_loop.call_soon(self.line.wake)

    @property
    def waiting(self) -> int:
        """How many requests wait for an entry now."""
        return len(self.line)

    @property
    def has_entries(self) -> bool:
        """Whether a get would find an entry (or the queue closed) now."""
        return self._items.qsize() > 0

    def get(self, timeout: float | None, fits: Callable[[int], bool] | None = None) -> list[Any]:
        """The next entry; ``queue.Empty`` when none came in ``timeout`` (0: at once).

        :param fits: with ``timeout`` 0: asked, with the queue's lock held, whether the next
            entry of that many bytes (as JSON) may be taken; if not, :class:`NoRoom` and the
            entry stays (an answer to a batch has room for it or not,
            :mod:`berrymq_jsonrpc.replies`)."""
        if timeout == 0:
            with self._lock:
                if self._sizes and fits is not None and not fits(self._sizes[0]):
                    raise NoRoom
                item = self._items.get_nowait()
                if item is not _CLOSED and self._sizes:  # else close() gave them all back
                    self._budget.give(self._sizes.popleft() + ENTRY_OVERHEAD)
        else:
            item = self._items.get(True, timeout)
            if item is not _CLOSED:
                with self._lock:
                    if self._sizes:
                        self._budget.give(self._sizes.popleft() + ENTRY_OVERHEAD)
        if item is _CLOSED:
            self._items.put_nowait(_CLOSED)
            raise app_error(p.UNKNOWN_TOKEN)
        assert type(item) is str
        entry: list[Any] = loads(item)
        return entry

    def __str__(self) -> str:
        """The peer of a message taken from this queue (``/status``'s recent messages): its
        client, known by the pattern it pulls."""
        return f"queue {self.pattern}"

    def held(self) -> tuple[int, int]:
        """How many messages the queue holds, and their bytes as JSON (what the client
        will get): for ``/status``, without reading the entries."""
        with self._lock:
            return len(self._sizes), sum(self._sizes)

    def close(self) -> int:
        """Stop following the pattern and free what is held; how many messages it held
        (accepted and never taken: the caller counts them lost). 0 when already closed."""
        with self._lock:
            if self.closed:
                return 0
            self.closed = True
            self._budget.give(sum(self._sizes) + ENTRY_OVERHEAD * len(self._sizes))
            self._sizes.clear()
        self.subscription.cancel()
        dropped = 0
        while True:  # free the memory now, and wake every waiting get
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                break
            if item is not _CLOSED:
                dropped += 1
        self._items.put_nowait(_CLOSED)
        io_loop.call_soon(self.line.wake_all)
        return dropped


class Session:
    """What the server keeps for one token."""

    __slots__ = ("carried_by", "closed", "context", "deadline", "link", "on_close", "opened",
                 "queue", "sends_on", "style", "token", "ttl")

    def __init__(self, token: str, style: str, ttl: float, context: Any = None) -> None:
        self.token = token
        self.style = style
        self.ttl = ttl
        self.deadline = time.monotonic() + ttl
        self.opened = time.monotonic()  # stats: the session's age in /status
        self.context = context
        #: the connection its messages last came on, when that is not the one that opened
        #: it (a token works from any connection: an interconnection's call-back link, a
        #: client that connects again), which is then kept open as ``context`` is
        self.carried_by: Any = None
        #: the connection a peer opened that this session's link sends back over (an
        #: interconnection over TCP with ``addr`` null), counted against the cap
        #: ``max_interconnects_per_connection``; None for every other session
        self.sends_on: Any = None
        self.queue: SessionQueue | None = None
        self.link: Link | V1Link | None = None
        self.closed = False
        self.on_close: list[Callable[[str], None]] = []

    def touch(self, busy_for: float = 0.0) -> None:
        """Mark the session used now: it expires ``ttl`` seconds after its last use, and a
        request that waits up to ``busy_for`` seconds (a blocking ``get``) uses it until it
        ends, so that a session never expires under a client waiting on it."""
        self.deadline = time.monotonic() + busy_for + self.ttl

    def __str__(self) -> str:
        """What the node's recent messages (``/status``) and its logs call the peer of this
        session: its style and where it is from (:func:`session_peer`), or its style and
        the first characters of its token when the transport does not know where."""
        where = session_peer(self)
        return f"{self.style} {where}" if where else f"{self.style} session {session_id(self.token)}"

    def __repr__(self) -> str:
        return f"<Session {self.style} {session_id(self.token)}...>"


def session_id(token: str) -> str:
    """What a node shows of a session's token, wherever it shows it (``/status``'s sessions
    and queues, the peer of its recent messages, logs): its first 8 characters, or a
    quarter of a token shorter than 32 (a JSON-RPC 1.0 peer may propose one of 16), so that
    what anyone on loopback can read leaves most of the token unknown."""
    return token[:min(8, len(token) // 4)]


def session_peer(session: Session) -> str | None:
    """Where a session's peer is, when the transport knows: the TCP connection it came on,
    or the address an interconnected peer is called back at; None over plain HTTP."""
    url = getattr(session.context, "url", None)
    if url is None and session.link is not None:
        url = session.link.address
    return None if url is None else str(url)

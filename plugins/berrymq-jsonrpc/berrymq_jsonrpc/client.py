"""The client side of the protocol, for any transport: channels, the outbox and links.

Everything here runs its I/O on the process's one I/O loop
(:data:`berrymq.transports.ioloop.io_loop`); no thread is started per connection.

- A :class:`Channel` carries requests to one peer and brings back the replies; each
  transport plugin subclasses it with its sockets (the coroutine :meth:`Channel.exchange`).
  Synchronous callers use :meth:`Channel.call`, which waits with a deadline.
- An :class:`Outbox` coalesces messages sent in quick succession: a task on the loop sends
  at once when it is idle, and while a batch is on its way (written and not yet
  acknowledged) it gathers what comes in into the next ``send_messages`` request. So a
  lone message has the latency of one round trip, and a stream of them goes out in a few
  requests. Each message is encoded by the sender, so a message that JSON cannot hold, or
  that is over the size limit, is refused at the call that sent it.
- A :class:`Link` is the forwarder of style 01: the bus hands it every non-local message
  (and :func:`berrymq.ask` requests), it sends them to the peer with the peer's token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from berrymq.errors import (
    ConnectionClosed,
    MessageTooLarge,
    QueueFull,
    ReplyError,
    TransportError,
)
from berrymq.identifier import Identifier
from berrymq.transports import base
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import PeerQueueFull, dumps, encode_request, parse_reply
from berrymq_jsonrpc.limits import BurstLog

if TYPE_CHECKING:
    from berrymq.message import Message
    from berrymq_jsonrpc.sessions import Session
    from berrymq_jsonrpc.stats import NodeStats

__all__ = [
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_OUTBOX_SIZE",
    "NOT_SENT",
    "REFUSED",
    "Channel",
    "Link",
    "Outbox",
    "decode_replies",
    "encode_message",
]

logger = logging.getLogger("berrymq.remote")

#: Room left in a request for everything around the messages (method, token, secret, id).
_ENVELOPE = 512
#: The most message text in one ``send_messages`` request: small enough that a hundred
#: senders' batches queued at one node are acknowledged well within a client's timeout
#: (at 256 KiB, 100 senders on a loaded 2-CPU machine waited past 10 s for their acks).
BATCH_BYTES = 64 * 1024
#: How many messages may wait in one connection's outbox (setting ``outbox_size``).
DEFAULT_OUTBOX_SIZE = 100_000
#: How many bytes of message text may wait in one connection's outbox (setting
#: ``outbox_bytes``): 64 MiB.
DEFAULT_OUTBOX_BYTES = 64 * 1024 * 1024
#: The reasons an outbox counts a message as not delivered (also the node's ``/status``).
REFUSED = "refused: queue full"
NOT_SENT = "not sent: connection failed or closed"
#: Extra seconds a synchronous caller waits beyond the request's own timeout, so that the
#: channel's deadline (with its clear error) always fires first.
_GRACE = 1.0


#: The last message encoded with its extras: the bus hands one message to each linked
#: peer in turn, so a message going to N peers is encoded once, not N times. One tuple,
#: replaced whole (reading it needs no lock); it is keyed by the message's identity.
_last: tuple[object, object, str] = (None, None, "")


def encode_message(message: Message, reply_to: Identifier | None = None, *,
                   extras: bool = True) -> str:
    """The wire form of a message, ``[identifier, args, kwargs(, extras)]``, as JSON text.

    Raises ``TypeError``/``ValueError`` naming the message when JSON cannot hold it.
    """
    global _last
    if extras:
        last_message, last_reply_to, text = _last
        if last_message is message and last_reply_to is reply_to:
            return text
        text = _encode(message, reply_to, extras)
        _last = (message, reply_to, text)
        return text
    return _encode(message, reply_to, extras)


def _encode(message: Message, reply_to: Identifier | None, extras: bool) -> str:
    ident: Identifier = message[0]
    try:
        if extras and (message[4] is not None or message[3] or reply_to is not None):
            more: dict[str, Any] = {}
            if message[4] is not None:
                more["uid"] = message[4]
            if message[3]:
                more["hops"] = message[3]
            if reply_to is not None:
                more["reply_to"] = str(reply_to)
            return dumps((str(ident), message[1], message[2], more))
        return dumps((str(ident), message[1], message[2]))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"message {ident} cannot be sent to another process: {exc}") from None


def decode_replies(result: Any, peer: str) -> list[Any]:
    """The replies of an ``ask`` result: values, and :class:`berrymq.ReplyError` entries."""
    if type(result) is not list:
        raise TransportError(f"{peer} answered ask with {type(result).__name__}, not an array")
    replies: list[Any] = []
    for entry in result:
        if type(entry) is dict and "value" in entry:
            replies.append(entry["value"])
        elif type(entry) is dict and type(entry.get("error")) is dict:
            replies.append(ReplyError.from_json(entry["error"]))
        else:
            raise TransportError(f"{peer} answered ask with a malformed entry")
    return replies


class Channel(ABC):
    """Requests to one peer and their replies, on the I/O loop.

    :param url: the peer's address.
    :param secret: sent as ``secret`` in every request when set.
    :param max_size: the largest request this side sends, in bytes.
    :param timeout: seconds to wait for a reply (and to connect) by default.
    """

    def __init__(self, url: str, *, secret: str | None, max_size: int, timeout: float) -> None:
        self.url = url
        self.secret = secret
        self.max_size = max_size
        self.timeout = timeout
        self.closed = False
        self._ids = itertools.count(1)

    @abstractmethod
    async def exchange(self, text: str, request_id: int, timeout: float) -> Any:
        """Send one request text and return its reply, parsed from JSON (on the loop).

        Raises :class:`berrymq.ConnectionClosed` when the peer is gone and
        :class:`berrymq.TransportError` for other failures, including no answer within
        ``timeout`` seconds.
        """

    async def alive(self) -> bool:
        """Whether the peer may still be there (on the loop): False only when it is known
        gone. A connection-oriented channel notices a closed connection by itself, so this
        says True; a channel without a standing connection (HTTP) looks."""
        return not self.closed

    @abstractmethod
    async def aclose(self) -> None:
        """Close the sockets (idempotent, on the loop); pending requests fail with
        :class:`berrymq.ConnectionClosed`."""

    def close(self) -> None:
        """Close the channel from any thread (idempotent)."""
        if io_loop.in_loop():
            io_loop.loop.create_task(self.aclose())
            return
        try:
            io_loop.run(self.aclose(), self.timeout)
        except (TimeoutError, RuntimeError):
            logger.debug("closing the channel to %s took too long", self.url)

    def _request(self, method: str, params: Mapping[str, Any]) -> tuple[str, int]:
        params = dict(params)
        if self.secret is not None:
            params[p.PARAM_SECRET] = self.secret
        request_id = next(self._ids)
        text = encode_request(method, params, request_id)
        if len(text) > self.max_size:
            raise MessageTooLarge(
                f"a {method} request of {len(text)} bytes is over the limit of "
                f"{self.max_size} bytes; it was not sent"
            )
        return text, request_id

    async def acall(self, method: str, params: Mapping[str, Any],
                    timeout: float | None = None) -> Any:
        """Call ``method`` on the peer (on the loop) and return its result, or raise its
        error as a berryMQ exception (:func:`berrymq_jsonrpc.jsonrpc.error_for`)."""
        text, request_id = self._request(method, params)
        reply = await self.exchange(text, request_id, self.timeout if timeout is None else timeout)
        return parse_reply(reply, request_id)

    def call(self, method: str, params: Mapping[str, Any], timeout: float | None = None) -> Any:
        """:meth:`acall` for a synchronous caller: waits at most about ``timeout``."""
        wait = self.timeout if timeout is None else timeout
        try:
            return io_loop.run(self.acall(method, params, wait), wait + _GRACE)
        except TimeoutError:
            raise TransportError(f"{self.url} did not answer within {wait:g}s") from None

    async def send_messages(self, token: str, texts: list[str], timeout: float | None = None) -> None:
        """Send already encoded messages in one ``send_messages`` request (on the loop)."""
        params: dict[str, Any] = {"token": token, "messages": []}
        if self.secret is not None:
            params[p.PARAM_SECRET] = self.secret
        request_id = next(self._ids)
        envelope = encode_request(p.METHOD_SEND_MESSAGES, params, request_id)
        # "messages":[] is the first occurrence: only the token (URL-safe text) precedes it
        text = envelope.replace('"messages":[]', '"messages":[' + ",".join(texts) + "]", 1)
        reply = await self.exchange(text, request_id, self.timeout if timeout is None else timeout)
        parse_reply(reply, request_id)


class _Marker:
    """A flush marker in the outbox: set once everything before it was handed over."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class Outbox:
    """Sends encoded messages from a task on the I/O loop, coalescing them into batches.

    Bounded in count and in bytes (the message text waiting): a sender beyond either bound
    waits up to ``block_timeout`` seconds for room, then gets :class:`berrymq.QueueFull`
    naming the setting (``outbox_size``, ``outbox_bytes``); nothing is dropped to make
    room. Room is made as the loop takes a batch out to send it, so at most one batch more
    is held, on its way. The byte count is kept without a lock: the senders add with
    ``+=`` and the loop subtracts, each a single step under CPython's GIL.

    A peer that refuses some messages of a batch (a full queue:
    :class:`~berrymq_jsonrpc.jsonrpc.PeerQueueFull`) does not stop the outbox: the refused
    ones are counted (:attr:`refused`), reported to ``on_refused`` and to the next
    :meth:`flush`, which raises ``QueueFull`` saying how many; the rest keeps flowing.

    :param sink: ``await sink(texts)`` sends one batch and returns when the peer
        acknowledged it, or raises.
    :param max_bytes: the largest message text accepted (the size limit of a request,
        less the envelope).
    :param on_failure: called once, on the loop, with the first exception and how many
        messages it lost; it must not block. Later messages are counted as lost.
    :param limit: how many messages may wait (setting ``outbox_size``).
    :param byte_limit: how many bytes of message text may wait (setting ``outbox_bytes``);
        a message alone in the outbox is taken whatever its size.
    :param block_timeout: how long a sender waits for room (setting ``outbox_wait``).
    :param batch_bytes: the most message text in one batch (a larger message goes alone).
    :param on_refused: called on the loop with the peer's refusal and how many messages
        of the batch it refused; it must not block.
    """

    def __init__(
        self,
        sink: Callable[[list[str]], Awaitable[None]],
        *,
        max_bytes: int,
        on_failure: Callable[[BaseException, int], None],
        name: str,
        limit: int = DEFAULT_OUTBOX_SIZE,
        byte_limit: int = DEFAULT_OUTBOX_BYTES,
        block_timeout: float = 10.0,
        batch_bytes: int = BATCH_BYTES,
        on_refused: Callable[[QueueFull, int], None] | None = None,
    ) -> None:
        self._sink = sink
        self.max_bytes = max_bytes
        self.batch_bytes = min(batch_bytes, max_bytes)
        self._on_failure = on_failure
        self._on_refused = on_refused
        self.name = name
        self.limit = limit
        self.byte_limit = byte_limit
        self.block_timeout = block_timeout
        self._items: collections.deque[str | _Marker] = collections.deque()
        #: bytes of message text waiting in the outbox (not counting the batch on its way)
        self.queued_bytes = 0
        self.failure: BaseException | None = None
        self.sent = 0
        self.batches = 0
        #: messages not sent: the connection failed or closed with them waiting
        self.lost = 0
        #: messages the peer refused (a full queue), and the last refusal
        self.refused = 0
        self.refusal: QueueFull | None = None
        self._refused_flushed = 0  # self.refused at the last flush that reported it
        self._room = threading.Condition(threading.Lock())
        self._stopped = False
        self._idle = False
        self._sending = False  # a batch is written and not yet acknowledged
        self._wake = asyncio.Event()
        self._task = io_loop.submit(self._run())

    @property
    def pending(self) -> int:
        """How many messages wait to be sent (the node's status shows it)."""
        return sum(1 for item in list(self._items) if type(item) is str)

    @property
    def losses(self) -> dict[str, int]:
        """The messages this outbox did not deliver, by reason (those with a count)."""
        reasons = {REFUSED: self.refused, NOT_SENT: self.lost}
        return {reason: count for reason, count in reasons.items() if count}

    def _kick(self) -> None:
        if self._idle:
            self._idle = False
            io_loop.call_soon(self._wake.set)

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(f"{self.name}: the connection is closed"
                                + (f" ({self.failure})" if self.failure else ""))

    def put(self, text: str) -> None:
        """Queue one encoded message (the sender's path: no lock unless over a bound)."""
        if self.failure is not None or self._stopped:
            raise self._closed_error()
        size = len(text)
        if size > self.max_bytes:
            raise MessageTooLarge(
                f"a message of {size} bytes of JSON is over the size limit of "
                f"{self.max_bytes} bytes (setting max_size, less {_ENVELOPE} for the "
                "request around it); it was not sent"
            )
        if len(self._items) >= self.limit or (
                self.queued_bytes and self.queued_bytes + size > self.byte_limit):
            self._wait_for_room(size)
        self.queued_bytes += size  # before the append: the loop never takes it uncounted
        self._items.append(text)
        self._kick()

    def _full(self, size: int) -> bool:
        return len(self._items) >= self.limit or (
            self.queued_bytes > 0 and self.queued_bytes + size > self.byte_limit)

    def _full_error(self, size: int, waited: float) -> QueueFull:
        if len(self._items) >= self.limit:
            bound = f"{self.limit} messages wait to be sent (setting outbox_size)"
        else:
            bound = (f"{self.queued_bytes} bytes wait to be sent and {size} more would go "
                     f"over {self.byte_limit} (setting outbox_bytes)")
        took = (f"no room came within {waited:g}s (setting outbox_wait)" if waited
                else "a sender on the I/O loop cannot wait for room")
        return QueueFull(f"{self.name}: {bound}; {took}; this message was not sent")

    def _wait_for_room(self, size: int) -> None:
        if io_loop.in_loop():
            raise self._full_error(size, 0)
        deadline = time.monotonic() + self.block_timeout
        with self._room:
            while self._full(size) and self.failure is None and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._full_error(size, self.block_timeout)
                self._room.wait(left)
        if self.failure is not None or self._stopped:
            raise self._closed_error()

    def flush(self, timeout: float | None = None, *, report: bool = True) -> bool:
        """Wait until everything queued so far was sent and acknowledged; False on
        timeout. Raises the failure that stopped the outbox, if any, and (``report``)
        :class:`berrymq.QueueFull` when the peer refused messages since the last flush
        that reported (the outbox goes on)."""
        if self.failure is None and not self._task.done():
            if not self._items and not self._sending:
                done = True  # nothing queued, nothing on its way: no round trip to the loop
            elif io_loop.in_loop():
                done = not self._items
            else:
                marker = _Marker()
                self._items.append(marker)
                self._kick()
                done = marker.event.wait(timeout)
        else:
            done = True
        if self.failure is not None:
            raise ConnectionClosed(f"{self.name}: {self.failure}") from self.failure
        refused = self.refused - self._refused_flushed
        if refused and report:
            self._refused_flushed += refused
            raise QueueFull(f"{self.name}: the peer refused {refused} message(s) sent since "
                            f"the last flush ({self.refusal}); the others were delivered")
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (waiting at most ``timeout``; not at all on the loop),
        then stop the task."""
        if self._stopped:
            return
        if timeout > 0 and not io_loop.in_loop():
            with contextlib.suppress(ConnectionClosed, QueueFull):
                self.flush(timeout)
        self._stopped = True
        self._task.cancel()
        self._drop_rest()
        with self._room:
            self._room.notify_all()

    async def _run(self) -> None:
        items = self._items
        popleft = items.popleft
        try:
            while True:
                if not items:
                    self._sending = False
                    self._idle = True
                    if not items:
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    self._idle = False
                self._sending = True  # before the pop: flush never sees neither
                item = popleft()
                if type(item) is _Marker:
                    item.event.set()
                    continue
                assert type(item) is str
                batch = [item]
                size = len(item)
                budget = self.batch_bytes
                while items and type(items[0]) is str and size + len(items[0]) + 1 <= budget:
                    text = popleft()
                    assert type(text) is str
                    batch.append(text)
                    size += len(text) + 1
                self.queued_bytes -= size - len(batch) + 1
                self._notify_room()
                await self._send(batch)
        finally:
            self._drop_rest()

    def _notify_room(self) -> None:
        if len(self._items) < self.limit:
            with self._room:
                self._room.notify_all()

    async def _send(self, batch: list[str]) -> None:
        if self.failure is not None:
            self.lost += len(batch)
            return
        try:
            await self._sink(batch)
            self.sent += len(batch)
            self.batches += 1
        except asyncio.CancelledError:
            self.lost += len(batch)
            raise
        except PeerQueueFull as exc:
            # some (or all) were refused by a full queue of the peer: not a broken
            # connection; the others were delivered
            indexes = exc.refused
            count = len(batch) if indexes is None else min(len(indexes), len(batch))
            self.sent += len(batch) - count
            self.batches += 1
            self.refused += count
            self.refusal = exc
            if self._on_refused is not None:
                try:
                    self._on_refused(exc, count)
                except Exception:
                    logger.exception("%s: reporting a refusal failed", self.name)
        except Exception as exc:  # noqa: BLE001 - reported through on_failure
            self.failure = exc
            self.lost += len(batch)
            self._drop_rest()
            try:
                self._on_failure(exc, len(batch))
            except Exception:
                logger.exception("%s: reporting a failure failed", self.name)
            with self._room:
                self._room.notify_all()

    def _drop_rest(self) -> None:
        items = self._items
        while items:
            try:
                item = items.popleft()
            except IndexError:
                break
            if type(item) is str:
                self.lost += 1
                self.queued_bytes -= len(item)
            else:
                assert type(item) is _Marker
                item.event.set()
        if self.lost and self.failure is None and self._stopped:
            logger.error("%s: closed with %d messages not sent", self.name, self.lost)


class Link(base.Link):
    """A JSON-RPC link to one peer (the forwarder of an interconnection, and what every
    style sends and asks through): messages go in ``send_messages`` batches.

    :param channel: the channel to the peer.
    :param token: the token the peer gave (or, over TCP back-channels, the one the peer
        asked to be called with).
    :param on_dead: called once (on the loop) when sending failed; the owner closes the
        connection. It must not block.
    :param outbox_size: the bound of the outbox in messages (:class:`Outbox`).
    :param outbox_bytes: the bound of the outbox in bytes of message text.
    :param outbox_wait: how long a sender waits for room in a full outbox.

    Messages the peer refuses (a full queue there) are counted in :attr:`Outbox.refused`
    and in the node's ``/status`` (``lost``, reason ``refused: queue full``), logged once
    per burst, and raised by the next :meth:`flush`; the link stays open.
    """

    def __init__(self, channel: Channel, token: str, name: str,
                 on_dead: Callable[[BaseException], None] | None = None, *,
                 owns_channel: bool = False, outbox_size: int = DEFAULT_OUTBOX_SIZE,
                 outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
                 outbox_wait: float = 10.0) -> None:
        self.channel = channel
        self.address = channel.url
        self.token = token
        self.name = name
        self.owns_channel = owns_channel
        self.session: Session | None = None  # the local session this link belongs to
        self._on_dead = on_dead
        self.outbox = Outbox(self._send_batch, max_bytes=channel.max_size - _ENVELOPE,
                             on_failure=self._failed, name=name, limit=outbox_size,
                             byte_limit=outbox_bytes, block_timeout=outbox_wait,
                             on_refused=self._refused)
        self.closed = False
        self.stats: NodeStats | None = None  # stats: set by the transport that owns the link
        #: the peer's refusals are logged once per burst, with a count
        self._refusals = BurstLog(logger)

    async def _send_batch(self, texts: list[str]) -> None:
        await self.channel.send_messages(self.token, texts)
        session = self.session
        if session is not None:
            session.touch()  # traffic either way keeps the interconnection alive

    def _refused(self, exc: QueueFull, count: int) -> None:
        if self.stats is not None:  # stats
            self.stats.lost(REFUSED, count)
        self._refusals.warning("%s: %s refused %d message(s) (%s); %d refused on this "
                          "connection so far, which stays open", self.name, self.channel.url,
                          count, exc, self.outbox.refused)

    def _failed(self, exc: BaseException, lost: int) -> None:
        logger.error("%s: could not forward %d message(s) to %s: %s; the link is closed",
                     self.name, lost, self.channel.url, exc)
        callback = self._on_dead
        if callback is not None:
            callback(exc)

    async def probe(self) -> None:
        """Liveness (on the loop, from the service's sweeper): when the peer is known gone,
        close the link as a failed send would, without waiting for the next message."""
        if self.closed or await self.channel.alive() or self.closed:
            return
        logger.warning("%s: %s is gone (liveness check); the link is closed", self.name,
                       self.channel.url)
        callback = self._on_dead
        if callback is not None:
            callback(ConnectionClosed(f"{self.channel.url} is gone (liveness check)"))

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Queue ``message`` for the peer (with ``reply_to`` for :func:`berrymq.talk`)."""
        self.outbox.put(encode_message(message, reply_to))
        if self.stats is not None:  # stats
            self.stats.message_out(message[0], self.channel.url)

    def send_batch(self, messages: Sequence[Message], reply_to: Identifier | None = None) -> None:
        """Queue ``messages`` for the peer, in order."""
        put = self.outbox.put
        stats = self.stats
        for message in messages:
            put(encode_message(message, reply_to))
            if stats is not None:  # stats
                stats.message_out(message[0], self.address)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the peer acknowledged everything queued so far (see
        :meth:`Outbox.flush`)."""
        return self.outbox.flush(timeout)

    def request(self, message: Message, timeout: float) -> list[Any]:
        """Ask the peer's receivers (the ``ask`` method) and return their replies."""
        # messages sent before the question arrive before it (refusals among them are for
        # the sender's next flush to report, not for this question)
        self.outbox.flush(timeout, report=False)
        params: dict[str, Any] = {
            "identifier": str(message[0]), "args": list(message[1]), "kwargs": message[2],
            "timeout": timeout, "token": self.token,
        }
        if message[4] is not None:
            params["uid"] = message[4]
        if message[3]:
            params["hops"] = message[3]
        result = self.channel.call(p.METHOD_ASK, params, timeout=timeout)
        return decode_replies(result, self.channel.url)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop (idempotent); the channel is the owner's unless
        ``owns_channel``."""
        if self.closed:
            return
        self.closed = True
        self.outbox.close(timeout)
        if self.stats is not None:  # stats: what the outbox could not send
            self.stats.lost(NOT_SENT, self.outbox.lost)
        if self.owns_channel:
            self.channel.close()

    def __repr__(self) -> str:
        return f"<Link {self.name} -> {self.channel.url}>"

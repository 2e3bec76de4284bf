"""The client side of the protocol, for any transport: channels, the outbox and links.

- A :class:`Channel` carries requests to one peer and brings back the replies; each
  transport plugin subclasses it with its sockets (:meth:`Channel.exchange`).
- An :class:`Outbox` coalesces messages sent in quick succession: a background thread
  sends at once when it is idle, and while a batch is on its way (written and not yet
  acknowledged) it gathers what comes in into the next ``send_messages`` request. So a
  lone message has the latency of one round trip, and a stream of them goes out in a few
  large requests. Each message is encoded to JSON by the sender, so a message that JSON
  cannot hold, or that is over the size limit, is refused at the call that sent it.
- A :class:`Link` is the forwarder of style 01: the bus hands it every non-local message
  (and :func:`berrymq.ask` requests), it sends them to the peer with the peer's token.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from berrymq.errors import ConnectionClosed, MessageTooLarge, ReplyError, TransportError
from berrymq.identifier import Identifier
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import dumps, encode_request, parse_reply

if TYPE_CHECKING:
    from berrymq.message import Message
    from berrymq_jsonrpc.service import Session
    from berrymq_jsonrpc.stats import NodeStats

__all__ = [
    "Channel",
    "Link",
    "Outbox",
    "decode_replies",
    "encode_message",
]

logger = logging.getLogger("berrymq.remote")

#: Room left in a request for everything around the messages (method, token, secret, id).
_ENVELOPE = 512


def encode_message(message: Message, reply_to: Identifier | None = None, *,
                   extras: bool = True) -> str:
    """The wire form of a message, ``[identifier, args, kwargs(, extras)]``, as JSON text.

    Raises ``TypeError``/``ValueError`` naming the message when JSON cannot hold it.
    """
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
    """Requests to one peer and their replies.

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
    def exchange(self, text: str, request_id: int, timeout: float) -> Any:
        """Send one request text and return its reply, parsed from JSON.

        Raises :class:`berrymq.ConnectionClosed` when the peer is gone and
        :class:`berrymq.TransportError` (or ``TimeoutError``) for other failures.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the sockets (idempotent); pending requests fail with ConnectionClosed."""

    def call(self, method: str, params: Mapping[str, Any], timeout: float | None = None) -> Any:
        """Call ``method`` on the peer and return its result, or raise its error as a
        berryMQ exception (:func:`berrymq_jsonrpc.jsonrpc.error_for`)."""
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
        reply = self.exchange(text, request_id, self.timeout if timeout is None else timeout)
        return parse_reply(reply, request_id)

    def send_messages(self, token: str, texts: list[str], timeout: float | None = None) -> None:
        """Send already encoded messages in one ``send_messages`` request."""
        params: dict[str, Any] = {"token": token, "messages": []}
        if self.secret is not None:
            params[p.PARAM_SECRET] = self.secret
        request_id = next(self._ids)
        envelope = encode_request(p.METHOD_SEND_MESSAGES, params, request_id)
        # "messages":[] is the first occurrence: only the token (URL-safe text) precedes it
        text = envelope.replace('"messages":[]', '"messages":[' + ",".join(texts) + "]", 1)
        reply = self.exchange(text, request_id, self.timeout if timeout is None else timeout)
        parse_reply(reply, request_id)


_STOP = object()


class Outbox:
    """Sends encoded messages from a background thread, coalescing them into batches.

    :param sink: ``sink(texts)`` sends one batch and returns when the peer acknowledged
        it, or raises.
    :param max_bytes: the most message text in one batch.
    :param on_failure: called once, in the outbox's thread, with the first exception
        and how many messages it lost; later messages are counted and logged as lost.
    :param limit: how many messages may wait; a sender beyond it waits up to
        ``block_timeout`` seconds for room, then gets :class:`berrymq.TransportError`.
    """

    def __init__(
        self,
        sink: Callable[[list[str]], None],
        *,
        max_bytes: int,
        on_failure: Callable[[BaseException, int], None],
        name: str,
        limit: int = 100_000,
        block_timeout: float = 10.0,
    ) -> None:
        self._sink = sink
        self.max_bytes = max_bytes
        self._on_failure = on_failure
        self.name = name
        self.limit = limit
        self.block_timeout = block_timeout
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.failure: BaseException | None = None
        self.sent = 0
        self.batches = 0
        self.lost = 0
        self._room = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"berrymq-outbox-{name}",
                                         daemon=True)
        self._thread.start()

    def put(self, text: str) -> None:
        """Queue one encoded message (the sender's path: no lock unless over the limit)."""
        if self.failure is not None or self._stopped:
            raise ConnectionClosed(f"{self.name}: the connection is closed"
                                   + (f" ({self.failure})" if self.failure else ""))
        if len(text) > self.max_bytes:
            raise MessageTooLarge(
                f"a message of {len(text)} bytes of JSON is over the size limit of "
                f"{self.max_bytes} bytes; it was not sent"
            )
        q = self._queue
        if q.qsize() >= self.limit:
            self._wait_for_room()
        q.put(text)

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + self.block_timeout
        with self._room:
            while self._queue.qsize() >= self.limit and self.failure is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransportError(
                        f"{self.name}: {self.limit} messages wait to be sent and the peer "
                        f"took none in {self.block_timeout:g}s; this message was not sent"
                    )
                self._room.wait(min(left, 0.05))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far was sent and acknowledged; False on
        timeout. Raises the failure that stopped the outbox, if any."""
        if not self._thread.is_alive():
            done = True
        else:
            marker = threading.Event()
            self._queue.put(marker)
            done = marker.wait(timeout)
        if self.failure is not None:
            raise ConnectionClosed(f"{self.name}: {self.failure}") from self.failure
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (waiting at most ``timeout``), then stop the thread."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        carry: object = None
        while True:
            item = carry if carry is not None else get()
            carry = None
            if item is _STOP:
                self._drop_rest()
                return
            if type(item) is not str:
                item.set()  # type: ignore[attr-defined]  # a flush marker
                continue
            batch = [item]
            size = len(item)
            budget = self.max_bytes
            while True:
                try:
                    more = get_nowait()
                except queue.Empty:
                    break
                if type(more) is not str or size + len(more) + 1 > budget:
                    carry = more
                    break
                batch.append(more)
                size += len(more) + 1
            self._send(batch)
            if self.limit and self._queue.qsize() < self.limit:
                with self._room:
                    self._room.notify_all()

    def _send(self, batch: list[str]) -> None:
        if self.failure is not None:
            self.lost += len(batch)
            return
        try:
            self._sink(batch)
            self.sent += len(batch)
            self.batches += 1
        except Exception as exc:  # noqa: BLE001 - reported through on_failure
            self.failure = exc
            self.lost += len(batch)
            try:
                self._on_failure(exc, len(batch))
            except Exception:
                logger.exception("%s: reporting a failure failed", self.name)
            with self._room:
                self._room.notify_all()

    def _drop_rest(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if type(item) is str:
                self.lost += 1
            elif item is not _STOP:
                item.set()  # type: ignore[attr-defined]
        if self.lost and self.failure is None:
            logger.error("%s: closed with %d messages not sent", self.name, self.lost)


class Link:
    """The forwarder of an interconnection: sends this bus's messages to one peer.

    :param channel: the channel to the peer.
    :param token: the token the peer gave (or, over TCP back-channels, the one the peer
        asked to be called with).
    :param on_dead: called once when sending failed; the owner closes the connection.
    """

    def __init__(self, channel: Channel, token: str, name: str,
                 on_dead: Callable[[BaseException], None] | None = None, *,
                 owns_channel: bool = False) -> None:
        self.channel = channel
        self.token = token
        self.name = name
        self.owns_channel = owns_channel
        self.session: Session | None = None  # the local session this link belongs to
        self._on_dead = on_dead
        self.outbox = Outbox(self._send_batch, max_bytes=channel.max_size - _ENVELOPE,
                             on_failure=self._failed, name=name)
        self.closed = False
        self.stats: NodeStats | None = None  # stats: set by the transport that owns the link

    def _send_batch(self, texts: list[str]) -> None:
        self.channel.send_messages(self.token, texts)
        session = self.session
        if session is not None:
            session.touch()  # traffic either way keeps the interconnection alive

    def _failed(self, exc: BaseException, lost: int) -> None:
        logger.error("%s: could not forward %d message(s) to %s: %s; the link is closed",
                     self.name, lost, self.channel.url, exc)
        callback = self._on_dead
        if callback is not None:
            callback(exc)

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Queue ``message`` for the peer (with ``reply_to`` for :func:`berrymq.talk`)."""
        self.outbox.put(encode_message(message, reply_to))
        if self.stats is not None:  # stats
            self.stats.message_out(message[0], self.channel.url)

    def request(self, message: Message, timeout: float) -> list[Any]:
        """Ask the peer's receivers (the ``ask`` method) and return their replies."""
        self.outbox.flush(timeout)  # messages sent before the question arrive before it
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
        """Send what is queued, then stop (idempotent); the channel is the owner's."""
        if self.closed:
            return
        self.closed = True
        self.outbox.close(timeout)
        if self.stats is not None:  # stats: what the outbox could not send
            self.stats.lost("not sent: connection failed or closed", self.outbox.lost)
        if self.owns_channel:
            self.channel.close()

    def __repr__(self) -> str:
        return f"<Link {self.name} -> {self.channel.url}>"

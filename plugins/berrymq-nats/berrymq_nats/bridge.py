"""The bridge between one bus and a NATS server or cluster.

``nats-py`` is asyncio-only and berryMQ is synchronous, so each bridge owns an event loop
running in a background thread (``berrymq-nats``). The way of a message:

- **Out**: :meth:`NatsBridge.forward` runs in the sender's thread. It encodes the message
  (JSON), appends it to a deque and, only when the loop is not already woken, wakes the
  loop with one ``call_soon_threadsafe``. The loop's publisher task drains the deque into
  ``nats-py``'s write buffer without waiting per message; ``nats-py`` flushes in batches.
  That is one thread hop per message, and no lock.
- **In**: ``nats-py`` calls the subscription callback on the loop thread; it decodes the
  message and hands it to :meth:`Bus.receive <berrymq.Bus.receive>` with this bridge as
  the origin, so it is not sent back. Receivers of messages from NATS therefore run on
  the loop thread (or on the bus's worker pool with ``set_multiplicity``).
- **Disconnected**: while the connection is down, sent messages wait in a buffer of at
  most ``buffer_limit`` messages; past it ``twitter`` raises :class:`BrokerBufferFull`.
  After a reconnect (``nats-py`` re-subscribes by itself) the buffer is sent first.

Shared queues (``Queue(pattern, shared=True)``) subscribe through a NATS queue group per
pattern, so each message reaches one of the processes. A message that a shared queue of
the sending process already took carries that queue's group in its ``taken`` field, and
the member of that group that NATS picks drops it: each message is taken once.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import itertools
import json
import json.scanner
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import OutboundBufferLimitError

from berrymq.errors import ConnectionClosed, QueueFull, ReplyError, TransportError
from berrymq.identifier import Identifier, parse
from berrymq.message import Message
from berrymq.transports.base import Connection
from berrymq_nats.subjects import DEFAULT_PREFIX, SubjectMap, check_prefix, minimize

if TYPE_CHECKING:
    from berrymq.bus import Bus, Subscription

__all__ = ["BrokerBufferFull", "BrokerOptions", "NatsBridge", "from_broker"]

logger = logging.getLogger("berrymq.nats")

_tuple_new = tuple.__new__


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One C encoder and one C scanner, made once: json.dumps/json.loads would make an encoder
# per call, and check for trailing text with a regular expression.
_encoder = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, True
) if json.encoder.c_make_encoder is not None else None  # type: ignore[attr-defined]
_scanner = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _dumps(value: Any) -> str:
    """Compact JSON text (non-ASCII kept as is)."""
    if _encoder is None:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_not_json)
    return "".join(_encoder(value, 0))


def _loads(data: bytes) -> Any:
    """The JSON value at the start of ``data`` (UTF-8)."""
    try:
        value, _ = _scanner(data.decode(), 0)
    except StopIteration:
        raise ValueError(f"not JSON: {data[:60]!r}") from None
    return value

#: How many request ids a responder remembers to answer each request once.
_SEEN_REQUESTS = 10_000


class BrokerBufferFull(TransportError, QueueFull):
    """NATS is unreachable and ``buffer_limit`` messages already wait: this one was
    refused (not sent, not stored). Also a :class:`berrymq.QueueFull`, so the bus raises
    it from the sending call instead of only logging it."""


class _FromBroker(dict):  # type: ignore[type-arg]
    """The keyword arguments of a message that came in through NATS's fan-out.

    Only used for messages that match a local shared queue: its guard refuses them, as
    a shared queue takes messages from other processes through its queue group alone.
    """

    __slots__ = ()


def from_broker(message: Message) -> bool:
    """Whether ``message`` came in through a plain NATS subscription (see ``_FromBroker``)."""
    return type(message[2]) is _FromBroker


def _shared_queue_guard(message: Message) -> bool:
    # Installed on shared queues' subscriptions while the bridge runs (see from_broker).
    return type(message[2]) is not _FromBroker


@dataclass(frozen=True)
class BrokerOptions:
    """How to reach NATS and how the bridge behaves; the keys of ``[berrymq.nats]``.

    :param servers: NATS URLs (``nats://host:port``); several for a cluster.
    :param token: an authentication token.
    :param user: a user name (with ``password``).
    :param password: the user's password.
    :param credentials: the path of a NATS ``.creds`` file (JWT and NKey).
    :param subject_prefix: the first token(s) of every subject (see ``subjects``).
    :param connect_timeout: seconds to wait for a connection to one server.
    :param reconnect_wait: seconds between reconnection attempts to one server.
    :param max_reconnect_attempts: attempts per server before giving up; -1 never gives up.
    :param buffer_limit: how many messages may wait while NATS is unreachable.
    :param ask_gather: seconds to wait, after the first responder acknowledged an
        ``ask``, for more responders to acknowledge.
    :param name: the client name shown by the NATS server's monitoring.
    """

    servers: tuple[str, ...]
    token: str | None = None
    user: str | None = None
    password: str | None = None
    credentials: str | None = None
    subject_prefix: str = DEFAULT_PREFIX
    connect_timeout: float = 2.0
    reconnect_wait: float = 0.5
    max_reconnect_attempts: int = -1
    buffer_limit: int = 10_000
    ask_gather: float = 0.1
    name: str | None = None

    @classmethod
    def build(cls, servers: str | list[str] | tuple[str, ...], options: Mapping[str, Any]) -> BrokerOptions:
        """Check and convert ``servers`` and ``options``; errors name the bad option."""
        known = {f.name for f in fields(cls)} - {"servers"}
        for key in options:
            if key not in known:
                raise TypeError(
                    f"unknown NATS option {key!r}; known options: {', '.join(sorted(known))}"
                )
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        urls = tuple(servers)
        if not urls:
            raise ValueError("give at least one NATS server URL, e.g. 'nats://127.0.0.1:4222'")
        for url in urls:
            if not isinstance(url, str) or "://" not in url or url.split("://", 1)[0] not in (
                "nats", "tls", "ws", "wss"
            ):
                raise ValueError(f"NATS server {url!r} is not a URL like 'nats://host:4222'")
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key in ("token", "user", "password", "credentials", "name", "subject_prefix"):
                if not isinstance(value, str):
                    raise TypeError(f"NATS option {key} must be a string, got {value!r}")
            elif key in ("connect_timeout", "reconnect_wait", "ask_gather"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"NATS option {key} must be a positive number, got {value!r}")
                values[key] = float(value)
                continue
            elif key in ("buffer_limit", "max_reconnect_attempts"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"NATS option {key} must be an integer, got {value!r}")
                if key == "buffer_limit" and value < 0:
                    raise ValueError(f"NATS option buffer_limit must be 0 or more, got {value}")
            values[key] = value
        check_prefix(values.get("subject_prefix", DEFAULT_PREFIX))
        return cls(servers=urls, **values)


class _Direct:
    """Stands in for a ``nats-py`` subscription's pending queue: hands each message to
    the bridge at once, in the client's reading task.

    ``nats-py`` normally gives every subscription its own queue and task, so messages on
    different subjects could be delivered out of the order they were published in. With
    this, every subscription of the bridge delivers in wire order, and without a task
    switch per message. The handler must not raise.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[Msg], None]) -> None:
        self.handler = handler

    def put_nowait(self, msg: Msg) -> None:
        self.handler(msg)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        return None


class _AskWaiter:
    """Collects the answers to one ``ask`` sent through NATS (filled by the loop thread).

    Each responding process first acknowledges (at once, from its loop thread), then sends
    its receivers' replies. The waiter is done when no process has subscribers (NATS
    answers "no responders"), or when ``gather`` seconds have passed since the first
    acknowledgement and every process that acknowledged has replied.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.acked: dict[str, None] = {}
        self.replies: dict[str, list[Any]] = {}
        self.first_ack: float | None = None
        self.no_responders = False

    def ack(self, node: str) -> None:
        with self.cond:
            if self.first_ack is None:
                self.first_ack = time.monotonic()
            self.acked.setdefault(node, None)
            self.cond.notify_all()

    def reply(self, node: str, replies: list[Any]) -> None:
        with self.cond:
            self.acked.setdefault(node, None)
            self.replies[node] = replies
            self.cond.notify_all()

    def none(self) -> None:
        with self.cond:
            self.no_responders = True
            self.cond.notify_all()

    def wait(self, timeout: float, gather: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                now = time.monotonic()
                if self.no_responders and not self.acked:
                    return []
                wake = deadline
                if self.first_ack is not None:
                    gathered = self.first_ack + gather
                    if now >= gathered and all(n in self.replies for n in self.acked):
                        break
                    if now < gathered:
                        wake = min(wake, gathered)
                if now >= deadline:
                    break
                self.cond.wait(wake - now)
            if not self.acked:
                raise TimeoutError(f"no process answered through NATS within {timeout:g}s")
            result: list[Any] = []
            for node in self.acked:
                got = self.replies.get(node)
                if got is None:
                    result.append(ReplyError(
                        "TimeoutError", f"no reply within {timeout:g}s", "nats", node
                    ))
                else:
                    result.extend(got)
            return result


def _encode_reply(value: Any) -> Any:
    if isinstance(value, ReplyError):
        return {"e": value.to_json()}
    return {"v": value}


def _decode_reply(item: Any) -> Any:
    if isinstance(item, dict) and "e" in item:
        return ReplyError.from_json(item["e"])
    return item.get("v") if isinstance(item, dict) else item


class NatsBridge(Connection):
    """One bus's link to NATS: a forwarder (and requester) on the bus, a listener of its
    subscriptions, and a ``nats-py`` client on a private event loop thread.

    Created by :meth:`berrymq_nats.transport.NatsTransport.connect_broker`; ``close()``
    sends what waits, unsubscribes and disconnects.
    """

    style = "broker"

    def __init__(self, bus: Bus, options: BrokerOptions, *, subscribe: bool = True) -> None:
        self.bus = bus
        self.options = options
        self.address = ",".join(options.servers)
        self.subscribe_enabled = subscribe
        self.subjects = SubjectMap(options.subject_prefix)
        self.state = "connecting"
        self.last_error: str | None = None
        self.reconnects = 0
        self.closed = False
        # -- out: sender threads append, the loop's publisher drains ----------------------
        self._out: collections.deque[tuple[str, bytes, str]] = collections.deque()
        self._wake_pending = False
        self._connected = False
        self._held: list[tuple[str, bytes, str]] = []
        self._held_lock = threading.Lock()
        self._sent_while_down = 0
        # -- shared queues: resolved lazily after each subscription change -----------------
        self._dirty = True
        self._shared_lock = threading.Lock()
        self._shared: tuple[tuple[Subscription, str, Identifier], ...] = ()
        self._guarded: list[Subscription] = []
        self._taken: dict[Identifier, tuple[str, ...]] = {}
        self._marks: dict[Identifier, bool] = {}
        # -- ask ----------------------------------------------------------------------------
        self._asks: dict[str, _AskWaiter] = {}
        self._ask_ids = itertools.count()
        self._seen_requests: dict[str, None] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="berrymq-nats-ask")
        # -- the loop -------------------------------------------------------------------------
        self._nc: Client | None = None
        self._inbox = ""
        self._plain: dict[str, NatsSubscription] = {}
        self._queued: dict[tuple[str, str], NatsSubscription] = {}
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="berrymq-nats", daemon=True)
        self._thread.start()
        self._wake_event = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._sync_scheduled = False
        self._tasks: list[asyncio.Future[Any]] = []
        asyncio.run_coroutine_threadsafe(self._start_tasks(), self._loop).result()
        bus.add_subscription_listener(self._subscriptions_changed)
        bus.add_forwarder(self)
        _live.add(self)

    # -- life cycle -------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _start_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._publisher()), loop.create_task(self._connect())]

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the first connection is made; False if ``timeout`` passed first."""
        return self._ready.wait(timeout)

    async def _connect(self) -> None:
        opts = self.options
        kwargs: dict[str, Any] = {
            "servers": list(opts.servers),
            "no_echo": True,
            "allow_reconnect": True,
            "connect_timeout": opts.connect_timeout,
            "reconnect_time_wait": opts.reconnect_wait,
            "max_reconnect_attempts": opts.max_reconnect_attempts,
            "skip_subject_validation": True,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
            "error_cb": self._on_error,
            "name": opts.name or f"berrymq {self.bus.name} {self.bus.node_id}",
        }
        for key in ("token", "user", "password"):
            if getattr(opts, key) is not None:
                kwargs[key] = getattr(opts, key)
        if opts.credentials is not None:
            kwargs["user_credentials"] = opts.credentials
        attempts = 0
        while not self.closed:
            attempts += 1
            try:
                nc = await nats.connect(**kwargs)
            except Exception as exc:  # noqa: BLE001 - reported in the state, then retried
                self.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                self.state = f"connecting (attempt {attempts} failed: {self.last_error})"
                if 0 <= opts.max_reconnect_attempts < attempts:
                    self.state = f"failed: {self.last_error}"
                    logger.error("NATS bridge gave up connecting to %s: %s", self.address,
                                 self.last_error)
                    return
                await asyncio.sleep(opts.reconnect_wait)
                continue
            self._nc = nc
            self._inbox = nc.new_inbox()
            await self._subscribe(f"{self._inbox}.*", "", self._on_answer)
            await self._sync_subscriptions()
            self._resume()
            self.state = "connected"
            self._ready.set()
            return

    def _resume(self) -> None:
        # Loop thread: send what waited while disconnected, before anything newer.
        with self._held_lock:
            held, self._held = self._held, []
            self._connected = True
        if held:
            self._out.extendleft(reversed(held))
        self._wake_event.set()

    async def _on_disconnected(self) -> None:
        self._connected = False
        if not self.closed:
            self.state = "reconnecting"
            logger.warning("NATS bridge of bus %s lost its connection; reconnecting", self.bus.name)

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        self.state = "connected"
        self._resume()
        logger.info("NATS bridge of bus %s reconnected to %s", self.bus.name, self.server)

    async def _on_closed(self) -> None:
        self._connected = False
        if not self.closed:
            self.state = "failed: the NATS client gave up reconnecting"
            logger.error("NATS bridge of bus %s gave up reconnecting to %s", self.bus.name,
                         self.address)

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if type(exc).__name__ == "SlowConsumerError":
            logger.error("NATS dropped messages for a slow consumer on bus %s: %s",
                         self.bus.name, exc)
        elif self._connected:
            logger.warning("NATS bridge of bus %s: %s", self.bus.name, self.last_error)
        else:  # each failed reconnection attempt: the state line shows the last one
            logger.debug("NATS bridge of bus %s: %s", self.bus.name, self.last_error)

    @property
    def server(self) -> str:
        """The URL of the server currently connected to, or '' when disconnected."""
        nc = self._nc
        url = nc.connected_url if nc is not None and nc.is_connected else None
        return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else ""

    def status(self) -> str:
        """One line: the connection state, the server, subscriptions and buffered messages."""
        parts = [self.state]
        if self.server:
            parts.append(f"server {self.server}")
        parts.append(f"{len(self._plain)} subjects, {len(self._queued)} queue-group subscriptions")
        parts.append(f"buffered {len(self._held)}/{self.options.buffer_limit} while disconnected")
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnects")
        if self.last_error and self.state != "connected":
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message sent and every subscription made before this call has
        reached the NATS server (a PING/PONG round trip); False if ``timeout`` seconds
        (default 30) passed first, for instance while NATS is unreachable."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() cannot be called from the NATS bridge's own thread")
        if self.closed:
            return not self._held and not self._out
        timeout = 30.0 if timeout is None else timeout
        future = asyncio.run_coroutine_threadsafe(self._flush(timeout), self._loop)
        try:
            future.result(timeout + 1.0)
        except (FutureTimeout, TimeoutError):
            future.cancel()
            return False
        return True

    async def _flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.is_set() or not self._connected:
            if self.closed or time.monotonic() > deadline:
                raise TimeoutError(f"NATS is not connected ({self.state})")
            await asyncio.sleep(0.01)
        await self._sync_subscriptions()
        await self._pump()
        assert self._nc is not None
        await self._nc.flush(timeout=max(1, math.ceil(deadline - time.monotonic())))

    def close(self) -> None:
        """Send what waits (while connected), unsubscribe and disconnect (idempotent)."""
        if self.closed:
            return
        self.closed = True
        _live.discard(self)
        bus = self.bus
        bus.remove_forwarder(self)
        bus.remove_subscription_listener(self._subscriptions_changed)
        for sub in self._guarded:
            bus.set_guard(sub, None)
        self._guarded = []
        while self in bus.connections():  # tracked once per way it was opened
            bus.untrack_connection(self)
        if threading.current_thread() is self._thread:  # a receiver closes it: no waiting
            task = self._loop.create_task(self._shutdown())
            task.add_done_callback(lambda _: self._loop.stop())
            self._executor.shutdown(wait=False, cancel_futures=True)
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(self.options.connect_timeout + 5.0)
        except Exception as exc:  # noqa: BLE001 - closing goes on regardless
            logger.error("NATS bridge of bus %s did not shut down cleanly: %r", bus.name, exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._held_lock:
            lost = len(self._held) + len(self._out)
            self._held.clear()
            self._out.clear()
        if lost:
            logger.error(
                "NATS bridge of bus %s closed while NATS was unreachable: %d message(s) "
                "were not sent", bus.name, lost,
            )

    async def _shutdown(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        nc = self._nc
        if nc is not None and nc.is_connected:
            try:
                await self._pump()
                await nc.flush(timeout=max(1, int(self.options.connect_timeout)))
            except Exception as exc:  # noqa: BLE001 - reported, closing goes on
                logger.error("NATS bridge of bus %s: last flush failed: %r", self.bus.name, exc)
        if nc is not None and not nc.is_closed:
            await nc.close()
        self._connected = False
        self.state = "closed"
        for task in self._tasks:
            if task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- out ------------------------------------------------------------------------------

    def _encode(self, message: Message, reply_to: Identifier | None, extra: Any = None) -> bytes:
        ident = message[0]
        taken = self._taken.get(ident)
        if taken is None:
            taken = self._compute_taken(ident)
        fields_: list[Any] = [ident._text, message[1], message[2], message[3], message[4]]
        if reply_to is not None or taken or extra is not None:
            fields_.append(None if reply_to is None else str(reply_to))
            fields_.append(taken or None)
            if extra is not None:
                fields_.append(extra)
        try:
            return _dumps(fields_).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"message {ident} cannot be sent through NATS: its arguments must be "
                f"JSON-serialisable ({exc})"
            ) from None

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Publish ``message`` (the bus calls this for every non-local message)."""
        ident = message[0]
        subject = self.subjects._cache.get(ident) or self.subjects.subject(ident)
        self._enqueue((subject, self._encode(message, reply_to), ""), ident)

    def send(self, message: Message) -> None:
        """Publish one message without delivering it locally (``send_message``)."""
        self.forward(self.bus.stamp(message), None)

    def _enqueue(self, item: tuple[str, bytes, str], ident: Identifier | str) -> None:
        if self._connected:
            self._out.append(item)
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self._loop.call_soon_threadsafe(self._wake_event.set)
                except RuntimeError:  # the loop is closed
                    raise ConnectionClosed(f"the NATS bridge to {self.address} is closed") from None
            return
        if self.closed:
            raise ConnectionClosed(f"the NATS bridge to {self.address} is closed")
        with self._held_lock:
            if self._connected:  # reconnected meanwhile
                self._out.append(item)
                self._loop.call_soon_threadsafe(self._wake_event.set)
                return
            limit = self.options.buffer_limit
            if len(self._held) >= limit:
                raise BrokerBufferFull(
                    f"NATS at {self.address} is unreachable ({self.state}) and {limit} "
                    f"messages already wait (buffer_limit = {limit}); message {ident} was "
                    "refused"
                )
            self._held.append(item)

    async def _publisher(self) -> None:
        event = self._wake_event
        while True:
            await event.wait()
            event.clear()
            self._wake_pending = False
            await self._pump()

    async def _pump(self) -> None:
        out = self._out
        nc = self._nc
        if nc is None:
            return
        while out:
            if not nc.is_connected:
                self._hold_out()
                return
            subject, payload, reply = out.popleft()
            try:
                await nc.publish(subject, payload, reply)
            except OutboundBufferLimitError:
                out.appendleft((subject, payload, reply))
                self._hold_out()
                return
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the rest
                logger.error("NATS bridge could not publish on %s: %r", subject, exc)

    def _hold_out(self) -> None:
        # Loop thread: the connection dropped; what was accepted waits for the reconnect
        # (even beyond buffer_limit: it was accepted before the drop was known).
        with self._held_lock:
            self._connected = False
            while self._out:
                self._held.append(self._out.popleft())

    # -- shared queues ----------------------------------------------------------------------

    def _subscriptions_changed(self, subscription: Subscription, added: bool) -> None:
        # Called by the bus, under its lock, in the thread that changed a subscription:
        # only note the change; the loop thread follows it.
        self._dirty = True
        self._taken = {}
        self._marks = {}
        if not self._sync_scheduled and not self.closed:
            self._sync_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._schedule_sync)

    def _schedule_sync(self) -> None:
        self._sync_scheduled = False
        self._loop.create_task(self._sync_subscriptions())

    def _refresh_shared(self) -> None:
        """Find the bus's shared queues and guard them (any thread, outside the bus lock)."""
        from berrymq.receivers import queues

        with self._shared_lock:
            if not self._dirty:
                return
            self._dirty = False
            bus = self.bus
            found: list[tuple[Subscription, str, Identifier]] = []
            for sub in bus.subscriptions():
                if sub.kind != "queue" or sub.pattern.is_local:
                    continue
                owner = getattr(sub.ref(), "__self__", None)
                # The queues plugin registers a shared store after subscribing it, under
                # its lock: taking the lock waits for a Queue being made in another thread.
                with queues._shared_lock:
                    stores = queues._shared.get(bus)
                    shared = stores is not None and stores.get(sub.pattern) is owner
                if shared and owner is not None:
                    found.append((sub, self.subjects.group(sub.pattern), sub.pattern))
                    if sub.guard is None and not self.closed:
                        bus.set_guard(sub, _shared_queue_guard)
                        self._guarded.append(sub)
            self._guarded = [s for s in self._guarded if s.active]
            self._shared = tuple(found)

    def _compute_taken(self, ident: Identifier) -> tuple[str, ...]:
        cache = self._taken
        if self._dirty:
            self._refresh_shared()
            cache = self._taken
        taken = tuple(group for sub, group, pattern in self._shared
                      if sub.active and pattern.matches(ident))
        cache[ident] = taken
        return taken

    def _matches_shared(self, ident: Identifier) -> bool:
        cache = self._marks
        if self._dirty:
            self._refresh_shared()
            cache = self._marks
        marked = any(sub.active and pattern.matches(ident) for sub, _, pattern in self._shared)
        cache[ident] = marked
        return marked

    # -- subscriptions ----------------------------------------------------------------------

    async def _sync_subscriptions(self) -> None:
        """Make the NATS subscriptions follow the bus's (loop thread)."""
        async with self._sync_lock:
            nc = self._nc
            if nc is None or self.closed or not self.subscribe_enabled:
                return
            self._refresh_shared()
            plain: set[str] = set()
            queued: dict[tuple[str, str], Identifier] = {}
            shared_subs = {id(sub) for sub, _, _ in self._shared}
            for sub in self.bus.subscriptions():
                pattern = sub.pattern
                if pattern.is_local:
                    continue
                if id(sub) in shared_subs:
                    group = self.subjects.group(pattern)
                    for subject in self.subjects.interest(pattern):
                        queued[(subject, group)] = pattern
                else:
                    plain.update(self.subjects.interest(pattern))
            plain = minimize(plain)
            for subject in [s for s in self._plain if s not in plain]:
                await self._plain.pop(subject).unsubscribe()
            for key in [k for k in self._queued if k not in queued]:
                await self._queued.pop(key).unsubscribe()
            for subject in sorted(plain - self._plain.keys()):
                self._plain[subject] = await self._subscribe(subject, "", self._on_message)
            for key in sorted(queued.keys() - self._queued.keys()):
                subject, group = key
                self._queued[key] = await self._subscribe(
                    subject, group, self._make_queued_cb(group)
                )

    async def _subscribe(self, subject: str, group: str, handler: Callable[[Msg], None]
                         ) -> NatsSubscription:
        nc = self._nc
        assert nc is not None
        # No pending limits: _Direct holds nothing (a slow receiver slows the reading).
        sub = await nc.subscribe(subject, queue=group, pending_bytes_limit=0)
        if isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue):
            sub._pending_queue = _Direct(handler)  # type: ignore[assignment]
            return sub
        # A nats-py whose internals differ: its own per-subscription task (same results,
        # but messages on different subjects may be reordered).
        await sub.unsubscribe()

        async def callback(msg: Msg) -> None:
            handler(msg)

        return await nc.subscribe(subject, queue=group, cb=callback)

    # -- in -------------------------------------------------------------------------------

    def _on_message(self, msg: Msg) -> None:
        # The hot path of every incoming message (the client's reading task).
        try:
            data = _loads(msg.data)
            ident = parse(data[0])
            kwargs = data[2]
            marked = self._marks.get(ident)
            if marked is None:
                marked = self._matches_shared(ident)
            if marked:
                kwargs = _FromBroker(kwargs)
            message = _tuple_new(Message, (ident, tuple(data[1]), kwargs, data[3], data[4]))
        except Exception as exc:  # noqa: BLE001 - a foreign or broken message
            logger.error("NATS bridge: cannot decode a message on %s: %r", msg.subject, exc)
            return
        if msg.reply:
            self._on_request(message, data, msg.reply)
            return
        try:
            if len(data) > 5 and data[5]:
                self.bus.receive(message, self, parse(data[5]))
            else:
                self.bus.receive(message, self)
        except Exception as exc:  # noqa: BLE001 - no sender here to raise to
            logger.error("receivers of %s (from NATS) failed: %r", message[0], exc)

    def _make_queued_cb(self, group: str) -> Callable[[Msg], None]:
        def on_queued(msg: Msg) -> None:
            if msg.reply:
                return  # asks are answered through the plain subscriptions
            try:
                data = _loads(msg.data)
                ident = parse(data[0])
            except Exception as exc:  # noqa: BLE001 - a foreign or broken message
                logger.error("NATS bridge: cannot decode a message on %s: %r", msg.subject, exc)
                return
            if len(data) > 6 and data[6] and group in data[6]:
                return  # a shared queue of the sending process took it already
            receiver = None
            for sub, sub_group, _ in self._shared:
                if sub_group == group and sub.active:
                    receiver = sub.ref()
                    break
            if receiver is None:
                logger.error("message %s from NATS for shared queue group %s arrived after "
                             "the queue closed; it was not stored", ident, group)
                return
            message = _tuple_new(Message, (ident, tuple(data[1]), data[2], data[3] + 1, data[4]))
            try:
                receiver(message)
            except Exception as exc:  # noqa: BLE001 - QueueFull and the like
                logger.error("shared queue %s refused message %s from NATS: %s", group, ident, exc)

        return on_queued

    # -- ask ------------------------------------------------------------------------------

    def request(self, message: Message, timeout: float) -> list[Any]:
        """Publish ``message`` as a NATS request and gather every process's replies."""
        if not self._connected:
            raise ConnectionClosed(f"NATS at {self.address} is not connected ({self.state})")
        token = str(next(self._ask_ids))
        waiter = _AskWaiter()
        self._asks[token] = waiter
        try:
            ident = message[0]
            subject = self.subjects.subject(ident)
            payload = self._encode(message, None, timeout)
            self._enqueue((subject, payload, f"{self._inbox}.{token}"), ident)
            return waiter.wait(timeout, self.options.ask_gather)
        finally:
            self._asks.pop(token, None)

    def _on_request(self, message: Message, data: list[Any], reply: str) -> None:
        # Loop thread. A process may get a request through two subscriptions: answer once.
        uid = message[4]
        seen = self._seen_requests
        if uid is not None:
            if uid in seen:
                return
            seen[uid] = None
            if len(seen) > _SEEN_REQUESTS:
                del seen[next(iter(seen))]
        node = self.bus.node_id
        self._out.append((reply, _dumps({"k": "a", "n": node}).encode(), ""))
        self._wake_event.set()
        timeout = data[7] if len(data) > 7 and isinstance(data[7], (int, float)) else 5.0
        asked = _tuple_new(Message, (message[0], message[1], message[2], message[3] + 1, uid))
        self._executor.submit(self._answer, asked, reply, float(timeout))

    def _answer(self, message: Message, reply: str, timeout: float) -> None:
        # A worker thread: run the receivers, then publish their replies.
        node = self.bus.node_id
        try:
            replies = self.bus.ask_local(message, timeout)
        except Exception as exc:  # noqa: BLE001 - reported to the asker
            replies = [ReplyError(type(exc).__name__, str(exc), "bus", node)]
        encoded = []
        for value in replies:
            item = _encode_reply(value)
            try:
                _dumps(item)
            except (TypeError, ValueError) as exc:
                item = _encode_reply(ReplyError(
                    "TypeError", f"reply is not JSON-serialisable: {exc}", "nats", node
                ))
            encoded.append(item)
        payload = _dumps({"k": "r", "n": node, "r": encoded}).encode()
        try:
            self._enqueue((reply, payload, ""), message[0])
        except TransportError as exc:
            logger.error("could not answer ask %s through NATS: %s", message[0], exc)

    def _on_answer(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        waiter = self._asks.get(token)
        if waiter is None:
            return
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            waiter.none()
            return
        try:
            data = _loads(msg.data)
            if data["k"] == "a":
                waiter.ack(str(data["n"]))
            else:
                waiter.reply(str(data["n"]), [_decode_reply(item) for item in data["r"]])
        except Exception as exc:  # noqa: BLE001 - a foreign or broken answer
            logger.error("NATS bridge: cannot decode an answer on %s: %r", msg.subject, exc)

    def __repr__(self) -> str:
        return f"<NatsBridge {self.address} bus={self.bus.name} {self.state}>"


# Bridges still open at interpreter exit are closed, so that messages sent just before
# the end of a program are not left in the buffer.
_live: weakref.WeakSet[NatsBridge] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for bridge in list(_live):
        bridge.close()

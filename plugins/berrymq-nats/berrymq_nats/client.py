"""What the bridge needs from ``nats-py`` beyond its public API, in one place.

- :func:`client_options`: how a bridge's options become the client's.
- :class:`Direct` and :func:`subscribe_direct`: a subscription whose messages are handed
  over as the client's reading task parses them, in wire order, instead of through a
  queue and a task per subscription (which could reorder subjects and drop messages).
- :func:`after_each_read`: a step the client's reading task takes after each chunk it
  parsed (the bridge hands the chunk's messages to the delivery lane there, and the
  reading waits while the lane is full).
- :func:`skip_undecodable`: a message whose subject or headers are not UTF-8 is counted
  and skipped, where the client would end its reading task and drop the connection.
- :func:`confirm_written`: a PING/PONG that really comes after what was written, with
  a future of its own that a late PONG can still resolve.
- :func:`watch_reading`: tells when the client's reading task ends while the client still
  says it is connected (nothing would be read any more), and :func:`reconnect` makes the
  client reconnect then, as it does after a read error.
- :func:`close_before_reconnecting`: a fix for a stream writer the client leaves open.
- :func:`close_client`: closing that a stalled server cannot hold up.

``nats-py`` is pinned below 3 for these; each checks the internals it touches and the
bridge refuses to run with a client that lacks them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from nats.aio.client import DEFAULT_MAX_PAYLOAD_SIZE, Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from berrymq.errors import ConnectionClosed, MessageTooLarge, TransportError

if TYPE_CHECKING:
    from berrymq_nats.options import BrokerOptions

__all__ = ["Direct", "ReadingStopped", "after_each_read", "check_internals", "check_payload",
           "client_options", "close_before_reconnecting", "close_client", "confirm_written", "reconnect",
           "skip_undecodable", "subscribe_direct", "watch_reading", "within"]

T = TypeVar("T")


class ReadingStopped(TransportError):
    """The client's reading task ended while its connection was up (what the bridge
    reconnects with)."""


def client_options(options: BrokerOptions, name: str, **callbacks: Any) -> dict[str, Any]:
    """The keyword arguments of ``nats.connect`` for a bridge with ``options``;
    ``callbacks`` are the client's ``disconnected_cb``, ``reconnected_cb`` and so on."""
    kwargs: dict[str, Any] = {
        "servers": list(options.servers),
        "no_echo": True,
        "allow_reconnect": True,
        "connect_timeout": options.connect_timeout,
        "reconnect_time_wait": options.reconnect_wait,
        "max_reconnect_attempts": options.max_reconnect_attempts,
        "skip_subject_validation": True,
        "name": options.name or name,
        **callbacks,
    }
    for key in ("token", "user", "password"):
        if getattr(options, key) is not None:
            kwargs[key] = getattr(options, key)
    if options.credentials is not None:
        kwargs["user_credentials"] = options.credentials
    return kwargs


class Direct:
    """Stands in for a ``nats-py`` subscription's pending queue: hands each message to
    ``handler`` at once, in the client's reading task. The handler must not raise."""

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



def after_each_read(nc: Client, step: Callable[[], Awaitable[None]]) -> bool:
    """Make the client's reading task await ``step()`` after parsing each chunk it read.
    False when this ``nats-py`` has no parser to wrap."""
    parser = getattr(nc, "_ps", None)
    parse: Callable[[bytes], Awaitable[Any]] | None = getattr(parser, "parse", None)
    if parse is None or getattr(parse, "berrymq", False):
        return parse is not None

    async def parse_then_step(data: bytes = b"") -> None:
        try:
            await parse(data)
        finally:
            await step()

    parse_then_step.berrymq = True  # type: ignore[attr-defined]
    parser.parse = parse_then_step  # type: ignore[union-attr]
    return True


def skip_undecodable(nc: Client, undecodable: Callable[[str, Exception], None]) -> bool:
    """Make the client skip a message it cannot decode (a subject, reply subject or header
    that is not UTF-8: any client may publish one, and the server forwards it), calling
    ``undecodable(subject, exc)`` with the subject as far as it reads, instead of ending
    its reading task with the error: the bridge then reconnected, and missed what was
    published meanwhile (one such message every 0.2 s lost 84% of a peer's messages,
    counted nowhere). False when this ``nats-py`` has no ``_process_msg`` to wrap."""
    process: Callable[..., Awaitable[None]] | None = getattr(nc, "_process_msg", None)
    if process is None or getattr(process, "berrymq", False):
        return process is not None

    async def process_or_skip(sid: int, subject: bytes, reply: bytes, data: bytes,
                              headers: bytes) -> None:
        try:
            await process(sid, subject, reply, data, headers)
        except (UnicodeDecodeError, IndexError) as exc:  # IndexError: a header cut short
            undecodable(subject.decode(errors="replace"), exc)

    process_or_skip.berrymq = True  # type: ignore[attr-defined]
    nc._process_msg = process_or_skip  # type: ignore[method-assign]
    return True


async def subscribe_direct(nc: Client, subject: str, group: str, sink: Callable[[Msg], None]
                           ) -> NatsSubscription:
    """Subscribe with a :class:`Direct` sink in place of the subscription's queue."""
    # No pending limits: Direct holds nothing (the delivery lane bounds what waits).
    sub = await nc.subscribe(subject, queue=group, pending_bytes_limit=0)
    if not isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue):
        await sub.unsubscribe()
        raise TransportError("this version of nats-py is not supported (no pending queue)")
    sub._pending_queue = Direct(sink)  # type: ignore[assignment]
    return sub


def check_internals(nc: Client) -> str | None:
    """What this ``nats-py`` lacks of the internals used here besides the parser and the
    pending queue (checked where they are used), or None when it has them all."""
    for name in ("_send_ping", "_flush_pending", "_process_op_err"):
        if not callable(getattr(nc, name, None)):
            return f"no {name}()"
    if not isinstance(getattr(nc, "_reading_task", None), asyncio.Task):
        return "no reading task"
    return None


def _reading_task(nc: Client) -> asyncio.Task[None]:
    task = getattr(nc, "_reading_task", None)
    if not isinstance(task, asyncio.Task):
        raise TransportError("this version of nats-py is not supported (no reading task)")
    return task


async def confirm_written(nc: Client, timeout: float) -> None:
    """Return once the server has read everything written to ``nc`` so far (a PING/PONG
    behind it); raise on a timeout or when the connection is not up.

    ``nc.flush()`` alone writes its PING ahead of commands still in the client's buffer,
    so they are written out first; and while the client reconnects it returns at once,
    without a PONG, which confirms nothing. Nor is ``nc.flush(timeout)`` used: on a
    timeout it cancels its future and leaves it in the client's list of PONG waiters, and
    the late PONG (after a stall of the server, say) then ends the client's reading task
    (``InvalidStateError``), after which nothing more is read. Here the PONG's future is
    never cancelled: a timeout stops waiting for it, the late PONG resolves it unseen.
    The wait also ends when the reading task does (only it could deliver the PONG).
    """
    if not nc.is_connected:
        raise ConnectionClosed("NATS is not connected")
    flush_pending = getattr(nc, "_flush_pending", None)
    send_ping = getattr(nc, "_send_ping", None)
    if flush_pending is None or send_ping is None:
        raise TransportError("this version of nats-py is not supported (no _send_ping)")
    await flush_pending(force_flush=True)
    reader = _reading_task(nc)
    if reader.done():
        raise ReadingStopped("nats-py's reading task has ended: no PONG can come")
    pong: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    await send_ping(pong)
    # asyncio.wait cancels neither on its timeout nor when this task is cancelled
    await asyncio.wait((pong, reader), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if not pong.done():
        if reader.done():
            raise ConnectionClosed("the connection to NATS dropped before the server confirmed")
        raise TimeoutError(f"the NATS server did not answer a PING within {timeout:g}s")
    if not nc.is_connected:
        raise ConnectionClosed("the connection to NATS dropped before the server confirmed")


def watch_reading(nc: Client, stopped: Callable[[Client], None]) -> None:
    """Call ``stopped(nc)`` (on the loop) when the reading task of ``nc``'s current
    connection ends while the client still says it is connected: nats-py ends it on an
    unexpected error (logged by nats-py as "encountered error") without reconnecting, and
    from then on nothing is read, and ``nc.flush()`` returns at once. A reading task that
    was cancelled or ended because the connection dropped is no concern here. Call again
    after each reconnection (each connection has its own task)."""
    task = _reading_task(nc)

    def ended(done: asyncio.Task[None]) -> None:
        if (not done.cancelled() and nc.is_connected
                and getattr(nc, "_reading_task", None) is done):
            stopped(nc)

    if task.done():
        task.get_loop().call_soon(ended, task)
    else:
        task.add_done_callback(ended)


def reconnect(nc: Client, reason: str) -> None:
    """Make the client drop its connection and reconnect, as after a read error (its
    ``disconnected_cb`` and ``reconnected_cb`` are called as then); ``reason`` says why."""
    process_op_err: Callable[[Exception], Coroutine[Any, Any, None]] | None = getattr(
        nc, "_process_op_err", None)
    if process_op_err is None:
        raise TransportError("this version of nats-py is not supported (no _process_op_err)")
    task = asyncio.get_running_loop().create_task(process_op_err(ReadingStopped(reason)))
    _reconnecting.add(task)  # (the loop keeps only a weak reference to a task)
    task.add_done_callback(_reconnecting.discard)


_reconnecting: set[asyncio.Task[None]] = set()


def close_before_reconnecting(nc: Client) -> None:
    """Work around a nats-py defect: when a reconnection attempt fails after the TCP
    connection was made (the server closes it before its greeting, as a relay whose
    server is down does), the client opens the next one without closing that one, whose
    stream writer is then collected unclosed (a ``ResourceWarning``)."""
    transport = getattr(nc, "_transport", None)
    connect = getattr(transport, "connect", None)
    if connect is None or getattr(connect, "berrymq", False):
        return

    async def close_then_connect(*args: Any, **kwargs: Any) -> None:
        writer = getattr(transport, "_io_writer", None)
        if writer is not None:
            writer.close()
        await connect(*args, **kwargs)

    close_then_connect.berrymq = True  # type: ignore[attr-defined]
    transport.connect = close_then_connect  # type: ignore[union-attr]


async def close_client(nc: Client, timeout: float) -> None:
    """Close the client within ``timeout`` seconds. ``nc.close()`` writes what the client
    still holds and waits for the socket to drain, which a stalled server never lets
    happen: past the timeout the socket is dropped at once (aborted), and a publish
    waiting for the client's writer is let go."""
    try:
        await within(nc.close(), timeout, "closing the NATS client")
    except TimeoutError:
        writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
        transport = getattr(writer, "transport", None)
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        # a publish waiting for room in the client's buffer waits for one of these: the
        # writer that would resolve it is gone, so it would wait for ever
        queue = getattr(nc, "_flush_queue", None)
        while isinstance(queue, asyncio.Queue) and not queue.empty():
            waiter = queue.get_nowait()
            if isinstance(waiter, asyncio.Future) and not waiter.done():
                waiter.set_result(None)


async def within(step: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
    """Run ``step`` for at most ``timeout`` seconds, then raise :class:`TimeoutError`
    naming ``what``. Unlike ``asyncio.wait_for``, this does not wait for the step to end
    once cancelled: ``nats-py`` swallows a cancellation while it waits for room in its
    write buffer (``_flush_pending``), so a step stuck there would hold the caller up
    until the server reads again. The step is cancelled and left to end (its outcome is
    retrieved, unseen)."""
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait((task,), timeout=max(0.0, timeout))
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise TimeoutError(f"{what} did not finish within {timeout:g}s")
    return task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def server_url(nc: Client | None) -> str:
    """The URL of the server ``nc`` is connected to, or '' when it is not."""
    url = nc.connected_url if nc is not None and nc.is_connected else None
    return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else ""


async def first_of(tasks: list[asyncio.Task[None]], event: asyncio.Event, timeout: float) -> None:
    """Wait until one of ``tasks`` ends or ``event`` is set, at most ``timeout`` seconds."""
    setting = asyncio.ensure_future(event.wait())
    await asyncio.wait([*tasks, setting], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    setting.cancel()


def payload_limit(nc: Client | None) -> int:
    """The largest payload the server takes (its ``max_payload``; nats-py's default
    before the first connection told it)."""
    return nc.max_payload if nc is not None else DEFAULT_MAX_PAYLOAD_SIZE


def check_payload(nc: Client | None, what: object, payload: bytes) -> None:
    """Refuse, at the call that sent it, a message over the server's ``max_payload``:
    nats-py would refuse it later, on the I/O thread, where nobody can be told."""
    limit = payload_limit(nc)
    if len(payload) > limit:
        raise MessageTooLarge(f"message {what} is {len(payload)} bytes as JSON, over the NATS "
                              f"server's max_payload of {limit} bytes; it was not sent")

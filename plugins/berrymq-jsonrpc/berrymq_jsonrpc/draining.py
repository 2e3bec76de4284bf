"""What a JSON-RPC transport waits for at the end: at exit, the messages its connections
still hold sent; at close, what its peers sent before delivered."""

from __future__ import annotations

import atexit
import contextlib
import logging
import weakref
from typing import TYPE_CHECKING

from berrymq.transports.ioloop import io_loop

if TYPE_CHECKING:
    from berrymq_jsonrpc.transport import RemoteTransport

__all__ = ["CLOSE_DELIVERY_WAIT", "EXIT_ANSWER_WAIT", "LIVE_TRANSPORTS", "deliver_what_came"]

logger = logging.getLogger("berrymq.remote")

#: The transports of this process, whose connections are flushed at exit.
LIVE_TRANSPORTS: weakref.WeakSet[RemoteTransport] = weakref.WeakSet()


#: How long a serving node waits at exit for the answers to what its clients sent.
EXIT_ANSWER_WAIT = 5.0


def _flush_at_exit() -> None:
    """Messages queued by send_message/twitter just before the program ends are still
    sent: wait (bounded by each transport's timeout) for every open connection. Then a
    serving node answers what its clients sent before (see :func:`_answer_at_exit`).
    Ctrl-C during the wait ends it: what is left is counted and logged as not sent when
    the I/O loop stops, not shown as a traceback from an exit hook."""
    transports = list(LIVE_TRANSPORTS)
    connections = [(transport, connection) for transport in transports
                   for connection in transport.connections]
    try:
        if connections:
            logger.debug("at exit: waiting for %d connection(s) to send what they hold",
                         len(connections))
        for transport, connection in connections:
            try:
                connection.flush(transport.timeout)
            except Exception as exc:  # noqa: BLE001 - already logged by the outbox
                logger.debug("flush at exit: %s", exc)
        _answer_at_exit([transport for transport in transports if transport.serving])
    except KeyboardInterrupt:
        logger.warning("interrupted while waiting at exit for %d connection(s) to send what "
                       "they hold: what they have not sent is given up", len(connections))


def _answer_at_exit(serving: list[RemoteTransport]) -> None:
    """A node that ends just after its receivers got a message (a program that waited
    for it in a Queue) has not yet answered the request that brought it: the answer is
    made on the delivery lane, then written by the I/O loop, which stops at exit. Its
    sender would count the message as lost although it was delivered. So: take no new
    connection (a client retrying would get no answer either), let the lane run what
    came (up to :data:`EXIT_ANSWER_WAIT`), and give the loop a turn to write the answers."""
    if not serving:
        return
    for transport in serving:
        transport.stop_accepting()
    deliver_what_came(EXIT_ANSWER_WAIT)
    with contextlib.suppress(TimeoutError, RuntimeError):  # the loop is stopped or stuck
        io_loop.run(_turn(), EXIT_ANSWER_WAIT)


async def _turn() -> None:
    """Nothing, on the loop: once it ran, what the lane handed the loop before ran too."""


atexit.register(_flush_at_exit)


#: How long closing a transport waits for the delivery of what its peers sent before.
CLOSE_DELIVERY_WAIT = 10.0


def deliver_what_came(timeout: float) -> None:
    """Wait up to ``timeout`` seconds until the delivery lane has run what the I/O loop
    handed it so far (the messages this transport's peers sent before it closed, their
    answers given): the bus's receivers get them before the bus forgets its receivers.
    What runs later is counted as lost by the closed node. Not on the I/O thread or the
    lane's own (a receiver closing its bus), which would wait for themselves."""
    if io_loop.in_loop() or io_loop.lane.in_lane():
        return
    with contextlib.suppress(TimeoutError, RuntimeError):  # the lane busy that long, or stopped
        io_loop.run(io_loop.lane.turn(), timeout)

"""The bridge between one bus and a NATS server or cluster.

``nats-py`` is asyncio-only and berryMQ is synchronous: the bridge runs its client on the
process's one I/O loop (:data:`berrymq.transports.ioloop.io_loop`), shared with the other
network transports, and synchronous callers hand work to it. A bridge is a connection in
one of the SPEC's styles, written once in the core
(:class:`~berrymq.transports.styles.LinkConnection`), over a :class:`~berrymq_nats.link.NatsLink`
that publishes and asks; it follows the bus's subscriptions. Its parts:

- :mod:`~berrymq_nats.link`: what every style publishes and asks through;
- :mod:`~berrymq_nats.outbox`: the way out, the disconnect buffer and what was in flight;
- :mod:`~berrymq_nats.inbound`: the way in, through the delivery lane to the receivers;
- :mod:`~berrymq_nats.asking`: ``ask`` through NATS and the view of peers it relies on;
- :mod:`~berrymq_nats.shared`: shared queues as NATS queue groups;
- :mod:`~berrymq_nats.following`: the NATS subscriptions that follow the bus's;
- :mod:`~berrymq_nats.losses`: what was lost, counted with reasons and logged per burst;
- :mod:`~berrymq_nats.server_errors`: the server's and the client's errors (permissions);
- :mod:`~berrymq_nats.status`: the bridge's status line;
- :mod:`~berrymq_nats.closing`: closing, what waits sent and what could not be counted.

This module holds the connection's life up to its close: connecting, reconnecting and
flushing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from typing import TYPE_CHECKING

import nats
from nats.aio.client import Client
from nats.errors import NoServersError

from berrymq.stats import stats_for
from berrymq.transports.base import ConnectionRow
from berrymq.transports.ioloop import io_loop
from berrymq.transports.styles import LinkConnection
from berrymq.transports.support import waits_for_room
from berrymq_nats.asking import Asking
from berrymq_nats.at_exit import LIVE
from berrymq_nats.client import (
    check_internals,
    client_options,
    close_before_reconnecting,
    confirm_written,
    server_url,
    subscribe_direct,
    watch_reading,
    within,
)
from berrymq_nats.closing import close_bridge, give_up
from berrymq_nats.following import Following
from berrymq_nats.inbound import Inbound
from berrymq_nats.link import NatsLink
from berrymq_nats.losses import UNDECODABLE, Losses
from berrymq_nats.options import BrokerOptions, without_credentials
from berrymq_nats.outbox import Outbox
from berrymq_nats.server_errors import ServerErrors, describe
from berrymq_nats.shared import SharedQueues
from berrymq_nats.status import status_line, status_row
from berrymq_nats.subjects import SubjectMap

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["NatsBridge"]

logger = logging.getLogger("berrymq.nats")

#: A connection lost this many seconds after the reading last waited for the receivers
#: is said to have been lost while behind (a NATS server cuts a slow consumer off after
#: its write_deadline, 10 s by default; the bridge notices once it reads again).
BEHIND_WINDOW = 30.0
#: How often a thread waiting for the bridge to connect (:meth:`NatsBridge.wait_up`) looks
#: whether it gave up or was closed meanwhile.
_UP_LOOK = 0.1
#: What :meth:`NatsBridge.wait_up` leaves of an ask's timeout, and waits past
#: ``connect_timeout`` for the connection's last step.
_UP_MARGIN = 0.1


class NatsBridge(LinkConnection):
    """One bus's connection to NATS, in the style ``interconnect`` (every non-local message
    is published, matching ones from other processes come in) or ``oneway`` (only what
    ``send`` sends is published; nothing is subscribed), both able to ``ask``: the core's
    :class:`~berrymq.transports.styles.LinkConnection` over a :class:`NatsLink`. The
    bridge keeps the ``nats-py`` client on the process's I/O loop, its reconnections, and
    the NATS subscriptions that follow the bus's.

    Created by :meth:`berrymq_nats.transport.NatsTransport.connect_broker`; ``close()``
    sends what waits, unsubscribes and disconnects. :attr:`losses` counts what was lost.
    """

    def __init__(self, bus: Bus, options: BrokerOptions, *, subscribe: bool = True) -> None:
        self.bus = bus
        self.options = options
        #: the servers as shown (``/status``, logs, errors): without credentials
        self.address = ",".join(without_credentials(url) for url in options.servers)
        self.subscribe_enabled = subscribe
        self.subjects = SubjectMap(options.subject_prefix)
        self.state = "connecting"
        self.last_error: str | None = None
        self.reconnects = 0
        #: monotonic times of the last loss of the connection and of the last time this
        #: bridge was back with its subscriptions confirmed by the server
        self.disconnected_at: float | None = None
        self.resubscribed_at: float | None = None
        #: the prefix of the subjects the answers to this bridge's asks come on
        self.answers = ""
        self.losses = Losses(logger, f"NATS bridge of bus {bus.name}", bus=bus)
        #: the bus's traffic counters (``/status``'s ``messages``, ``bytes`` and ``recent``),
        #: which every transport of the bus counts into; the peer of what the bridge
        #: publishes and receives is shown as :attr:`address`
        self.stats = stats_for(bus)
        self.outbox = Outbox(options, self.losses, lambda: f"{self.address} ({self.state})")
        self.shared = SharedQueues(bus, self.subjects)
        self.asking = Asking(self)
        self.inbound = Inbound(self)
        self.errors = ServerErrors(self)
        self._nc: Client | None = None
        self.following = Following(self)
        self._ready = threading.Event()
        #: set while connected with this process's subscriptions confirmed by the server
        self.up = asyncio.Event()
        self.attempt_failed = asyncio.Event()  # set by each failed connection attempt
        #: the loop's tasks of this bridge: the outbox's, then the connecting one
        self.tasks: list[asyncio.Task[None]] = []
        self._lost_mark = 0
        # the style (before the loop starts: what comes in is received from its forwarder):
        # "interconnect" adds the link as the bus's forwarder, "oneway" its asker
        super().__init__(bus, NatsLink(self), "interconnect" if subscribe else "oneway",
                         on_close=functools.partial(close_bridge, self))
        io_loop.submit(self._start())
        bus.add_subscription_listener(self.following.changed)
        LIVE.add(self)

    # -- connecting -------------------------------------------------------------------------

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.outbox.run()), loop.create_task(self._connect())]

    @property
    def client(self) -> Client | None:
        """The ``nats-py`` client, None before the first connection was made."""
        return self._nc

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the first connection is made; False if ``timeout`` passed first."""
        return self._ready.wait(timeout)

    def wait_up(self, timeout: float) -> bool:
        """From a plain thread: whether the bridge is connected (with its subscriptions
        confirmed), waiting for its first connection while the first attempt is under
        way, within ``timeout`` (less a margin, so that the caller can still say why it
        failed) and ``connect_timeout``. An ``ask`` made then waits so: it failed at once,
        and the first asks of a program joined by its settings file (which does not wait
        for the connection) all failed. Not waited for: an attempt that failed, a bridge
        reconnecting, failed, closed or inherited by a forked process (a caller is told
        at once, as before), and a transport's delivery lane, which carries every message
        that comes in."""
        def coming() -> bool:
            connecting = not self.tasks or not self.tasks[-1].done()  # (not begun, or on)
            return (connecting and self.state == "connecting"  # ("connected" once _ready)
                    and not self.attempt_failed.is_set() and not self.closed
                    and self.outbox.forked_error is None)

        deadline = time.monotonic() + min(timeout - _UP_MARGIN,
                                          self.options.connect_timeout + _UP_MARGIN)
        if waits_for_room() and not io_loop.in_loop():  # (the loop is what would connect)
            while coming() and (left := deadline - time.monotonic()) > 0:
                self._ready.wait(min(_UP_LOOK, left))  # (set by the first connection)
        return self.outbox.connected

    @property
    def down_reason(self) -> str:
        """Why the bridge is not connected: its state, and its last error where the state
        does not say it (``connecting`` while nats-py tries again)."""
        state, error = self.state, self.last_error
        return f"{state}; last error: {error}" if error and error not in state else state

    async def _connect(self) -> None:
        opts = self.options
        attempts = 0
        while attempts == 0 or not self.closed:  # the first even if closed: see closing.shutdown
            attempts += 1
            try:
                nc = await nats.connect(**client_options(
                    opts, f"berrymq {self.bus.name} {self.bus.node_id}",
                    disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                    closed_cb=self.errors.on_closed, error_cb=self.errors.on_error))
            except NoServersError:
                # nats-py made its max_reconnect_attempts + 1 attempts at every server
                # (each reported to errors.on_error): trying again here would multiply them.
                self.failed(f"failed: {opts.gave_up}")
                return
            except Exception as exc:  # noqa: BLE001 - reported in the state, then retried
                self.last_error = describe(exc)
                self.state = f"connecting (attempt {attempts} failed: {self.last_error})"
                if 0 <= opts.max_reconnect_attempts < attempts:
                    self.failed(f"failed: {self.last_error}")
                    return
                await asyncio.sleep(opts.reconnect_wait)
                continue
            if self.closed:  # closed meanwhile: closing.shutdown, waiting, sends what waits
                if check_internals(nc) is None:
                    self._nc = nc
                    self.outbox.resume(nc)
                else:
                    await nc.close()
                return
            self._nc = nc
            close_before_reconnecting(nc)
            problem = check_internals(nc)
            if problem is not None or not self.inbound.attach(nc):
                self.failed("failed: this version of nats-py is not supported "
                             f"({problem or 'no parser'})")
                await nc.close()
                return
            watch_reading(nc, self.errors.reading_stopped)
            try:
                await self._subscribe(nc)
            except Exception as exc:  # noqa: BLE001 - said, where it was silent before
                # (a server that answered nats-py's first PING, then nothing): the state,
                # asks and the log name it; nats-py may still find the server again
                self.last_error = describe(exc)
                self.state = f"connecting (the start failed: {self.last_error})"
                self.attempt_failed.set()
                logger.error("NATS bridge of bus %s could not start on %s: %s", self.bus.name,
                             self.address, self.last_error)
                return
            self._back("connected")
            self._ready.set()
            return

    async def _subscribe(self, nc: Client) -> None:
        """Loop thread: the bridge's own subscriptions, then the bus's, confirmed by the
        server (a PING/PONG after them)."""
        self.answers = nc.new_inbox()
        asking = self.asking
        for subject in (f"{self.answers}.*", f"{self.answers}.*.*"):  # answers, probes' answers
            await subscribe_direct(nc, subject, "", asking.on_answer)
        await subscribe_direct(nc, asking.presence_subject, "", asking.on_control)
        await subscribe_direct(nc, asking.node_prefix + asking.node, "", asking.on_control)
        await self.following.sync()
        await confirm_written(nc, self.options.connect_timeout)

    def _back(self, state: str) -> None:
        """Loop thread: connected with this process's subscriptions confirmed by the server
        (a PING/PONG after them): publish what waited, then say hello to the peers."""
        assert self._nc is not None
        self.errors.reached_or_closed()
        self.outbox.resume(self._nc)
        self.resubscribed_at = time.monotonic()
        self.up.set()
        self.asking.announce("hello")
        self.state = state

    def failed(self, state: str) -> None:
        """The bridge will not connect again: say why."""
        self.state = state
        self.outbox.close(connected=False)
        error = self.last_error
        logger.error("NATS bridge of bus %s gave up connecting to %s: %s%s", self.bus.name,
                     self.address, state,
                     f"; last error: {error}" if error and error not in state else "")

    async def _on_disconnected(self) -> None:
        if self.closed:
            return
        self.up.clear()
        self.disconnected_at = time.monotonic()
        self.state = "reconnecting"
        self.outbox.connection_lost()
        inbound = self.inbound
        was_behind = inbound.behind or (inbound.behind_at is not None and
                                        time.monotonic() - inbound.behind_at < BEHIND_WINDOW)
        behind = (" after its receivers were behind (the delivery lane full): the server may "
                  "have cut it off as a slow consumer, and what it held for it is lost"
                  if was_behind else "")
        logger.warning("NATS bridge of bus %s lost its connection%s; reconnecting (what is "
                       "published to its subjects until it is back is not received)",
                       self.bus.name, behind)

    async def _on_reconnected(self) -> None:
        # nats-py has subscribed again and made a PING/PONG round trip since.
        if self.closed:
            return
        self.reconnects += 1
        if self._nc is not None:
            watch_reading(self._nc, self.errors.reading_stopped)
        away = time.monotonic() - self.disconnected_at if self.disconnected_at else 0.0
        self._back("connected")
        logger.warning("NATS bridge of bus %s reconnected to %s after %.1f s away: what was "
                       "published to its subjects meanwhile was not received", self.bus.name,
                       self.server, away)

    # -- reports ----------------------------------------------------------------------------

    def undecodable(self, subject: str, exc: Exception) -> None:
        self.losses.add(UNDECODABLE, 1, f"on {subject}: {exc!r}")

    @property
    def server(self) -> str:
        """The URL of the server currently connected to, or '' when disconnected."""
        return server_url(self._nc)

    def status(self) -> str:
        """One line: the state, the server, subscriptions, buffered and lost messages
        (see :func:`~berrymq_nats.status.status_line`), and the subscriptions the server
        refused (:attr:`ServerErrors.denied <berrymq_nats.server_errors.ServerErrors.denied>`)."""
        denied = self.errors.status()
        return status_line(self) + (f"; {denied}" if denied else "")

    def status_row(self) -> ConnectionRow:
        """The bridge among a node's ``/status`` ``connections``
        (:func:`~berrymq_nats.status.status_row`)."""
        return status_row(self)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message sent and every subscription made before this call has
        reached the NATS server (a PING/PONG round trip), and the messages this bridge
        received before the PONG have been handed to the receivers (unless called by one
        of them). False if ``timeout`` seconds (default 30) passed first (NATS unreachable,
        say), or if a message accepted since the last flush was lost (see :attr:`losses`;
        what other clients sent and the bridge's own control messages are counted there
        apart, :data:`~berrymq_nats.losses.FOREIGN`, and do not make it False)."""
        if io_loop.in_loop():
            raise RuntimeError("flush() cannot be called from the I/O thread")
        ok = True
        if not self.closed:
            timeout = 30.0 if timeout is None else timeout
            deadline = time.monotonic() + timeout
            try:  # _flush keeps the deadline: the margin is for a loop held up elsewhere
                received = io_loop.run(self._flush(deadline), timeout + 1.0)
            except Exception:  # noqa: BLE001 - not connected in time, or the connection dropped
                ok = False
            else:
                if not io_loop.lane.in_lane():  # a receiver waiting for its own batch would wait forever
                    ok = self.inbound.wait_delivered(
                        received, max(0.0, deadline - time.monotonic()))
        else:
            ok = not self.outbox.waiting
        total = self.losses.own  # not what others sent, not the bridge's own control messages
        ok = ok and total == self._lost_mark
        self._lost_mark = total
        return ok

    async def _flush(self, deadline: float) -> int:
        """Returns how many messages this bridge had received when the PONG came; raises
        TimeoutError at the deadline (each step may wait for room in nats-py's buffer)."""
        def left() -> float:
            return deadline - time.monotonic()
        await within(self.up.wait(), left(), "connecting")
        await within(self.following.sync(), left(), "subscribing")
        await within(self.outbox.pump(), left(), "publishing")
        nc = self._nc
        assert nc is not None
        confirmations = self.outbox.confirmations
        published, published_bytes = confirmations.published, confirmations.published_bytes
        await within(confirm_written(nc, left()), left(), "the server's confirmation")
        if self.outbox.nc is nc:
            confirmations.confirmed_up_to(published, published_bytes)
        return self.inbound.gathered

    def give_up(self, timeout: float, *, wait_for_client: bool) -> None:
        """Closing was cut short (it failed, or Ctrl-C ended it): count what was not
        confirmed or not sent, and report it (see :func:`berrymq_nats.closing.give_up`)."""
        give_up(self, timeout, wait_for_client=wait_for_client)

    def __repr__(self) -> str:
        return f"<NatsBridge {self.address} bus={self.bus.name} {self.state}>"

"""A node's counters: messages and bytes in and out, losses by reason, the last messages.

One :class:`NodeStats` belongs to each bus whose transports carry messages to or from
other processes (:func:`stats_for`, per-bus state): every transport of that bus counts
into it (JSON-RPC, the NATS bridge), and ``berrymq_jsonrpc.status`` reads it for
``/status``, ``/metrics`` and the live page. The core only counts and keeps: what a peer
is, a transport knows; a peer is kept as the object the transport gave and shown as its
``str()`` when someone reads (a JSON-RPC session renders as its style and where it is from).

Counting is on the hot path, so it takes no lock: each thread increments plain ints in a
list of its own (a *cell*, found through a ``threading.local``), and a reader sums the cells.
A cell is created once per thread (under a lock) and folded into the retired totals when its
thread ends, so the number of cells follows the number of live threads, not of all threads
ever started; what folds it holds the stats weakly, so that a closed bus's stats are freed
with it, not kept for as long as a thread that once counted lives (the main thread, the
I/O loop's). The last :data:`RECENT` messages go into a ``deque`` with ``maxlen`` (its
``append`` is atomic); a message is stored as the objects at hand and turned into text
only when someone reads it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from berrymq.state import StateKey

if TYPE_CHECKING:
    from berrymq.bus import Bus

_now = time.time

__all__ = ["RECENT", "NodeStats", "stats_for"]

#: How many of the last messages a node keeps for its status (a bounded ring).
RECENT = 50
#: How many rate samples (one a second at most) the node keeps for the live page's charts.
SAMPLES = 120

# the slots of a cell
_IN, _OUT, _BYTES_IN, _BYTES_OUT, _DUPLICATES = range(5)
_SLOTS = 5


class _Owner:
    """Lives in a thread's ``threading.local``; when the thread ends it is collected and its
    cell is retired (see :meth:`NodeStats._retire`)."""

    __slots__ = ("__weakref__", "cell")

    def __init__(self, cell: list[int]) -> None:
        self.cell = cell


class NodeStats:
    """The counters of one node (bus). Writers call :meth:`message_in`,
    :meth:`message_out`, :meth:`exchanged` and :meth:`lost`; readers :meth:`totals`,
    :meth:`losses`, :meth:`recent_messages` and :meth:`rates`."""

    def __init__(self) -> None:
        self.started = time.time()
        self.started_monotonic = time.monotonic()
        self._local = threading.local()
        self._lock = threading.Lock()  # cell creation, retirement, losses, samples: not per message
        self._cells: list[list[int]] = []
        self._retired = [0] * _SLOTS
        self._losses: dict[str, int] = {}
        #: ``(wall time, "in"|"out", identifier, peer)``; rendered by :meth:`recent_messages`
        self.recent: deque[tuple[float, str, object, object]] = deque(maxlen=RECENT)
        self._samples: deque[tuple[float, int, int, int, int]] = deque(maxlen=SAMPLES)

    # -- writing (any thread, no lock) ----------------------------------------------------

    def _cell(self) -> list[int]:
        try:
            return self._local.cell  # type: ignore[no-any-return]
        except AttributeError:
            return self._new_cell()

    def _new_cell(self) -> list[int]:
        cell = [0] * _SLOTS
        owner = _Owner(cell)
        with self._lock:
            self._cells.append(cell)
        # the finalizer holds the stats weakly: a strong hold (a bound method) would keep
        # them, and the bus they belong to, alive for as long as the thread lives
        weakref.finalize(owner, _retire, weakref.ref(self), cell)
        self._local.owner = owner  # collected when the thread ends (or the stats): retires the cell
        self._local.cell = cell
        return cell

    def _retire(self, cell: list[int]) -> None:
        with self._lock:
            retired = self._retired
            for slot in range(_SLOTS):
                retired[slot] += cell[slot]
            self._cells = [c for c in self._cells if c is not cell]

    def message_in(self, identifier: object, peer: object, size: int = 0) -> None:
        """A message came in from ``peer`` (None, a text, or any object whose ``str`` says
        who it is: it is rendered only when read); ``size``: its bytes, when the transport
        counts them per message (the NATS bridge: the payload) rather than per request
        (:meth:`exchanged`)."""
        try:
            cell = self._local.cell
        except AttributeError:
            cell = self._new_cell()
        cell[_IN] += 1
        if size:
            cell[_BYTES_IN] += size
        self.recent.append((_now(), "in", identifier, peer))

    def messages_in(self, identifiers: list[object], peer: object) -> None:
        """A batch of messages came in from ``peer`` in one request (one clock reading)."""
        try:
            self._local.cell[_IN] += len(identifiers)
        except AttributeError:
            self._new_cell()[_IN] += len(identifiers)
        when = _now()
        self.recent.extend([(when, "in", ident, peer) for ident in identifiers[-RECENT:]])

    def message_out(self, identifier: object, peer: object, size: int = 0) -> None:
        """A message left (or was handed to a connection) for ``peer``; ``size`` as for
        :meth:`message_in`."""
        try:
            cell = self._local.cell
        except AttributeError:
            cell = self._new_cell()
        cell[_OUT] += 1
        if size:
            cell[_BYTES_OUT] += size
        self.recent.append((_now(), "out", identifier, peer))

    def duplicate(self) -> None:
        """A message came back that the node had seen (round a cycle of nodes): dropped by
        design, it was delivered already; not a loss."""
        self._cell()[_DUPLICATES] += 1

    def exchanged(self, received: int, sent: int) -> None:
        """``received`` bytes came in and ``sent`` bytes went out on the wire."""
        cell = self._cell()
        cell[_BYTES_IN] += received
        cell[_BYTES_OUT] += sent

    def lost(self, reason: str, count: int = 1) -> None:
        """``count`` messages were not delivered (refused, dropped or not sent), for
        ``reason`` (a short fixed text such as ``"queue full"``). Not a hot path."""
        if count <= 0:
            return
        with self._lock:
            self._losses[reason] = self._losses.get(reason, 0) + count

    # -- reading ----------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """``messages_in``, ``messages_out``, ``bytes_in``, ``bytes_out``, ``duplicates``
        so far."""
        with self._lock:
            sums = list(self._retired)
            for cell in self._cells:
                for slot in range(_SLOTS):
                    sums[slot] += cell[slot]
        return {"messages_in": sums[_IN], "messages_out": sums[_OUT],
                "bytes_in": sums[_BYTES_IN], "bytes_out": sums[_BYTES_OUT],
                "duplicates": sums[_DUPLICATES]}

    def losses(self, extra: Iterable[tuple[str, int]] = ()) -> dict[str, int]:
        """Lost messages by reason (plus ``extra`` pairs counted elsewhere, e.g. by the
        outboxes of connections that are still open)."""
        with self._lock:
            losses = dict(self._losses)
        for reason, count in extra:
            if count > 0:
                losses[reason] = losses.get(reason, 0) + count
        return losses

    def recent_messages(self) -> list[dict[str, Any]]:
        """The last :data:`RECENT` messages, oldest first, as JSON-ready dicts."""
        return [{"time": round(when, 6), "direction": direction, "identifier": str(ident),
                 "peer": _peer_text(peer)}
                for when, direction, ident, peer in list(self.recent)]

    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic

    def sample(self, totals: dict[str, int]) -> list[tuple[float, int, int, int, int]]:
        """Record ``totals`` as a rate sample (at most one per second) and return the last
        :data:`SAMPLES` samples, oldest first, the last one now: ``(uptime, messages_in,
        messages_out, bytes_in, bytes_out)``."""
        now = self.uptime()
        row = (round(now, 3), totals["messages_in"], totals["messages_out"],
               totals["bytes_in"], totals["bytes_out"])
        with self._lock:
            samples = self._samples
            if not samples:
                samples.append((0.0, 0, 0, 0, 0))
            if now - samples[-1][0] >= 1.0:
                samples.append(row)
            kept = list(samples) if samples[-1] is row else [*samples, row]
            return kept[-SAMPLES:]  # (now, beside a full deque, made 121)

    @staticmethod
    def rates(samples: list[tuple[float, int, int, int, int]]) -> dict[str, float]:
        """Per-second rates over the last second or more of ``samples`` (the last one is
        now): messages and bytes in and out."""
        now = samples[-1]
        before = next((s for s in reversed(samples[:-1]) if now[0] - s[0] >= 1.0), samples[0])
        span = now[0] - before[0]
        if span <= 0:
            return {"messages_in": 0.0, "messages_out": 0.0, "bytes_in": 0.0, "bytes_out": 0.0}
        return {name: round((now[i] - before[i]) / span, 3) for i, name in
                enumerate(("messages_in", "messages_out", "bytes_in", "bytes_out"), 1)}


def _retire(stats: weakref.ref[NodeStats], cell: list[int]) -> None:
    """A thread's cell is done with (its thread ended): fold it into the stats' totals,
    unless the stats are gone too."""
    owner = stats()
    if owner is not None:
        owner._retire(cell)


def _peer_text(peer: object) -> str | None:
    """What a peer given to a counter is shown as: None stays None, anything else is its
    ``str()`` (a transport's own object says who it is, read now, not when counted)."""
    return None if peer is None else str(peer)


#: The node's counters, per bus (every transport of the bus shares them).
STATS: StateKey[NodeStats] = StateKey("node stats", lambda bus: NodeStats())


def stats_for(bus: Bus) -> NodeStats:
    """The counters of ``bus`` (made on first use; every transport of the bus shares them)."""
    return bus.state(STATS)

"""What a node tells about itself: ``/status`` (JSON) and ``/metrics`` (Prometheus text).

:func:`status_snapshot` reads a bus, its JSON-RPC transports and its counters
(:mod:`berrymq.stats`) into one JSON-ready dict, in the spirit of NATS's ``/varz``
and ``/connz``; :func:`metrics_text` writes the same numbers in the Prometheus text
exposition format. ``docs/status.md`` explains every field and metric. Nothing here is on
a message's path: it runs when someone asks (and, for the rates, once a second:
:func:`sample_rates`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from berrymq import __version__, network
from berrymq.state import StateKey
from berrymq.stats import NodeStats, stats_for
from berrymq.transports.base import Connection, ConnectionRow
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc.sessions import session_id, session_peer

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq_jsonrpc.limits import Admission

__all__ = ["MONITOR_ADMISSIONS", "RATE_SAMPLING", "VERSION", "metrics_text", "sample_rates",
           "status_snapshot"]

#: The admissions of a node's status-only addresses (``serve --monitor``), whose refused
#: connections ``refused`` counts as ``monitor: SETTING``.
MONITOR_ADMISSIONS: StateKey[list[Admission]] = StateKey("monitor admissions", lambda bus: [])

#: The version of the ``/status`` document (a field is only added, never changed, within it).
VERSION = 1


async def _sample_each_second(stats: NodeStats) -> None:
    while True:
        await asyncio.sleep(1.0)
        stats.sample(stats.totals())


#: A serving bus's rate samples, taken each second on the I/O loop whether or not anyone
#: reads its status: with samples taken only when it was read, a read after a quiet
#: half minute gave the average since the read before (``in_per_s`` 1.6 on an idle node),
#: and the page's history had holes.
RATE_SAMPLING: StateKey[concurrent.futures.Future[None]] = StateKey(
    "jsonrpc rate sampling", lambda bus: io_loop.submit(_sample_each_second(stats_for(bus))),
    close=lambda sampling: sampling.cancel())


def sample_rates(bus: Bus) -> None:
    """Take ``bus``'s rate samples each second from now on (until it closes)."""
    bus.state(RATE_SAMPLING)


def _transports(bus: Bus) -> list[tuple[str, Any]]:
    # the bus's transports by scheme, as berrymq.network.describe reads them
    return sorted(bus.transports().items())


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for reason, count in list(counts.items()):
        into[reason] = into.get(reason, 0) + count


def _connection(row: ConnectionRow) -> dict[str, Any]:
    """One of ``/status``'s ``connections``: a connection's row, whatever its transport."""
    return {"scheme": row.scheme, "address": row.address, "style": row.style,
            "direction": "out", "age_s": row.age_s, "pending": row.pending, "sent": row.sent,
            "lost": row.lost, "refused": row.refused, "state": row.state}


def _session_queue(session: Any) -> dict[str, Any] | None:
    store = session.queue
    if store is None:
        return None
    depth, size = store.held()
    return {"name": f"remote {store.pattern}", "kind": "session", "pattern": str(store.pattern),
            "depth": depth, "bytes": size, "maxsize": store.maxsize,
            "shared": False, "session": session_id(session.token)}


def _local_queues(bus: Bus) -> Iterator[dict[str, Any]]:
    for receiver in network.describe(bus)["receivers"]:
        queue = receiver.get("queue")
        if receiver.get("kind") != "queue" or not isinstance(queue, dict):
            continue
        pattern = receiver["follows"][0]["pattern"] if receiver["follows"] else "?"
        yield {"name": receiver["name"], "kind": "local", "pattern": pattern,
               "depth": queue.get("size", 0), "bytes": None, "maxsize": queue.get("maxsize", 0),
               "shared": bool(queue.get("shared")), "session": None}


def _queue_samples(queues: list[dict[str, Any]], field: str
                   ) -> list[tuple[dict[str, object], float]]:
    """One sample per queue, unique by its labels as the text format requires: a session's
    queue labelled with its session (two clients may follow one pattern), local queues of
    one name (two standalone ``Queue("a:*")``) summed."""
    samples: dict[tuple[tuple[str, str], ...], float] = {}
    for queue in queues:
        value = queue[field]
        if value is None:
            continue
        labels = {"queue": queue["name"], "kind": queue["kind"]}
        if queue.get("session"):
            labels["session"] = queue["session"]
        key = tuple(labels.items())
        samples[key] = samples.get(key, 0) + value
    return [(dict(key), value) for key, value in samples.items()]


def _plugins(bus: Bus) -> list[dict[str, Any]]:
    """Each plugin with its status lines. When the status cannot be made (a wrong setting
    a hook came upon, a plugin missing) the error is the line of the plugin it names, or
    of every active plugin when it names none: shown, not filed where no row looks."""
    host = bus.plugins
    infos = host.infos()
    try:
        lines = host.status(bus).lines
    except Exception as exc:  # noqa: BLE001 - a status must not fail on one plugin
        named = getattr(exc, "plugin", None)
        failure = [f"status failed: {exc}"]
        lines = {info.name: failure for info in infos
                 if info.name == named or (named is None and info.active)}
    return [{"name": info.name, "distribution": info.distribution, "version": info.version,
             "active": info.active, "reason": info.reason, "status": lines.get(info.name, [])}
            for info in infos]


def status_snapshot(bus: Bus, stats: NodeStats | None = None) -> dict[str, Any]:
    """Everything ``/status`` shows about ``bus`` (see ``docs/status.md``), JSON-ready."""
    stats = stats if stats is not None else stats_for(bus)
    now = time.monotonic()
    totals = stats.totals()
    samples = stats.sample(totals)
    rates = stats.rates(samples)
    listening: list[str] = []
    listed: list[Connection] = []
    sessions: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    refused: dict[str, int] = {}
    for monitor_admission in bus.state(MONITOR_ADMISSIONS):
        _add(refused, {f"monitor: {k}": n for k, n in monitor_admission.refused.items()})
    for scheme, transport in _transports(bus):
        listening += list(transport.urls)  # (every Transport has them: none by default)
        admission = getattr(transport, "admission", None)
        _add(refused, getattr(admission, "refused", {}))
        listed += transport.connections
        service = getattr(transport, "service", None)
        if service is None:
            continue
        _add(refused, getattr(service, "refused", {}))
        for session in list(service.sessions.values()):
            sessions.append({
                "id": session_id(session.token), "scheme": scheme, "style": session.style,
                "peer": session_peer(session),
                "age_s": round(now - getattr(session, "opened", now), 3),
                "idle_s": round(max(0.0, now - (session.deadline - session.ttl)), 3),
                "ttl_s": session.ttl,
            })
            queue = _session_queue(session)
            if queue is not None:
                queues.append(queue)
    for connection in bus.connections():  # opened another way, e.g. over a memory link
        if connection not in listed:
            listed.append(connection)
    connections = [_connection(connection.status_row()) for connection in listed]
    queues += list(_local_queues(bus))
    losses = stats.losses(bus.losses.snapshot().items())  # + the core's
    return {
        "version": VERSION,
        "server": {
            "node": bus.node_id, "bus": bus.name, "berrymq": __version__, "pid": os.getpid(),
            "started": round(stats.started, 3), "now": round(time.time(), 3),
            "uptime_s": round(stats.uptime(), 3), "listening": listening,
        },
        "messages": {"in": totals["messages_in"], "out": totals["messages_out"],
                     "in_per_s": rates["messages_in"], "out_per_s": rates["messages_out"],
                     "duplicates": totals["duplicates"]},
        "bytes": {"in": totals["bytes_in"], "out": totals["bytes_out"],
                  "in_per_s": rates["bytes_in"], "out_per_s": rates["bytes_out"]},
        "lost": {"total": sum(losses.values()), "reasons": losses},
        "refused": {"total": sum(refused.values()), "reasons": dict(sorted(refused.items()))},
        "connections": connections,
        "sessions": sessions,
        "queues": queues,
        "plugins": _plugins(bus),
        "recent": stats.recent_messages(),
        "history": [list(sample) for sample in samples],
    }


# -- Prometheus --------------------------------------------------------------------------------


def _label(value: object) -> str:
    """A label value escaped as the text format wants: backslash, quote, newline."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: dict[str, object]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_label(value)}"' for key, value in pairs.items()) + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, text: str,
               samples: list[tuple[dict[str, object], float]]) -> None:
        # the text format 0.0.4 names a counter with its _total in HELP and TYPE too
        if kind == "counter":
            name += "_total"
        self.lines.append(f"# HELP {name} {text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            number = int(value) if float(value).is_integer() else value
            self.lines.append(f"{name}{_labels(labels)} {number}")


def metrics_text(snapshot: dict[str, Any]) -> str:
    """``snapshot`` (from :func:`status_snapshot`) in the Prometheus text format 0.0.4."""
    w = _Writer()
    server = snapshot["server"]
    w.family("berrymq_info", "gauge", "Always 1; the labels name the node.",
             [({"node": server["node"], "bus": server["bus"], "version": server["berrymq"]}, 1)])
    w.family("berrymq_uptime_seconds", "gauge", "Seconds since the node's counters started.",
             [({}, server["uptime_s"])])
    w.family("berrymq_messages_received", "counter",
             "Messages that came in from other processes.", [({}, snapshot["messages"]["in"])])
    w.family("berrymq_messages_sent", "counter",
             "Messages handed to connections for other processes, or taken by remote queue "
             "clients.", [({}, snapshot["messages"]["out"])])
    w.family("berrymq_messages_duplicate", "counter",
             "Messages that came back round a cycle of nodes, dropped (delivered already).",
             [({}, snapshot["messages"].get("duplicates", 0))])
    w.family("berrymq_bytes_received", "counter", "Request bytes read by the node's servers.",
             [({}, snapshot["bytes"]["in"])])
    w.family("berrymq_bytes_sent", "counter", "Answer bytes written by the node's servers.",
             [({}, snapshot["bytes"]["out"])])
    w.family("berrymq_messages_lost", "counter",
             "Messages not delivered (refused, dropped or not sent), by reason.",
             [({"reason": reason}, count)
              for reason, count in sorted(snapshot["lost"]["reasons"].items())])
    w.family("berrymq_refused", "counter",
             "Connections and sessions refused for being over a cap, by the cap's setting.",
             [({"reason": reason}, count)
              for reason, count in sorted(snapshot.get("refused", {}).get("reasons", {}).items())])
    by_style: dict[tuple[str, str], int] = {}
    for session in snapshot["sessions"]:
        key = (session["scheme"], session["style"])
        by_style[key] = by_style.get(key, 0) + 1
    w.family("berrymq_sessions", "gauge", "Open sessions (tokens) that peers hold, by style.",
             [({"scheme": scheme, "style": style}, n)
              for (scheme, style), n in sorted(by_style.items())])
    by_style = {}
    for connection in snapshot["connections"]:
        key = (connection["scheme"], connection["style"])
        by_style[key] = by_style.get(key, 0) + 1
    w.family("berrymq_connections", "gauge", "Connections this node opened to others, by style.",
             [({"scheme": scheme, "style": style}, n)
              for (scheme, style), n in sorted(by_style.items())])
    queues = snapshot["queues"]
    w.family("berrymq_queue_depth", "gauge", "Messages waiting in a queue.",
             _queue_samples(queues, "depth"))
    w.family("berrymq_queue_bytes", "gauge",
             "Bytes waiting in a remote client's queue, as JSON.", _queue_samples(queues, "bytes"))
    w.family("berrymq_plugin_active", "gauge", "1 when the plugin is active, else 0.",
             [({"plugin": p["name"], "version": p["version"]}, 1 if p["active"] else 0)
              for p in snapshot["plugins"]])
    return "\n".join(w.lines) + "\n"

"""The picture of who talks to whom: receivers, the patterns they follow, and beyond.

:func:`describe` turns a bus into a JSON-serialisable dict; :func:`render` (``to_dot``,
``to_mermaid``) draws such a dict. Because the picture is drawn from the dict alone, a
running node's description fetched over JSON-RPC (method ``network``, see
``berrymq_jsonrpc.graph.fetch``) renders exactly like a local one: that is what ``berrymq
graph URL`` does.

The description (``"version": 1``)::

    {
      "version": 1,
      "node": "3f2a...",            # the bus's node id
      "bus": "default",             # the bus's name
      "receivers": [                # one per receiving object, in registration order
        {"id": "r0", "kind": "function", "name": "app.on_log", "async": false,
         "object": null,            # "Logger#1" for the methods of one instance
         "follows": [{"pattern": "*:log", "guard": null}]},
        {"id": "r1", "kind": "queue", "name": "Queue(task:*)", "async": false,
         "object": null, "follows": [{"pattern": "task:*", "guard": null}],
         "queue": {"size": 0, "maxsize": 0, "shared": false}}
      ],
      "senders": [                  # running adapters (timers, file observers)
        {"id": "s0", "kind": "timer", "name": "IntervalTimer('beat', 1) running",
         "sends": ["beat:tick"]}
      ],
      "connections": [              # "out": made here; "in": a peer's interconnect to here
        {"id": "c0", "address": "tcp://127.0.0.1:7000", "style": "interconnect",
         "direction": "out"}],
      "forwarders": 1,              # how many links carry this bus's messages out
      "transports": [{"scheme": "tcp", "status": "serving tcp://127.0.0.1:7001; ...",
                      "urls": ["tcp://127.0.0.1:7001"]}]  # urls: the addresses it serves
    }
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Literal

from berrymq._description_check import check_description
from berrymq.aio import AsyncReceiver, is_async_receiver
from berrymq.bus import Bus
from berrymq.default import get_bus
from berrymq.identifier import Identifier, parse
from berrymq.receivers.queues import QueueStore
from berrymq.sources import running_adapters

__all__ = ["Format", "check_description", "describe", "render", "show_network", "to_dot",
           "to_mermaid"]

Format = Literal["dot", "mermaid"]
FORMATS: tuple[str, ...] = ("dot", "mermaid")


def _qualname(obj: object) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if module and module != "builtins" else str(name)


def _unwrap(receiver: object) -> object:
    # An async receiver's stand-in (berrymq.aio) holds the function the user registered.
    if isinstance(receiver, AsyncReceiver):
        inner = receiver.__wrapped__
        if inner is not None:
            return inner
    return receiver


def describe(bus: Bus | None = None) -> dict[str, Any]:
    """Describe ``bus`` (the default bus when None) as a JSON-serialisable dict: its
    receivers with the patterns they follow, its queues, the running adapters that send
    on it and its connections. See the module docstring for the shape."""
    if bus is None:
        bus = get_bus()
    elif not isinstance(bus, Bus):  # show_network("mermaid"): a bare AttributeError
        raise TypeError(f"describe the network of a berrymq.Bus (or None for the default "
                        f"bus), got {bus!r}" + (f"; for the format, say format={bus!r}"
                                                if bus in FORMATS else ""))
    receivers: list[dict[str, Any]] = []
    by_key: dict[object, dict[str, Any]] = {}
    instance_numbers: dict[int, str] = {}
    class_counts: dict[str, int] = {}
    for subscription in bus.subscriptions():
        live = subscription.ref()
        if live is None:
            continue
        receiver = _unwrap(live)
        owner = getattr(receiver, "__self__", None)
        func = getattr(receiver, "__func__", None)
        key: object
        entry: dict[str, Any]
        if isinstance(owner, QueueStore):
            key = ("store", id(owner))
        elif owner is not None and func is not None:
            key = ("method", id(owner), id(func))
        else:
            key = ("object", id(receiver))
        entry_or_none = by_key.get(key)
        if entry_or_none is None:
            obj_label = None
            if isinstance(owner, QueueStore):
                shared = subscription.shared
                name = f"Queue({owner.pattern}{', shared' if shared else ''})"
                extra: dict[str, Any] = {"queue": {"size": owner.qsize(),
                                                   "maxsize": owner.maxsize,
                                                   "shared": shared}}
            else:
                extra = {}
                name = _qualname(receiver if func is None else func)
                if owner is not None and not isinstance(owner, type):
                    cls = type(owner).__name__
                    label = instance_numbers.get(id(owner))
                    if label is None:
                        class_counts[cls] = class_counts.get(cls, 0) + 1
                        label = instance_numbers[id(owner)] = f"{cls}#{class_counts[cls]}"
                    obj_label = label
            entry = {
                "id": f"r{len(receivers)}",
                "kind": subscription.kind,
                "name": name,
                "async": live is not receiver or is_async_receiver(receiver),
                "object": obj_label,
                "follows": [],
                **extra,
            }
            by_key[key] = entry
            receivers.append(entry)
        else:
            entry = entry_or_none
        guard = subscription.guard
        entry["follows"].append({
            "pattern": str(subscription.pattern),
            "guard": None if guard is None else _qualname(guard),
        })

    senders = [{"id": f"s{i}", **adapter.describe()}
               for i, adapter in enumerate(running_adapters(bus))]
    connections = [
        {"id": f"c{i}", "address": str(getattr(c, "address", "?")),
         "style": str(getattr(c, "style", "?")), "direction": "out"}
        for i, c in enumerate(bus.connections())
    ]
    transports = []
    for scheme, transport in sorted(bus.transports().items()):
        try:
            status = transport.status()
            peers = transport.peers()
            urls = [str(url) for url in transport.urls]
        except Exception as exc:  # noqa: BLE001 - a picture must not fail on one transport
            status, peers, urls = f"status failed: {exc}", [], []
        transports.append({"scheme": scheme, "status": str(status), "urls": urls})
        connections += [{"id": f"c{len(connections) + i}", "address": str(address),
                         "style": str(style), "direction": "in"}
                        for i, (address, style) in enumerate(peers)]
    return {
        "version": 1,
        "node": bus.node_id,
        "bus": bus.name,
        "receivers": receivers,
        "senders": senders,
        "connections": connections,
        "forwarders": 0 if bus.node is None else len(bus.node.forwarders),
        "transports": transports,
    }


# -- rendering -------------------------------------------------------------------------------


def _patterns(description: Mapping[str, Any]) -> list[str]:
    """Every followed pattern, once, in first-seen order."""
    seen: dict[str, None] = {}
    for receiver in description.get("receivers", ()):
        for follow in receiver.get("follows", ()):
            seen.setdefault(str(follow["pattern"]), None)
    return list(seen)


def _reached(sent: str, patterns: list[str]) -> list[str]:
    """The patterns a message sent as ``sent`` matches."""
    try:
        ident = parse(sent)
    except ValueError:
        return []
    out = []
    for pattern in patterns:
        try:
            if ident.matches(Identifier(pattern)):
                out.append(pattern)
        except ValueError:
            continue
    return out


def _receiver_lines(receiver: Mapping[str, Any]) -> list[str]:
    lines = [str(receiver.get("name", "?"))]
    kind = str(receiver.get("kind", "receiver"))
    if receiver.get("async"):
        kind = f"async {kind}"
    if receiver.get("object"):
        kind = f"{kind} of {receiver['object']}"
    lines.insert(0, kind)
    queue = receiver.get("queue")
    if isinstance(queue, Mapping):
        size = f"{queue.get('size', 0)} waiting"
        if queue.get("maxsize"):
            size += f" (max {queue['maxsize']})"
        lines.append(size)
    return lines


def _bus_lines(description: Mapping[str, Any], bus_name: str) -> list[str]:
    """The text of the bus's own node (its transports and peers); empty when it has no
    connections, forwarders or transports to show."""
    forwarders = int(description.get("forwarders", 0) or 0)
    transports = list(description.get("transports", ()))
    if not (description.get("connections") or forwarders or transports):
        return []
    lines = [f"bus {bus_name}"]
    lines += [f"{t['scheme']}: {t['status']}" for t in transports]
    if forwarders:
        lines.append(f"forwarding to {forwarders} peer(s)")
    return lines


def _named(prefix: str, items: list[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Each item with the name of its node in the picture: ``prefix`` and its position
    (``r0``, ``r1``, ...), which is the ``id`` :func:`describe` gives it. The description's
    own ``id`` is never written: a description from another node could make it anything
    (``r0"]; evil [...`` added statements to the DOT), or the name of another node (``p0``,
    ``bus``) and merge the two; Mermaid has no quoting for node names at all."""
    return [(f"{prefix}{i}", item) for i, item in enumerate(items)]


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(description: Mapping[str, Any]) -> str:
    """Draw a description as a Graphviz DOT digraph (``dot -Tpng`` renders it).

    Senders (adapters) point at the patterns their messages match; each pattern points
    at the receivers following it (an edge label names a guard condition); the node's
    connections hang off a node for the bus itself.
    """
    patterns = _patterns(description)
    pattern_ids = {p: f"p{i}" for i, p in enumerate(patterns)}
    bus_name = str(description.get("bus", "bus"))
    node = str(description.get("node", ""))
    out = [
        "digraph berrymq {",
        "  rankdir=LR;",
        f"  label={_dot_quote(f'berryMQ bus {bus_name} (node {node[:8]})')};",
        "  labelloc=t; fontname=Helvetica;",
        '  node [fontname=Helvetica, fontsize=11];',
        '  edge [fontname=Helvetica, fontsize=9, color="#555555"];',
    ]
    senders = list(description.get("senders", ()))
    receivers = list(description.get("receivers", ()))
    for sid, sender in _named("s", senders):
        label = f"{sender.get('kind', 'sender')}\n{sender.get('name', '')}"
        out.append(f'  {sid} [label={_dot_quote(label)}, shape=cds, style=filled, '
                   'fillcolor="#e3f4df"];')
    for pattern in patterns:
        out.append(f'  {pattern_ids[pattern]} [label={_dot_quote(pattern)}, shape=ellipse, '
                   'style=filled, fillcolor="#fff3c4"];')
    for rid, receiver in _named("r", receivers):
        label = "\n".join(_receiver_lines(receiver))
        if receiver.get("kind") == "queue":
            style = 'shape=cylinder, style=filled, fillcolor="#f6dfe9"'
        else:
            style = 'shape=box, style="rounded,filled", fillcolor="#dcebfb"'
        out.append(f"  {rid} [label={_dot_quote(label)}, {style}];")
    unreached = itertools.count()
    for sid, sender in _named("s", senders):
        for sent in sender.get("sends", ()):
            reached = _reached(str(sent), patterns)
            if not reached:
                uid = f"u{next(unreached)}"
                out.append(f'  {sid} -> {uid} [label={_dot_quote(str(sent))}, style=dashed];')
                out.append(f'  {uid} [shape=plaintext, label="(no receiver)"];')
            for pattern in reached:
                out.append(f'  {sid} -> {pattern_ids[pattern]} '
                           f'[label={_dot_quote(str(sent))}];')
    for rid, receiver in _named("r", receivers):
        for follow in receiver.get("follows", ()):
            attrs = ""
            if follow.get("guard"):
                attrs = f" [label={_dot_quote('if ' + str(follow['guard']))}, style=dashed]"
            out.append(f"  {pattern_ids[str(follow['pattern'])]} -> {rid}{attrs};")
    connections = list(description.get("connections", ()))
    lines = _bus_lines(description, bus_name)
    if lines:
        out.append(f'  bus [label={_dot_quote(chr(10).join(lines))}, shape=hexagon, '
                   'style=filled, fillcolor="#eeeeee"];')
        for cid, connection in _named("c", connections):
            style = str(connection.get("style", ""))
            out.append(f'  {cid} [label={_dot_quote(str(connection["address"]))}, '
                       'shape=box3d];')
            direction = {"interconnect": "both", "oneway": "forward", "queue": "back"}.get(
                style, "forward")
            out.append(f"  bus -> {cid} [label={_dot_quote(_connection_label(connection))}, "
                       f"dir={direction}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _connection_label(connection: Mapping[str, Any]) -> str:
    """``interconnect``, or ``interconnect (from it)`` for one the peer made to this node."""
    style = str(connection.get("style", ""))
    return f"{style} (from it)" if connection.get("direction") == "in" else style


def _mm(text: str) -> str:
    # Mermaid labels in double quotes are HTML: escape quotes and angle brackets (a
    # receiver named <lambda> would be read as a tag and vanish), keep breaks as <br/>.
    escaped = text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    lines = escaped.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return '"' + "<br/>".join(lines) + '"'


def to_mermaid(description: Mapping[str, Any]) -> str:
    """Draw a description as a Mermaid flowchart (the same graph as :func:`to_dot`)."""
    patterns = _patterns(description)
    pattern_ids = {p: f"p{i}" for i, p in enumerate(patterns)}
    bus_name = str(description.get("bus", "bus"))
    out = ["flowchart LR"]
    senders = list(description.get("senders", ()))
    receivers = list(description.get("receivers", ()))
    for sid, sender in _named("s", senders):
        label = f"{sender.get('kind', 'sender')}\n{sender.get('name', '')}"
        out.append(f"  {sid}>{_mm(label)}]")
    for pattern in patterns:
        out.append(f"  {pattern_ids[pattern]}([{_mm(pattern)}])")
    for rid, receiver in _named("r", receivers):
        label = "\n".join(_receiver_lines(receiver))
        if receiver.get("kind") == "queue":
            out.append(f"  {rid}[({_mm(label)})]")
        else:
            out.append(f"  {rid}({_mm(label)})")
    unreached = itertools.count()
    for sid, sender in _named("s", senders):
        for sent in sender.get("sends", ()):
            reached = _reached(str(sent), patterns)
            if not reached:
                out.append(f"  {sid} -.->|{_mm(str(sent))}| "
                           f"u{next(unreached)}[{_mm('(no receiver)')}]")
            for pattern in reached:
                out.append(f"  {sid} -->|{_mm(str(sent))}| {pattern_ids[pattern]}")
    for rid, receiver in _named("r", receivers):
        for follow in receiver.get("follows", ()):
            source = pattern_ids[str(follow["pattern"])]
            if follow.get("guard"):
                out.append(f"  {source} -.->|{_mm('if ' + str(follow['guard']))}| {rid}")
            else:
                out.append(f"  {source} --> {rid}")
    connections = list(description.get("connections", ()))
    lines = _bus_lines(description, bus_name)
    if lines:
        out.append(f"  bus{{{{{_mm(chr(10).join(lines))}}}}}")
        for cid, connection in _named("c", connections):
            style = str(connection.get("style", ""))
            arrow = {"interconnect": "<-->", "queue": "<--"}.get(style, "-->")
            out.append(f"  {cid}[/{_mm(str(connection['address']))}/]")
            out.append(f"  bus {arrow}|{_mm(_connection_label(connection))}| {cid}")
    return "\n".join(out) + "\n"


def render(description: Mapping[str, Any], format: str = "dot") -> str:
    """Draw a description in ``format`` (``"dot"`` or ``"mermaid"``)."""
    if format == "dot":
        return to_dot(description)
    if format == "mermaid":
        return to_mermaid(description)
    raise ValueError(f"unknown network picture format {format!r}; use one of {', '.join(FORMATS)}")


def show_network(bus: Bus | None = None, format: str = "dot") -> str:
    """The current receivers and the identifiers they follow, as Graphviz DOT (or a
    Mermaid flowchart with ``format="mermaid"``), as in berryMQ 0.3.

    ``bus`` is the default bus when None. Render DOT with ``dot -Tpng -o net.png``.
    """
    if format not in FORMATS:
        raise ValueError(
            f"unknown network picture format {format!r}; use one of {', '.join(FORMATS)}"
        )
    return render(describe(bus), format)

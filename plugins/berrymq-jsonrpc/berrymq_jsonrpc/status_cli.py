"""``berrymq status URL``.

- ``berrymq status URL [--json] [--secret S]`` reads ``URL/status`` (the node's HTTP port,
  or its ``--monitor`` address) and prints it as a few readable tables, or with ``--json``
  the JSON document the node sent, indented (the same fields and values, not its bytes).
  Exit status: 0 shown; 1 the node could not be reached or refused (a wrong secret, a
  Host it does not answer to); 2 a usage error.

``serve --monitor HOST:PORT``, which serves the status on an address of its own, comes with
the ``jsonrpc-http`` plugin (:mod:`berrymq_jsonrpc_http.monitor_port`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from berrymq.cli import Commands, UsageError, node_url
from berrymq.default import get_bus
from berrymq.errors import BerryMQError, TransportError
from berrymq.plugins import KNOWN_SCHEMES, get_plugin_host
from berrymq.transports.base import url_parts
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import host_and_port
from berrymq_jsonrpc.cli_support import port_speaks, seconds_argument, secret_hint, shown
from berrymq_jsonrpc.transport import RemoteTransport

__all__ = ["MAX_ANSWER", "ROWS", "Unreachable", "fetch_status", "format_status", "get_json",
           "register_status_commands"]


#: The plugin (entry point, distribution) that serves HTTP: ``serve --http``, ``--monitor``.
HTTP_PLUGIN = KNOWN_SCHEMES["http"]


class Unreachable(TransportError):
    """The node could not be reached, or refused to answer (exit 1)."""


# -- status URL --------------------------------------------------------------------------------


def status_url(url: str, secret: str | None = None) -> str:
    """``http://host:port/status`` from ``http://host:port[/]``, ``host:port`` or ``:port``.
    A ``tcp://`` address is a usage error naming where that node serves its status (asked
    with ``secret``)."""
    if "://" not in url:
        url = "http://" + (f"127.0.0.1{url}" if url.startswith(":") else url)
    try:
        parts = url_parts(url)
        if parts.scheme.lower() != "http":
            asked = url if parts.scheme.lower() == "tcp" else None
            raise UsageError(f"{url!r}: status is served over HTTP; give the node's http:// "
                             f"address ({_http_addresses(asked, secret)})")
        host_and_port(url, parts, "http://127.0.0.1:8000")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    base = f"http://{parts.netloc}{parts.path.rstrip('/')}"
    return base if base.endswith("/status") else base + "/status"


def _http_addresses(tcp_url: str | None = None, secret: str | None = None) -> str:
    """Where a node serves its status: its ``--http`` port or its ``--monitor`` address;
    both are options of ``serve`` that the plugin ``jsonrpc-http`` adds, so when it is not
    active here (a node started from this install has neither) also what to do to have it.
    With the node's ``tcp_url``, the http:// addresses it serves, when it says."""
    served = _served_http(tcp_url, secret) if tcp_url else []
    if served:
        return f"{' or '.join(served)}, which that node serves"
    where = "the node's --http port or its --monitor address"
    host = get_plugin_host()
    if not host.is_active(HTTP_PLUGIN[0]):
        where += (f", options of serve that the plugin {HTTP_PLUGIN[0]!r} adds, which is not "
                  f"active here: {host.how_to_get(*HTTP_PLUGIN)}")
    return where


def _served_http(tcp_url: str, secret: str | None) -> list[str]:
    """The http:// addresses the node at ``tcp_url`` serves, as its answer to ``network``
    within a second lists them; none when it serves none, cannot be asked or is no node."""
    try:
        parts = url_parts(tcp_url)
        # reached within the second first: the client's own connect waits its timeout
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=1.0):
            pass
        transport = get_bus().transport("tcp")
        if not isinstance(transport, RemoteTransport):
            return []
        answer = transport.call_once(tcp_url, p.METHOD_NETWORK, {}, timeout=1.0,
                                     secret=secret or transport.secret)
        return [url for entry in answer["transports"] for url in entry.get("urls", ())
                if type(url) is str and url.startswith("http://")]
    except (BerryMQError, OSError, ValueError, LookupError, TypeError, AttributeError):
        return []  # not asked, or an answer of another form: the general advice instead


def _tcp_port(tcp_url: str | None = None, secret: str | None = None) -> str:
    """What to say when the address given to ``status`` is a node's TCP port."""
    where = _http_addresses(tcp_url, secret)
    return f"that port speaks TCP, not HTTP: the status is served over HTTP, at {where}"


#: The most ``berrymq status`` reads of an answer: a node's ``/status`` at its caps (10,000
#: sessions, as many queues) is about 5 MB; an answer past this is no node's status.
MAX_ANSWER = 64 * 1024 * 1024

#: The fields of ``/status`` that ``berrymq status`` prints (its other fields may be absent).
STATUS_FIELDS = ("server", "messages", "bytes", "lost", "sessions", "connections", "queues",
                 "recent", "plugins")


def get_json(target: str, *, secret: str | None, timeout: float,
             secret_option: str = "") -> Any:
    """The JSON a node answers a GET of ``target`` (one of its status routes: ``/status``,
    ``/network``) with, within ``timeout`` seconds in all (a server that trickles its
    answer is cut off then) and :data:`MAX_ANSWER` bytes; :class:`Unreachable` saying why
    not (``secret_option``: the command's option for the secret, named when none was
    given). Never through a proxy."""
    headers: dict[str, str | bytes] = {"Accept": "application/json"}
    parts = urlsplit(target)
    query = parts.query
    if secret and any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in secret):
        # A line break...: no header can carry it (http.client refused to write one, and
        # the command failed); the node reads the query's secret too.
        query = "&".join(filter(None, (query, urlencode({"secret": secret}))))
    elif secret:
        # (bytes: http.client would encode a str as Latin-1, and fail on other letters)
        headers["Authorization"] = f"Bearer {secret}".encode()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    expired = threading.Event()

    def expire() -> None:  # wakes a read blocked on the socket: the deadline is overall
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    late = Unreachable(f"{target} did not answer within {timeout:g}s")
    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        connection.request("GET", urlunsplit(("", "", parts.path or "/", query, "")),
                           headers=headers)
        with connection.getresponse() as answer:
            if answer.status != 200:
                text = shown(answer.read(500).decode("utf-8", "replace").strip())
                hint = ""
                if answer.status == 401 or (answer.status == 403 and secret):  # 403 unasked: not the secret
                    hint = secret_hint(given=bool(secret), option=secret_option)
                raise Unreachable(f"{target} answered HTTP {answer.status}: {text}{hint}")
            body = _read_whole(answer, target)
        if expired.is_set():  # the end of what was read came from the deadline's shutdown
            raise late
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise late from None
        # HTTPException: what answered is no HTTP server, e.g. a berryMQ TCP port
        if port_speaks(target, min(timeout, 1.0)) == "tcp":
            tcp_url = f"tcp://{parts.netloc}"
            raise Unreachable(f"cannot read {target}: {_tcp_port(tcp_url, secret)}") from None
        raise Unreachable(f"cannot reach {target}: {str(exc) or type(exc).__name__}") from None
    finally:
        timer.cancel()
        connection.close()
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # (nested past what Python's decoder goes)
        raise Unreachable(f"{target} did not answer with JSON: {body[:100]!r}") from None


def _read_whole(answer: http.client.HTTPResponse, target: str) -> bytes:
    """The body of ``answer``, refused past :data:`MAX_ANSWER` bytes (announced or read)."""
    too_large = Unreachable(f"{target} answered with over {MAX_ANSWER // 2**20} MiB, more than "
                            "a node's status holds; the answer was not read")
    if (answer.length or 0) > MAX_ANSWER:
        raise too_large
    chunks, size = [], 0
    while chunk := answer.read1(65536):
        size += len(chunk)
        if size > MAX_ANSWER:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_status(url: str, *, secret: str | None = None, timeout: float = 10.0) -> Any:
    """The JSON of a node's ``/status``; :class:`Unreachable` saying why not, also when
    what answered is no berryMQ node (JSON without the fields of a status)."""
    target = status_url(url, secret)
    status = get_json(target, secret=secret, timeout=timeout, secret_option="--secret")
    missing = ([name for name in STATUS_FIELDS if name not in status]
               if type(status) is dict else list(STATUS_FIELDS))
    if missing:
        raise Unreachable(f"{target} did not answer with a berryMQ node's status: "
                          f"{', '.join(missing)} missing from {json.dumps(status)[:100]}")
    return status


def _human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:g}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


#: How many rows of each table ``berrymq status`` prints unless given ``--all``.
ROWS = 50


def _table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]],
           empty: str, limit: int | None = None) -> list[str]:
    lines = [f"{title}:"]
    if not rows:
        return [*lines, f"  ({empty})"]
    more = 0 if limit is None else max(0, len(rows) - limit)
    if more:
        rows = rows[:limit]
    rows = [tuple(shown(str(c)) for c in row) for row in rows]  # what a node was told
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths,
                                                                   strict=True)).rstrip())
    if more:
        lines.append(f"  ... and {more} more (--all or --json shows every one)")
    return lines


def _counts(counted: dict[str, Any]) -> str:
    """``{"total": N, "reasons": {...}}`` (``lost``, ``refused``) as ``N (reason: n, ...)``."""
    if not counted["total"]:
        return "0"
    return f"{counted['total']} (" + ", ".join(
        f"{r}: {n}" for r, n in sorted(counted["reasons"].items())) + ")"


def format_status(status: dict[str, Any], recent: int = 10, rows: int | None = ROWS) -> str:
    """A node's ``/status`` as text for a terminal: at most ``rows`` rows of sessions,
    connections and queues each (None: all of them; a node may hold thousands)."""
    s, m, b, lost = status["server"], status["messages"], status["bytes"], status["lost"]
    refused = status.get("refused", {"total": 0, "reasons": {}})
    out = [
        f"node {s['node']} (bus {s['bus']}, berryMQ {s['berrymq']}, pid {s['pid']}), "
        f"up {_age(s['uptime_s'])}",
        f"listening: {', '.join(s['listening']) or '-'}",
        f"messages:  in {m['in']} ({_human(m['in_per_s'])}/s)  out {m['out']} "
        f"({_human(m['out_per_s'])}/s)  duplicates {m.get('duplicates', 0)}",
        f"bytes:     in {_human(b['in'])}B ({_human(b['in_per_s'])}B/s)  out "
        f"{_human(b['out'])}B ({_human(b['out_per_s'])}B/s)",
        "lost:      " + _counts(lost),
        "refused:   " + _counts(refused),
        "",
    ]
    out += _table("sessions", ("ID", "STYLE", "PEER", "AGE", "IDLE", "TTL"), [
        (x["id"], x["style"], x["peer"] or "-", _age(x["age_s"]), _age(x["idle_s"]),
         _age(x["ttl_s"])) for x in status["sessions"]], "no peer is connected", rows)
    out += _table("connections", ("ADDRESS", "STYLE", "AGE", "PENDING", "SENT", "LOST",
                                  "REFUSED", "STATE"), [
        (x["address"], x["style"], _age(x["age_s"]), str(x["pending"]), str(x["sent"]),
         str(x["lost"]), str(x.get("refused", "-")), x.get("state", "-"))
        for x in status["connections"]], "none opened by this node", rows)
    out += _table("queues", ("QUEUE", "KIND", "DEPTH", "BYTES", "MAX"), [
        (x["name"], x["kind"], str(x["depth"]), _human(x["bytes"]), str(x["maxsize"] or "-"))
        for x in status["queues"]], "none", rows)
    out += _table(f"recent messages (last {recent})", ("TIME", "DIR", "IDENTIFIER", "PEER"), [
        (time.strftime("%H:%M:%S", time.localtime(x["time"])), x["direction"],
         x["identifier"], x["peer"] or "-") for x in status["recent"][-recent:]], "none yet")
    out += _table("plugins", ("NAME", "VERSION", "ACTIVE", "STATE"), [
        (x["name"], x["version"], "yes" if x["active"] else "no",
         "; ".join(x["status"]) or x["reason"]) for x in status["plugins"]], "none")
    return "\n".join(shown(line) for line in out) + "\n"


def _cmd_status(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get(p.SECRET_ENV_VAR) or None
    try:
        status = fetch_status(node_url(args.url, "http://127.0.0.1:8000"), secret=secret,
                              timeout=args.timeout)
    except Unreachable as exc:
        print(f"berrymq: error: {shown(str(exc))}", file=sys.stderr)
        return 1
    if args.json:  # a lone surrogate written as its JSON escape, which decodes back to it
        sys.stdout.write(json.dumps(status, ensure_ascii=False, indent=2).encode(
            "utf-8", "backslashreplace").decode("utf-8") + "\n")
        return 0
    try:
        text = format_status(status, rows=None if args.all else ROWS)
    # a field of another form (OSError: a time no clock shows, 1e18)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
        print(f"berrymq: error: the status of {args.url or 'the node'} could not be read: "
              f"{type(exc).__name__}: {shown(str(exc))} (--json prints it as sent)",
              file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def register_status_commands(commands: Commands) -> None:
    """Add ``status`` (called once, from :func:`berrymq_jsonrpc.cli.register_commands`)."""
    parser = commands.add(
        "status", _cmd_status, help="show a running node's state (its /status)",
        description="Read the /status of the node at URL (its HTTP port, or its --monitor "
                    "address) and print it. Exit status: 0 shown, 1 unreachable or refused, "
                    "2 usage error.",
    )
    parser.add_argument("url", nargs="?", metavar="URL",
                        help="the node, e.g. http://127.0.0.1:8000 (default: $BERRYMQ_URL)")
    parser.add_argument("--json", action="store_true",
                        help="print the node's JSON document, indented")
    parser.add_argument("--all", action="store_true",
                        help=f"print every session, connection and queue (default: the "
                             f"first {ROWS} of each)")
    parser.add_argument("--secret", help=f"the node's secret (default: ${p.SECRET_ENV_VAR})")
    parser.add_argument("--timeout", type=seconds_argument, default=10.0, metavar="SECONDS",
                        help="seconds to wait for the node's whole answer (default 10)")

"""Serving a node's status: the routes and the access rule.

:class:`Monitor` answers ``GET /status`` (JSON), ``GET /metrics`` (Prometheus text),
``GET /network`` (the picture of :func:`berrymq.network.describe`, JSON) and ``GET /`` (the
live page) for one bus. The ``jsonrpc-http`` server calls it for GET requests on the node's
HTTP port, and on the address of ``berrymq serve --monitor HOST:PORT``, where it serves
nothing else (:mod:`berrymq_jsonrpc_http.monitor_port`).

**The access rule** (the same as for the JSON-RPC method ``network``, see :func:`access`):
a node without a secret answers anyone who reaches a loopback address; a node with a
secret (required to serve any other address) answers only requests that present it, as
``Authorization: Bearer <secret>`` or, for a browser, ``?secret=<secret>`` in the URL.
Before that, the ``Host`` header must name the node (:func:`host_allowed`): the address it
is bound to, ``localhost``, ``127.0.0.1``, ``[::1]`` or a name from the ``names`` setting;
anything else is answered 421, which defeats DNS rebinding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from berrymq import network
from berrymq.wire import dumps
from berrymq_jsonrpc.addresses import is_loopback
from berrymq_jsonrpc.one_build import OneBuild
from berrymq_jsonrpc.sessions import WAITS
from berrymq_jsonrpc.status import metrics_text, status_snapshot

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["LOOPBACK_NAMES", "MONITOR_ONLY", "Monitor", "access", "answer_names",
           "host_allowed", "presented_secret"]


#: The names every node answers to, whatever it is bound to.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

#: An answer: HTTP status, headers, body.
Answer = tuple[int, dict[str, str], bytes]

_PATHS = frozenset({"/", "/status", "/metrics", "/network"})

#: The refusal of any other request at a ``serve --monitor`` address (the routes alone).
MONITOR_ONLY = ("this address (a node's serve --monitor) serves GET /, /status, /metrics, "
                "/network, and no JSON-RPC: send to the node's --http or --tcp address")


# -- the access rule ---------------------------------------------------------------------------


def answer_names(bound_host: str, names: Iterable[str] = ()) -> frozenset[str]:
    """The host names a node bound to ``bound_host`` answers to (lower case, IPv6 without
    brackets): the bound address, the loopback names and the configured ``names``."""
    extra = {n.strip().strip("[]").lower() for n in names if n.strip()}
    return frozenset({*LOOPBACK_NAMES, bound_host.strip("[]").lower(), *extra})


def host_allowed(host_header: str | None, names: frozenset[str]) -> bool:
    """Whether a ``Host`` header (``name``, ``name:port``, ``[v6]:port``) names the node."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1:] and not host[end + 1:].startswith(":")):
            return False
        name = host[1:end]
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    else:
        name = host
    return name in names


def presented_secret(headers: dict[str, str], query: str) -> tuple[str, ...] | None:
    """The secret a request presents, as the texts it may be: ``Authorization: Bearer
    <secret>``, else the ``secret`` query parameter; None when it presents none.

    ``headers`` are HTTP's bytes read as Latin-1, a character each. A secret past ASCII
    comes in the UTF-8 that curl, Prometheus and ``berrymq status`` send (it was refused
    as wrong), or in Latin-1 from older clients: both readings are kept, so the exact
    bytes of the secret in either encoding match (:func:`access`). Only HTTP's spaces
    and tabs are stripped (``str.strip`` also took a last ``\x85`` or ``\xa0``: bytes
    of the UTF-8 of ``à``, ``Å``)."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip(" \t")
    if scheme.lower() == "bearer" and token:
        try:
            decoded = token.encode("latin-1").decode("utf-8")
        except UnicodeError:  # not UTF-8 (or not read as Latin-1): as it is
            return (token,)
        return (token,) if decoded == token else (token, decoded)
    values = parse_qs(query).get("secret")
    return (values[0],) if values else None


def access(listener_loopback: bool, secret: str | None,
           presented: str | tuple[str, ...] | None) -> int | None:
    """The rule for everything that describes a node: None when allowed, else the HTTP
    status to refuse with (401 nothing presented, 403 wrong or not possible).

    Without a secret, only a loopback listener answers (a node refuses to serve another
    address without one). With a secret, it must be presented (one of the texts of
    :func:`presented_secret`), on loopback too, as the node's JSON-RPC methods
    (``network`` among them) require it on every address. A secret with spaces or tabs
    at its ends also matches without them, as HTTP's header leaves it (it was refused as
    wrong, though right, in ``Authorization``).
    """
    if secret is None:
        return None if listener_loopback else 403
    if presented is None:
        return 401
    expected = {secret.encode("utf-8", "surrogatepass"),
                secret.strip(" \t").encode("utf-8", "surrogatepass")}
    matches = [hmac.compare_digest(text.encode("utf-8", "surrogatepass"), form)
               for text in ((presented,) if isinstance(presented, str) else presented)
               for form in expected]
    return None if any(matches) else 403


# -- the routes --------------------------------------------------------------------------------


def _inline_page() -> tuple[bytes, str]:
    """The live page with its stylesheet and script inlined (so one request, behind the
    access rule, brings everything), and the CSP hash of the script."""
    folder = resources.files("berrymq_jsonrpc") / "static"
    page = (folder / "index.html").read_text("utf-8")
    style = (folder / "status.css").read_text("utf-8")
    script = (folder / "status.js").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    page = page.replace("/*STYLE*/", style).replace("/*SCRIPT*/", script)
    return page.encode("utf-8"), f"'sha256-{digest}'"


_page: tuple[bytes, str] | None = None


def _text(status: int, text: str, extra: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "text/plain; charset=utf-8", **(extra or {})}, (
        text + "\n").encode()


class Monitor:
    """The status routes of one bus, behind the access rule.

    :param bus: the node.
    :param host: the address the listener is bound to (decides loopback, names the node).
    :param secret: the node's shared secret, or None.
    :param names: more host names the node answers to (the ``names`` setting).
    """

    def __init__(self, bus: Bus, *, host: str, secret: str | None,
                 names: Iterable[str] = ()) -> None:
        self.bus = bus
        self.loopback = is_loopback(host.strip("[]"))
        self.secret = secret
        self.names = answer_names(host, names)
        # each route's answer built off the I/O loop (a large node's status takes a
        # while), one at a time: a flood of scrapers takes one thread of WAITS, which
        # ask shares, not all of them
        self._builds = {path: OneBuild(partial(self._route, path), WAITS) for path in _PATHS}

    async def respond(self, method: str, target: str, headers: dict[str, str]
                      ) -> Answer | None:
        """Answer a GET of a status route; None for any other request (the caller's own).
        Called on the I/O loop; ``headers`` have lower-case names.
        """
        path, _, query = target.partition("?")
        if method != "GET" or path not in _PATHS:
            return None
        refusal = self._refusal(headers, query)
        return refusal if refusal is not None else await self._builds[path].get()

    def _refusal(self, headers: dict[str, str], query: str) -> Answer | None:
        """The answer that refuses the request under the access rule; None to go on."""
        if not host_allowed(headers.get("host"), self.names):
            return _text(421, "this node does not answer to that Host name")
        refused = access(self.loopback, self.secret, presented_secret(headers, query))
        if refused == 401:
            return _text(401, "this node's status needs its secret: Authorization: Bearer "
                              "<secret>, or ?secret=<secret>",
                         {"WWW-Authenticate": 'Bearer realm="berryMQ"'})
        if refused is not None:
            return _text(403, "wrong secret, or this address cannot show the node's status")
        return None

    def _route(self, path: str) -> Answer:
        plain = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        if path == "/status":
            # the node's codec: a lone surrogate in a name is written as its escape
            # (encoded strictly, one such name made every status request fail)
            return 200, {"Content-Type": "application/json", **plain}, dumps(
                status_snapshot(self.bus)).encode()
        if path == "/metrics":
            text = metrics_text(status_snapshot(self.bus))
            return 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8",
                         **plain}, text.encode("utf-8", "replace")
        if path == "/network":
            return 200, {"Content-Type": "application/json", **plain}, dumps(
                network.describe(self.bus)).encode()
        global _page
        if _page is None:
            _page = _inline_page()
        page, script_hash = _page
        csp = (f"default-src 'none'; script-src {script_hash}; style-src 'unsafe-inline'; "
               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
               "frame-ancestors 'none'")
        return 200, {"Content-Type": "text/html; charset=utf-8",
                     "Content-Security-Policy": csp, "Referrer-Policy": "no-referrer",
                     **plain}, page

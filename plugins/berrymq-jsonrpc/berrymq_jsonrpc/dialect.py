"""JSON-RPC 1.0 and the original berryMQ 0.3's dialect, on the server side (issue 11).

The original berryMQ (0.2, 0.3) and many JSON-RPC libraries of its age speak JSON-RPC
1.0: requests without the ``"jsonrpc"`` member, parameters by position, answers holding
both ``result`` and ``error`` (one of them null), POSTed to ``/JSON`` with whatever content
type their HTTP code sends (0.3 sends ``text/xml``: its client is built on
``xmlrpc.client.Transport``). This module lets a node serve them, and only them, without
touching the 2.0 hot path:

- :func:`answer_v1` answers one 1.0 request: normalised to 2.0 (``"jsonrpc": "2.0"``, the
  positional parameters named), run by the service's dispatcher, rendered in 1.0 form.
  :meth:`Service.handle_parsed <berrymq_jsonrpc.service.Service.handle_parsed>` calls it
  for every object without a ``jsonrpc`` member.
- :func:`accepts_media_type` and :func:`serves_path` are what the HTTP server accepts.
- ``interconnect`` from a 1.0 peer is answered here (:func:`interconnect_v1`), as the
  original did: the token the peer proposes names its session in both directions, and the
  node calls the peer back in 1.0 form (:mod:`berrymq_jsonrpc.dialect_link`) with
  ``send_message``, one message per request, the only forwarding method the original knew.

A 1.0 request carries no shared secret (its parameters are positional), so a node that
requires one (it serves a non-loopback address) answers every 1.0 request with
:data:`~berrymq_jsonrpc.protocol.UNAUTHORISED` and a text saying why.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from berrymq.wire import dumps, loads
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import netloc, served_here
from berrymq_jsonrpc.dialect_link import CARRIED, V1HttpClient, V1Link
from berrymq_jsonrpc.jsonrpc import Dispatcher, error_v1, invalid_params
from berrymq_jsonrpc.limits import CALLBACK_CHECK, unreachable
from berrymq_jsonrpc.params import host_port_pair, session_ttl
from berrymq_jsonrpc.sessions import in_waits, link_failed

if TYPE_CHECKING:
    from berrymq_jsonrpc.service import Service

__all__ = [
    "CALLBACK_TIMEOUT",
    "HTTP_PATHS",
    "MAX_CALLBACK_PATH",
    "MEDIA_TYPES",
    "accepts_media_type",
    "answer_v1",
    "callback_address",
    "in_v1_form",
    "interconnect_v1",
    "render_v1",
    "serves_path",
    "to_v2",
]

logger = logging.getLogger("berrymq.remote")

#: The paths a node answers JSON-RPC POSTs at: ``/`` (the protocol's own), ``/JSON`` (the
#: original's client default) and ``/jsonrpc`` (a common library default).
HTTP_PATHS = ("/", "/JSON", "/jsonrpc")
#: Request media types the HTTP server accepts (a request with no Content-Type at all is
#: accepted too, unless it comes from a web page: tinyrpc's HTTP client sends none).
#: ``text/xml`` is what berryMQ 0.3's client sends. None of them is one a web page can send
#: without the browser asking the server first (CORS).
MEDIA_TYPES = frozenset({
    "application/json", "application/json-rpc", "application/jsonrequest", "text/xml",
})
#: Seconds the node waits for a 1.0 peer to answer a call-back (and to connect), unless the
#: transport's ``timeout`` setting says otherwise (:attr:`Service.callback_timeout`).
CALLBACK_TIMEOUT = 10.0
#: The path a 1.0 peer that gave its address as ``[host, port]`` is called back at: the
#: original's client posts there, and the original's server serves it (and ``/``).
V1_CALLBACK_PATH = "/JSON"

_POSITIONAL_INTERCONNECT = ("addr", "token", "ttl")
_NO_SECRET = ("JSON-RPC 1.0 requests carry no secret and this node requires one (setting "
              "secret, or BERRYMQ_SECRET): speak JSON-RPC 2.0 with the 'secret' parameter")


def accepts_media_type(header: str | None, origin: str | None = None) -> bool:
    """Whether the HTTP server takes a request with this ``Content-Type`` header (None or
    empty: no header); parameters such as ``charset`` are ignored.

    A request without a Content-Type is refused when it has an ``Origin`` header: a web
    page can send one to a loopback node without the browser asking first (a CORS
    "simple request", e.g. ``fetch`` with a ``Blob`` body), which no other accepted type
    allows; the JSON-RPC clients that send no Content-Type send no Origin either.
    """
    if not header:
        return not origin
    return header.split(";", 1)[0].strip().lower() in MEDIA_TYPES


def serves_path(target: str) -> bool:
    """Whether the HTTP server answers JSON-RPC POSTed to ``target`` (a query is ignored)."""
    return target.split("?", 1)[0] in HTTP_PATHS


#: The ids a 2.0 request may have; a 1.0 request's of another type (an array, an object,
#: a boolean: 1.0 allows any) stands in as :data:`_ID_STAND_IN` while it is answered.
_V2_IDS = (type(None), str, int, float)
_ID_STAND_IN = "berrymq: a JSON-RPC 1.0 id of another type"

#: The optional members of a ``send_message`` by name, null for omitted as by position:
#: its arguments, and what a berryMQ node carries (:data:`CARRIED`).
_OPTIONAL_KEYS = frozenset({"args", "kwargs", "uid", "hops"})


#: The members of a 1.0 request: its own three, and what a berryMQ node carries.
_V1_KEYS = frozenset({"method", "params", "id", CARRIED})


def to_v2(request: dict[str, Any]) -> dict[str, Any]:
    """The 2.0 form of a 1.0 request (a new object; the id is kept as it is, null too, but
    one no 2.0 request may have: see :data:`_V2_IDS`).

    Absent ``params`` are ``[]``; trailing nulls in positional params are omitted
    parameters (the original sent ``None`` for a default ``ttl`` or ``timeout``); the
    original's ``close_connection(token, addr)`` drops the unused ``addr``; and the uid
    and hops a berryMQ node carries in a ``send_message`` (:data:`CARRIED`) become its
    parameters ``uid`` and ``hops`` (a null one of :data:`_OPTIONAL_KEYS` by name is
    omitted).
    """
    v2 = dict(request)
    v2["jsonrpc"] = "2.0"
    if type(v2.get("id")) not in _V2_IDS:  # 1.0 takes an id of any type: in_v1_form puts
        v2["id"] = _ID_STAND_IN              # it back in the answer
    carried = v2.pop(CARRIED, None)
    params = v2.get("params", [])
    # a berryMQ node's uid and hops (dialect_link), whichever form the params take
    uid_and_hops = (v2.get("method") == p.METHOD_SEND_MESSAGE and type(carried) is dict)
    if type(params) is list:
        params = list(params)
        while params and params[-1] is None:
            params.pop()
        if v2.get("method") == p.METHOD_CLOSE_CONNECTION and len(params) == 2:
            params.pop()
        if uid_and_hops and 2 <= len(params) <= 4:  # (args and kwargs may be left out)
            params += [[], {}][len(params) - 2:]
            params += [carried.get("uid"), carried.get("hops", 0)]
        elif uid_and_hops and len(params) > 4 and params[4] is None:  # a null uid given
            params[4] = carried.get("uid")
    elif type(params) is dict and v2.get("method") == p.METHOD_SEND_MESSAGE:
        # null members stand for omitted ones, as trailing nulls by position
        params = {k: v for k, v in params.items() if v is not None or k not in _OPTIONAL_KEYS}
        if uid_and_hops and "uid" not in params:
            params.update(uid=carried.get("uid"), hops=params.get("hops", carried.get("hops", 0)))
    v2["params"] = params
    return v2


def render_v1(answer: dict[str, Any]) -> dict[str, Any]:
    """The 1.0 form of a 2.0 response object: ``result`` and ``error``, one of them null."""
    return {"result": answer.get("result"), "error": answer.get("error"), "id": answer.get("id")}


def answer_v1(service: Service, request: dict[str, Any], context: Any) -> bytes | None:
    """Answer one JSON-RPC 1.0 request (an object without a ``jsonrpc`` member; in a
    batch, a 2.0 feature, such a member is an Invalid Request) in 1.0 form; None when it
    has no ``id`` member. A request with ``"id": null`` is answered, with ``"id": null``:
    the original's client sends every call so and waits for the answer."""
    request_id = request.get("id")
    if service.requires_secret:  # refused, and a notification is not even answered that
        if "id" not in request:
            return None
        return error_v1(p.UNAUTHORISED, p.APPLICATION_ERRORS[p.UNAUTHORISED], request_id,
                         _NO_SECRET)
    if not request.keys() <= _V1_KEYS:  # (the 2.0 check would name the jsonrpc member)
        return error_v1(p.INVALID_REQUEST, "Invalid Request", None,
                        f"a JSON-RPC 1.0 request has no members but method, params, id and "
                        f"{CARRIED} (what a berryMQ node carries)")
    v2 = to_v2(request)
    if v2.get("method") == p.METHOD_INTERCONNECT:
        # the original's interconnect, answered here; the dispatcher wraps it all the same
        dispatcher = Dispatcher(
            {p.METHOD_INTERCONNECT: lambda ctx, params: interconnect_v1(service, params, ctx)},
            {p.METHOD_INTERCONNECT: _POSITIONAL_INTERCONNECT},
        )
    else:
        dispatcher = service.dispatcher
    reply = dispatcher.handle_parsed(v2, context)
    return None if reply is None else in_v1_form(reply, request_id)


def in_v1_form(reply: bytes, request_id: Any) -> bytes:
    """A 2.0 answer (one response object, as text) to a 1.0 request whose id was
    ``request_id``, in 1.0 form (:func:`render_v1`)."""
    answer = loads(reply)
    if answer.get("id") == _ID_STAND_IN:
        answer["id"] = request_id
    return dumps(render_v1(answer)).encode()




# -- interconnect from a 1.0 peer ------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: The longest path a 1.0 peer may be called back at (the node shows it: ``/status``).
MAX_CALLBACK_PATH = 1024


def _url_path(path: str) -> bool:
    """Whether ``path`` is what a URL's path may be: printable ASCII without spaces, of at
    most :data:`MAX_CALLBACK_PATH` characters. (Any text was taken, and shown as the
    peer's name: a lone surrogate made every status request fail, escape codes reached
    the terminal of ``berrymq status``, 500 KB paths made the status 70 MB.)"""
    return len(path) <= MAX_CALLBACK_PATH and p.printable_word(path)


def callback_address(addr: Any) -> tuple[str, int, str]:
    """``(host, port, path)`` of the address a 1.0 peer gave ``interconnect``: the
    original's ``[host, port]`` (called back at ``/JSON``) or an ``http://`` URL (at its
    path, ``/`` when none). Only loopback hosts are called back (the node serves 1.0 only
    on loopback): Invalid params otherwise."""
    pair = host_port_pair(addr)
    if pair is not None:
        (host, port), path = pair, V1_CALLBACK_PATH
    elif type(addr) is str:
        parts = urlsplit(addr)
        try:
            port_or_none = parts.port
        except ValueError:
            port_or_none = None
        if parts.scheme != "http" or not parts.hostname or port_or_none is None:
            raise invalid_params("'addr' must be [host, port] or an http://host:port URL")
        if parts.username is not None or parts.query or parts.fragment:
            raise invalid_params("'addr' must be an http://host:port/path URL without "
                                 "credentials, query or fragment, none of which is sent")
        host, port, path = parts.hostname, port_or_none, parts.path or "/"
        if not _url_path(path):
            raise invalid_params(f"'addr' has a path that is no URL path: at most "
                                 f"{MAX_CALLBACK_PATH} printable ASCII characters without "
                                 "spaces (percent-encode others)")
    else:
        raise invalid_params("'addr' must be [host, port] or an http://host:port URL: the "
                             "peer's own JSON-RPC server, which this node calls back")
    if not 0 < port < 65536:
        raise invalid_params(f"'addr' has an invalid port {port}")
    if not _loopback(host):
        raise invalid_params(f"'addr' {host!r} is not a loopback address; this node calls "
                             "back JSON-RPC 1.0 peers on this machine only")
    if served_here(port):
        # (an original 0.3 node's circles go round for ever: no node is its own peer)
        raise invalid_params(f"'addr' {netloc(host, port)} is this node's own server: "
                             "a 1.0 interconnect to itself would hand every message back "
                             "to it")
    return host, port, path


def _proposed_token(token: Any) -> str:
    if type(token) is not str or not p.proposable_token(token):
        shortest, longest = p.PROPOSED_TOKEN_LENGTHS
        raise invalid_params(
            f"'token' must be the peer's own token: {shortest} to {longest} printable "
            "ASCII characters without spaces"
        )
    return token


def interconnect_v1(service: Service, params: dict[str, Any], context: Any) -> str:
    """``interconnect(addr, token, ttl)`` from a 1.0 peer, as the original did it.

    The proposed ``token`` names the session both ways: the peer sends with it, and the
    node calls the peer back with it. The session only sends and forwards (no queue: a
    queue session always gets a token the node issues); a token that names an open
    session is refused. Returns the token.
    """
    unknown = params.keys() - {*_POSITIONAL_INTERCONNECT, "secret"}  # ignored, as by
    if unknown:                                                       # every 1.0 method
        raise invalid_params(f"interconnect has no parameter {sorted(unknown)[0]!r}")
    host, port, path = callback_address(params.get("addr"))
    service.callbacks.check(host)  # callback_hosts
    token = _proposed_token(params.get("token"))
    ttl = session_ttl(params, service.max_ttl)
    service.check_ttl(ttl)  # and max_sessions (check_room), before the peer is called
    service.check_room()
    client = V1HttpClient(host, port, path, service.callback_timeout)
    _check_reachable(host, port, client.url)
    session = service.open_session("interconnect", ttl, context, token=token)

    def dead(exc: BaseException) -> None:
        in_waits(service.close_session, token, link_failed(exc))

    link = V1Link(client, token, name=f"jsonrpc-1.0:{client.url}", on_dead=dead,
                  stats=service.stats, on_loss=service.on_loss, failures=service.link_failures)
    link.session = session
    session.link = link
    service.bus.add_forwarder(link)
    return token


def _check_reachable(host: str, port: int, url: str) -> None:
    """Refuse an ``interconnect`` whose callback address accepts no connection, at once
    and before any session, as a 2.0 one is (*Not available*, naming the address)."""
    try:
        with socket.create_connection((host, port), timeout=CALLBACK_CHECK):
            pass
    except OSError as exc:
        logger.info("cannot call back %s for a 1.0 interconnect: %s", url, exc)
        raise unreachable(url) from None

"""The berryMQ wire protocol: JSON-RPC 2.0 over HTTP or over a TCP stream.

This module is the single source of truth for the protocol's names and numbers; the
transport plugins, the command line and the documentation (``docs/protocol.md``) take
them from here. It imports nothing from the JSON-RPC libraries.

Framing
=======

- **HTTP** (:data:`HTTP_PATH`): every request is ``POST /`` with
  ``Content-Type: application/json`` (a ``charset`` parameter is allowed) and a
  ``Content-Length`` (the other paths and media types of older JSON-RPC clients that are
  also accepted, and JSON-RPC 1.0, are in :mod:`berrymq_jsonrpc.dialect`); the body is
  one JSON-RPC request or a batch (a JSON array). The answer is ``200`` with a JSON body
  (also for JSON-RPC errors), or ``204`` with no body when nothing is to be answered
  (notifications only). Connections are kept alive
  (HTTP/1.1; HTTP/1.0 with ``Connection: keep-alive``); ``Expect: 100-continue`` is
  honoured. A body over the size limit is answered ``413`` with the JSON-RPC error
  :data:`TOO_LARGE` and the connection is closed. HTTP-level mistakes are answered in
  plain text and close the connection: ``405`` (not POST), ``404`` (another path),
  ``415`` (another content type), ``411`` (neither ``Content-Length`` nor a chunked
  body), ``400``,
  ``421`` (a ``Host`` header that does not name the node).
- **TCP** (:data:`LINE_TERMINATOR`): each request and each response is one line of UTF-8
  JSON ending in ``\\n`` (JSON escapes newlines inside strings, so a text never spans two
  lines). Responses to one connection's requests may come in any order; match them by
  ``id``. A line over the size limit is answered with :data:`TOO_LARGE` (``id`` null)
  and the server then closes the connection. Over TCP the server may also *send*
  requests on the same connection (an interconnected peer forwards messages with
  ``send_message``/``send_messages`` and asks with ``ask``), so a client that used
  ``interconnect`` reads lines that are either responses (they have ``result`` or
  ``error``) or requests (they have ``method``) and answers the latter.

JSON rules: texts are UTF-8; ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON and a
request holding them is a parse error (-32700); berryMQ never writes them.

Messages on the wire
====================

A message is ``[identifier, args, kwargs]``: the identifier as text
(``name[@namespace]:action``), ``args`` a JSON array and ``kwargs`` a JSON object. Names
starting with ``_`` are local and never cross processes (refused with -32602).
In ``send_messages`` an element may have a fourth member, an object of the optional
extras below (``uid``, ``hops``, ``reply_to``).

Connections and sessions
========================

``connect_oneway``, ``interconnect`` and ``connect_via_queue`` open a *session* on the
server and return its token; later requests name the session with ``token``. A session
that is not used for ``ttl`` seconds (default 1000) is closed and its queue freed; any
request naming it keeps it alive. A token is valid from any connection of its transport
(clients that open a connection per call can use every style); only an interconnection
over TCP, which the node answers over the connection it was opened on, closes with that
connection. A TCP request followed by a half-close is answered before the close.
A blocking ``get`` waits at most :data:`DEFAULT_MAX_GET_WAIT`
seconds on the server (then :data:`EMPTY`; ask again to wait longer).

Safety
======

Servers listen on loopback unless told otherwise. A server bound to any other address
requires a shared secret: every request then carries it as the parameter
:data:`PARAM_SECRET` (compared in constant time), or is answered :data:`UNAUTHORISED`.
Tokens are :data:`TOKEN_BYTES` random bytes from :mod:`secrets`, URL-safe base64 text.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APPLICATION_ERRORS",
    "BAD_TOKEN",
    "DEFAULT_MAX_GET_WAIT",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "EMPTY",
    "HTTP_PATH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_CLIENT",
    "DEFAULT_MAX_INTERCONNECTS_PER_CONNECTION",
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_TTL",
    "INVALID_REQUEST",
    "LIMIT_REACHED",
    "LINE_TERMINATOR",
    "METHODS",
    "NOT_RUN_AS_NOTIFICATIONS",
    "POSITIONAL_PARAMS",
    "METHOD_ASK",
    "METHOD_CLOSE_CONNECTION",
    "METHOD_CONNECT_ONEWAY",
    "METHOD_CONNECT_VIA_QUEUE",
    "METHOD_GET",
    "METHOD_GET_NOWAIT",
    "METHOD_INTERCONNECT",
    "METHOD_NETWORK",
    "METHOD_NOT_FOUND",
    "METHOD_SEND_MESSAGE",
    "METHOD_SEND_MESSAGES",
    "NOT_ALLOWED",
    "NOT_AVAILABLE",
    "NO_QUEUE",
    "PARAM_SECRET",
    "PARSE_ERROR",
    "MAX_ANSWERED_TOKEN",
    "PROPOSED_TOKEN_LENGTHS",
    "QUEUE_FULL",
    "REPLY_SIZE_FACTOR",
    "RESULT_OK",
    "SECRET_ENV_VAR",
    "TOKEN_BYTES",
    "TOO_LARGE",
    "UNAUTHORISED",
    "UNKNOWN_TOKEN",
    "is_v1",
    "named_params",
    "printable_word",
    "proposable_token",
]

# -- framing ---------------------------------------------------------------------------

#: The HTTP path every request is POSTed to.
HTTP_PATH = "/"
#: What ends every request and response line over TCP.
LINE_TERMINATOR = b"\n"
#: Default size limit of one request (an HTTP body or a TCP line), in bytes: 1 MiB.
DEFAULT_MAX_SIZE = 1024 * 1024
#: An answer (to one request, or to a batch) is at most this many times ``max_size``
#: bytes, what berryMQ's clients read: a small request may ask for a large answer
#: (``network``, a batch of them), and the node bounds what it builds and holds for it
#: (:mod:`berrymq_jsonrpc.replies`).
REPLY_SIZE_FACTOR = 4
#: Seconds a server waits for the rest of a started request before it closes the
#: connection (a stalled client cannot hold a worker); idle keep-alive connections
#: without an open session are closed after the same time.
DEFAULT_READ_TIMEOUT = 30.0
#: The longest a blocking ``get`` waits on the server, in seconds, whatever ``timeout``
#: asked for (``null`` = wait forever is capped too); the answer is then :data:`EMPTY`
#: and a client that wants to wait longer simply asks again. Keeps a worker from being
#: held forever.
DEFAULT_MAX_GET_WAIT = 30.0
#: Default bound of the server-side queue of a ``connect_via_queue`` client. When it is
#: full a message for it is *refused*, never dropped silently: a local sender's
#: ``twitter`` raises :class:`berrymq.QueueFull`, a remote sender gets :data:`QUEUE_FULL`.
DEFAULT_QUEUE_SIZE = 10_000
#: The most connections a node's server of one transport keeps open at once; one more is
#: answered :data:`LIMIT_REACHED` (HTTP: ``503``) and closed.
DEFAULT_MAX_CONNECTIONS = 10_000
#: The most connections one client address keeps open at once (same refusal).
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 6_000
#: The most sessions (tokens) open at once on one transport of a node; one more
#: ``connect_*``/``interconnect`` is answered :data:`LIMIT_REACHED`.
DEFAULT_MAX_SESSIONS = 10_000
#: The most ``interconnect`` sessions whose messages the node sends back over the
#: connection the peer opened (over TCP, ``addr`` null), per connection: each link holds
#: up to a request of ``max_size`` on it, so that a peer that stops reading holds at most
#: this many (setting ``max_interconnects_per_connection``); one more is answered
#: :data:`LIMIT_REACHED`.
DEFAULT_MAX_INTERCONNECTS_PER_CONNECTION = 16
#: The longest ``ttl`` a session may ask for, in seconds (a day): a session asking for
#: more is answered :data:`LIMIT_REACHED`, so that no client keeps sessions for good.
DEFAULT_MAX_TTL = 86_400
#: The most bytes (messages as JSON) held at once in all the ``connect_via_queue``
#: queues of a node (setting ``max_queued_bytes``); a message over it is refused like one
#: for a full queue (:data:`QUEUE_FULL`).
DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024
#: Random bytes in a token (256 bits, well over the 128 required).
TOKEN_BYTES = 32
#: The shortest and longest token a JSON-RPC 1.0 peer may propose in ``interconnect``
#: (printable ASCII without spaces), as the original's clients did (a UUID, say).
PROPOSED_TOKEN_LENGTHS = (16, 128)


#: The longest token a client takes from a node's ``connect_*`` or ``interconnect``
#: answer: room for every token a node issues (43 characters) or a 1.0 peer proposes
#: (:data:`PROPOSED_TOKEN_LENGTHS`), while a node answering 3,000,000 characters (every
#: later request would carry them) is refused.
MAX_ANSWERED_TOKEN = 256


def token_problem(token: object) -> str | None:
    """What is wrong with ``token``, a token a node answered with, or None: it must be 1
    to :data:`MAX_ANSWERED_TOKEN` printable ASCII characters without spaces."""
    if type(token) is not str:
        return "not a string"
    if not token:
        return "empty"
    if len(token) > MAX_ANSWERED_TOKEN:
        return f"{len(token)} characters long, over {MAX_ANSWERED_TOKEN}"
    if not printable_word(token):
        return "not printable ASCII without spaces"
    return None


def printable_word(text: str) -> bool:
    """Whether ``text`` is printable ASCII without spaces, as a token and a URL's path
    are (what a node shows and sends on, never a control character or a surrogate)."""
    return text.isascii() and text.isprintable() and " " not in text


def proposable_token(token: str) -> bool:
    """Whether ``token`` is one a JSON-RPC 1.0 peer may propose (see
    :data:`PROPOSED_TOKEN_LENGTHS`)."""
    shortest, longest = PROPOSED_TOKEN_LENGTHS
    return shortest <= len(token) <= longest and printable_word(token)
#: The request parameter that carries the shared secret, in every request, when the
#: server requires one.
PARAM_SECRET = "secret"
#: Environment variable holding the shared secret (else the plugin setting ``secret``).
SECRET_ENV_VAR = "BERRYMQ_SECRET"
#: The result of methods that have nothing else to return.
RESULT_OK = "ok"

# -- methods ----------------------------------------------------------------------------
# Parameters may be given by name (an object) or by position (an array, in the order
# listed). "?" marks an optional parameter.

#: ``connect_oneway(ttl?)`` -> token. Opens a session that only sends.
METHOD_CONNECT_ONEWAY = "connect_oneway"
#: ``interconnect(addr, token, ttl?, max_size?)`` -> token. Style 01. ``addr`` is the
#: caller's own server URL (HTTP: the server forwards to it, with ``token`` in every
#: request) or null over TCP (the server forwards on the same connection, with
#: ``token``). The returned token is the one the caller uses to send to the server.
#: ``max_size``: the caller's own limit, which the requests forwarded to it keep within.
METHOD_INTERCONNECT = "interconnect"
#: ``connect_via_queue(identifier, ttl?, max_size?)`` -> token. Style 03: the server
#: keeps a bounded queue of messages matching the pattern ``identifier`` for this token;
#: ``max_size``, the caller's own limit, bounds the messages it holds, as the server's does.
METHOD_CONNECT_VIA_QUEUE = "connect_via_queue"
#: ``send_message(token, identifier, args?, kwargs?, uid?, hops?, reply_to?)`` -> "ok".
#: May be a notification. Optional extras: ``uid`` (16 to 128 characters, unique among
#: every sender's: a node delivers a uid once, which cuts cycles of interconnected nodes;
#: a shorter one is refused, Invalid params), ``hops`` (int, how
#: often the message was handed on; past the hop limit it is dropped), ``reply_to`` (an
#: identifier: each receiver's non-None return value is sent there, as by ``talk``).
METHOD_SEND_MESSAGE = "send_message"
#: ``send_messages(token, messages)`` -> "ok". ``messages`` is an array of
#: ``[identifier, args, kwargs]`` or ``[identifier, args, kwargs, extras]``; all are
#: delivered in order. If some were refused (a full queue), the answer is
#: :data:`QUEUE_FULL` with ``data.refused`` listing their indexes; the others were
#: delivered.
METHOD_SEND_MESSAGES = "send_messages"
#: ``get(token, block?, timeout?)`` -> ``[identifier, args, kwargs]``; :data:`EMPTY` when
#: nothing came within ``min(timeout, max_get_wait)`` seconds (``block`` false: at once).
METHOD_GET = "get"
#: ``get_nowait(token)`` -> ``[identifier, args, kwargs]`` or :data:`EMPTY`.
METHOD_GET_NOWAIT = "get_nowait"
#: ``close_connection(token)`` -> "ok". Frees the session and its queue.
METHOD_CLOSE_CONNECTION = "close_connection"
#: ``ask(identifier, args?, kwargs?, timeout?, token?, uid?, hops?)`` -> array of replies,
#: one per matching receiver on the server, in registration order: ``{"value": v}`` or
#: ``{"error": {"type", "message", "receiver", "node"}}`` for a receiver that raised or
#: returned something that is not JSON.
METHOD_ASK = "ask"
#: ``network(token?)`` -> an object describing the node's receivers and connections
#: (what ``berrymq graph URL`` draws).
METHOD_NETWORK = "network"

#: Every method, in the order of the documentation.
METHODS = (
    METHOD_CONNECT_ONEWAY,
    METHOD_INTERCONNECT,
    METHOD_CONNECT_VIA_QUEUE,
    METHOD_SEND_MESSAGE,
    METHOD_SEND_MESSAGES,
    METHOD_GET,
    METHOD_GET_NOWAIT,
    METHOD_CLOSE_CONNECTION,
    METHOD_ASK,
    METHOD_NETWORK,
)

#: Methods whose one effect is their answer: the message they take from a queue, the
#: token of the session they open, the picture of the network. Sent as a notification (no
#: ``id``), such a call would take a message and give it to nobody, or open a session
#: whose token nobody holds (it kept a place of ``max_sessions``, and a queue's share of
#: ``max_queued_bytes``, until its ttl: one line of notifications filled them), or work
#: for nobody (``network``, costly on a node with many sessions): a node does not run it
#: at all (it does nothing and, as for every notification, answers nothing).
NOT_RUN_AS_NOTIFICATIONS = frozenset({METHOD_GET, METHOD_GET_NOWAIT, METHOD_CONNECT_ONEWAY,
                                      METHOD_CONNECT_VIA_QUEUE, METHOD_NETWORK})

#: The parameters each method takes by position (an array), in that order: every one it
#: takes by name (but ``secret``), in the order of docs/protocol.md's tables.
POSITIONAL_PARAMS: dict[str, tuple[str, ...]] = {
    METHOD_CONNECT_ONEWAY: ("ttl",),
    METHOD_INTERCONNECT: ("addr", "token", "ttl", "max_size"),
    METHOD_CONNECT_VIA_QUEUE: ("identifier", "ttl", "max_size"),
    METHOD_SEND_MESSAGE: ("token", "identifier", "args", "kwargs", "uid", "hops", "reply_to"),
    METHOD_SEND_MESSAGES: ("token", "messages"),
    METHOD_GET: ("token", "block", "timeout"),
    METHOD_GET_NOWAIT: ("token",),
    METHOD_CLOSE_CONNECTION: ("token",),
    METHOD_ASK: ("identifier", "args", "kwargs", "timeout", "token", "uid", "hops"),
    METHOD_NETWORK: ("token",),
}


def is_v1(request: Any) -> bool:
    """Whether ``request`` (parsed) is one JSON-RPC 1.0 call: an object without a
    ``jsonrpc`` member, as the original berryMQ's clients send. Such a call is answered in
    1.0's form (:mod:`berrymq_jsonrpc.dialect`); a batch is 2.0 only."""
    return type(request) is dict and "jsonrpc" not in request


def named_params(method: str, params: Any) -> dict[str, Any] | None:
    """``params`` of a call of ``method`` by name: as given (an object), or an array
    matched to :data:`POSITIONAL_PARAMS`; None when it is neither, or too long."""
    if type(params) is dict:
        return params
    names = POSITIONAL_PARAMS.get(method, ())
    if type(params) is list and len(params) <= len(names):
        return dict(zip(names, params, strict=False))
    return None

# -- error codes --------------------------------------------------------------------------
# Error objects carry fixed messages; ``data``, when present, is berryMQ's own text or
# object (never an exception's text from inside the server).

#: Standard: the text is not JSON (or holds NaN/Infinity). ``id`` is null.
PARSE_ERROR = -32700
#: Standard: not a valid request object (also ``[]``, and each bad member of a batch).
INVALID_REQUEST = -32600
#: Standard: no such method.
METHOD_NOT_FOUND = -32601
#: Standard: a parameter is missing, of the wrong type or invalid; ``data`` names it.
INVALID_PARAMS = -32602
#: Standard: the server failed (detail in the server's log only).
INTERNAL_ERROR = -32603

#: The token is unknown, closed or expired (idle longer than its ttl).
UNKNOWN_TOKEN = -32001
#: The queue is empty (``get_nowait``, or ``get`` whose wait ended).
EMPTY = -32002
#: The request is over the size limit (``data.limit`` is the limit in bytes,
#: ``data.setting`` the setting: ``max_size``).
TOO_LARGE = -32003
#: The server requires a shared secret and the request lacks it or has a wrong one.
UNAUTHORISED = -32004
#: A bounded queue was full and refused the message (it was not stored): ``data.refused``
#: lists the refused indexes; ``data.setting`` and ``data.limit`` name the setting that
#: refused the first of them (``queue_size``, ``max_queued_bytes``) when one did.
QUEUE_FULL = -32005
#: The token's session has no queue (it was not opened with ``connect_via_queue``).
NO_QUEUE = -32006
#: The node cannot do this (an ``interconnect`` whose callback address cannot be
#: reached: ``data`` names it, or a session asked for while the node stops).
NOT_AVAILABLE = -32007
#: The token cannot be a token (a string of the wrong length or characters); a missing
#: or non-string token is Invalid params.
BAD_TOKEN = -32008
#: A cap of the node was reached (``data.setting`` names the setting, ``data.limit`` its
#: value): too many sessions, or (the connection is then closed) too many connections.
LIMIT_REACHED = -32009
#: The node's settings do not allow this (``interconnect`` to a callback address outside
#: ``callback_hosts``); ``data.setting`` names the setting, ``data.detail`` says why.
NOT_ALLOWED = -32010

#: Application error codes and their fixed messages.
APPLICATION_ERRORS: dict[int, str] = {
    UNKNOWN_TOKEN: "Unknown or expired token",
    EMPTY: "Queue is empty",
    TOO_LARGE: "Message too large",
    UNAUTHORISED: "Unauthorised",
    QUEUE_FULL: "Queue is full",
    NO_QUEUE: "Connection has no queue",
    NOT_AVAILABLE: "Not available",
    BAD_TOKEN: "Malformed token",
    LIMIT_REACHED: "Limit reached",
    NOT_ALLOWED: "Not allowed",
}

"""Reading a request's params: each checked with a fixed *Invalid params* text that names
the parameter, and the messages of ``send_message``, ``send_messages`` and ``ask`` built
from their wire form (:mod:`berrymq.wire`)."""

from __future__ import annotations

import hmac
import math
import sys
from typing import Any

from berrymq import wire
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq_jsonrpc.jsonrpc import invalid_params
from berrymq_jsonrpc.settings import max_size_check

__all__ = ["allowed", "as_float", "caller_max_size", "decode_message", "host_port_pair",
           "identifier", "message_from_wire", "number", "presents", "session_ttl", "string"]



def presents(given: Any, secret: bytes) -> bool:
    """Whether ``given`` (a request's ``secret``) is the shared secret; a string that is
    not valid Unicode (a lone surrogate) is simply a wrong one."""
    return type(given) is str and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), secret)


def allowed(method: str, params: dict[str, Any], names: frozenset[str]) -> None:
    unknown = params.keys() - names
    if unknown:
        raise invalid_params(f"{method} has no parameter {sorted(unknown)[0]!r}")


def as_float(value: int | float) -> float:
    """A JSON number as a float. JSON allows integers of any size: one beyond a float's
    range is the largest float of its sign, so it meets the bound any large number meets
    (``max_ttl``, ``max_get_wait``) instead of an ``OverflowError``."""
    try:
        return float(value)
    except OverflowError:
        return sys.float_info.max if value > 0 else -sys.float_info.max


def number(params: dict[str, Any], name: str, default: float | None, *, positive: bool = False,
           allow_none: bool = False) -> float | None:
    given: Any = params.get(name, default)
    if given is None and allow_none:
        return None
    value = as_float(given) if type(given) in (int, float) else math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a positive number" if positive else "a number, 0 or more"
        raise invalid_params(f"{name!r} must be {need}")
    return value


#: A session's ``ttl`` when its request leaves it out, in seconds (or ``max_ttl``, if less).
DEFAULT_SESSION_TTL = 1000.0


def session_ttl(params: dict[str, Any], longest: float) -> float:
    """The ``ttl`` of a method that opens a session: seconds, positive; left out, 1000 or
    ``longest`` (the node's ``max_ttl``) if that is less, so that a request that asks for
    nothing is never refused for asking too much."""
    value = number(params, "ttl", min(DEFAULT_SESSION_TTL, longest), positive=True)
    assert value is not None
    return value


def host_port_pair(value: Any) -> tuple[str, int] | None:
    """The original berryMQ's address, ``[host, port]``, as a pair; None for anything that
    is not a list (a URL, or nothing); *Invalid params* for a list of another shape."""
    if type(value) is not list:
        return None
    if len(value) != 2 or type(value[0]) is not str or not value[0] or type(value[1]) is not int:
        raise invalid_params("'addr' as a list must be [host, port]: a host name and a port "
                             "number")
    if not 0 < value[1] < 65536:
        raise invalid_params(f"'addr' has an invalid port {value[1]} (1 to 65535)")
    return value[0], value[1]


def string(params: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None and not required:
        return None
    if type(value) is not str:
        raise invalid_params(f"{name!r} must be a string")
    return value


def identifier(text: Any, what: str) -> Identifier:
    """:func:`berrymq.wire.identifier`, its refusal answered as *Invalid params*."""
    try:
        return wire.identifier(text, what)
    except wire.WireError as exc:
        raise invalid_params(str(exc)) from None


def message_from_wire(
    ident_text: Any, args: Any, kwargs: Any, extras: Any, what: str
) -> tuple[Message, Identifier | None]:
    """:func:`berrymq.wire.message_from_wire`, its refusal answered as *Invalid params*."""
    try:
        return wire.message_from_wire(ident_text, args, kwargs, extras, what)
    except wire.WireError as exc:
        raise invalid_params(str(exc)) from None


def decode_message(item: Any, what: str) -> tuple[Message, Identifier | None]:
    """:func:`berrymq.wire.decode_message` (one message of ``send_messages``), its
    refusal answered as *Invalid params*."""
    try:
        message, reply_to, _ = wire.decode_message(item, what)
    except wire.WireError as exc:
        raise invalid_params(str(exc)) from None
    return message, reply_to


def caller_max_size(params: dict[str, Any]) -> int | None:
    """``max_size``, the caller's own limit, which what the node sends it keeps within
    (``connect_via_queue``: the messages its queue holds; ``interconnect``: the requests
    of the link back): at least 1024 bytes, or None when not given.

    :raises berrymq_jsonrpc.jsonrpc.JsonRpcError: *Invalid params* naming the problem.
    """
    value = params.get("max_size")
    if value is None:
        return None
    # a count of bytes, as the setting (1024.5 and 1e20 were taken, and 1e20 as a float)
    problem = (max_size_check(value) if type(value) is int
               else f"must be an integer (bytes), got {value!r}")
    if problem is not None:
        raise invalid_params(f"'max_size' {problem}")
    return int(value)

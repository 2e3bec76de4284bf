"""berryMQ's wire forms, the same on every transport that leaves the process (JSON-RPC over
TCP or HTTP, NATS), and the one JSON codec they are written in.

- **A message** is ``[identifier, args, kwargs]``, or ``[identifier, args, kwargs, extras]``
  where *extras* is an object of optional fields: ``uid`` (16 to 128 characters), ``hops``
  (0 to 2**31 - 1), ``reply_to`` (an identifier, set by :func:`berrymq.talk`), and two a
  broker needs: ``taken`` (the NATS queue groups of the sending process that took the
  message already) and ``timeout`` (for a request sent as a message: the seconds its asker
  waits). A reader ignores extras it does not know.
- **A reply to** ``ask`` is one entry per receiver: ``{"value": value}``, or
  ``{"error": {"type", "message", "receiver", "node"}}`` (:meth:`berrymq.ReplyError.to_json`).
- **JSON** is compact UTF-8, as every JSON-RPC client writes it: a character outside
  ASCII is its own UTF-8 bytes, not a six-byte ``\\uXXXX`` escape, so that a text's size
  limits count what crosses the wire (:func:`byte_size`) and mean the same on both sides;
  a text holding a lone surrogate, which UTF-8 cannot carry, is written in ASCII with
  escapes instead. ``NaN``, ``Infinity`` and numbers too large to be finite are neither
  written nor read. A text nested deeper than :data:`MAX_DEPTH` levels is not read, and
  a message nested deeper than :data:`MAX_MESSAGE_DEPTH` (or one reply to ``ask``) not
  written, so that whatever is read can be written again (:mod:`berrymq._nesting`
  says why). One C encoder and one C scanner are made once (``json.dumps`` and ``loads``
  make one per call, and check for trailing text with a regular expression).

The standard library's ``json`` alone: the core and every transport plugin share this.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any, NoReturn

from berrymq._keys import KeyNotText, refuse_other_keys
from berrymq._nesting import MAX_DEPTH, MAX_MESSAGE_DEPTH, nested_deeper
from berrymq.aio import describe_receiver
from berrymq.errors import InvalidIdentifier, ReplyError, TransportError
from berrymq.identifier import Identifier, parse
from berrymq.message import MAX_UID_LENGTH, MIN_UID_LENGTH, Message, fits_uid, new_message

__all__ = [
    "MAX_DEPTH",
    "MAX_HOPS",
    "MAX_MESSAGE_DEPTH",
    "MAX_UID_LENGTH",
    "NestedTooDeep",
    "NumberTooLong",
    "ParseError",
    "WireError",
    "byte_size",
    "decode_message",
    "decode_replies",
    "dumps",
    "encode_message",
    "encode_replies",
    "encode_reply",
    "identifier",
    "loads",
    "message_from_wire",
    "nested_deeper",
    "refuse_other_keys",
]


# -- JSON --------------------------------------------------------------------------------

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_ascii_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
#: The C encoders behind them, made once, without the circular check (a cycle ends in
#: RecursionError, turned into ValueError below); None where the C accelerator is missing.
_chunks = None if c_make_encoder is None else c_make_encoder(
    None, _encoder.default, encode_basestring, None, ":", ",", False, False, False)
_ascii_chunks = None if c_make_encoder is None else c_make_encoder(
    None, _encoder.default, encode_basestring_ascii, None, ":", ",", False, False, False)


def dumps(value: Any) -> str:
    """Compact JSON text, UTF-8 (ASCII with escapes when it holds a lone surrogate).
    Raises ``ValueError`` for NaN/Infinity and for a structure that contains itself or is
    nested too deep, ``TypeError`` for what JSON cannot hold."""
    try:
        text = _encoder.encode(value) if _chunks is None else "".join(_chunks(value, 0))
        if text.isascii():  # (a flag of the string: no scan)
            return text
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate: written as an escape
            return (_ascii_encoder.encode(value) if _ascii_chunks is None
                    else "".join(_ascii_chunks(value, 0)))
        return text
    except RecursionError:
        raise ValueError("the value contains itself or is nested too deep for JSON") from None


def byte_size(text: str) -> int:
    """How many bytes ``text`` (made by :func:`dumps`) takes on the wire, in UTF-8."""
    return len(text) if text.isascii() else len(text.encode())


class ParseError(ValueError):
    """A text that is not JSON berryMQ accepts (bad syntax, bad UTF-8, non-finite number,
    nested too deep)."""


class NestedTooDeep(ParseError):
    """A JSON text nested deeper than :data:`MAX_DEPTH` levels: refused before it is
    parsed, naming the limit (``limit``)."""

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        super().__init__(f"the text nests arrays and objects more than {limit} levels deep, "
                         "the limit")
        self.limit = limit


class NumberTooLong(ParseError):
    """A JSON text holding an integer of more digits than Python reads
    (``sys.get_int_max_str_digits()``, 4,300 by default), naming the limit (``limit``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the text holds an integer of more than {limit} digits, the limit")
        self.limit = limit


def _reject_constant(name: str) -> Any:
    raise ParseError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ParseError(f"number {text} is out of range")
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
#: the decoder's C scanner: one value from an index, returning where it ended
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON text (UTF-8 when given bytes); raises :class:`ParseError` for
    anything that is not strict JSON, including ``NaN``, ``Infinity`` and ``1e999``, and
    :class:`NestedTooDeep` for a text nested deeper than :data:`MAX_DEPTH`.

    The usual text (no whitespace around the value) is read by the scanner alone; any
    other goes through the full decoder, which allows the whitespace and refuses the rest.
    """
    raw = data if type(data) is bytes or isinstance(data, str) else bytes(data)
    if nested_deeper(raw, MAX_DEPTH):
        raise NestedTooDeep(MAX_DEPTH)
    try:
        text = raw if isinstance(raw, str) else raw.decode()
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            end = -1
        return value if end == len(text) else _decoder.decode(text)
    except ParseError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        rest = _after_bom(raw)
        if rest is not None:  # looked for only once a text failed: the usual one pays nothing
            if _after_bom(rest) is not None:
                raise ParseError("a second byte order mark") from None
            return loads(rest)
        if "integer string conversion" in str(exc):  # Python's own bound on digits
            raise NumberTooLong(sys.get_int_max_str_digits()) from None
        raise ParseError(str(exc)) from None


def _after_bom(text: bytes | str) -> bytes | str | None:
    """``text`` after the byte order mark it begins with, or None without one: RFC 8259
    (8.1) lets a parser ignore one, which editors and some tools write."""
    if type(text) is bytes:
        return text[3:] if text[:3] == b"\xef\xbb\xbf" else None
    return text[1:] if text[:1] == "\ufeff" else None


# -- messages ----------------------------------------------------------------------------

class WireError(ValueError):
    """A JSON value that is not berryMQ's wire form of a message; the text names the part."""


#: The largest hop count a message may carry: far past any hop limit, and an integer every
#: JSON reader holds exactly (a count of 4,300 digits was taken, and dropped at the hop
#: limit with all its digits in the log line).
MAX_HOPS = 2**31 - 1

#: The last message encoded with its extras: a bus hands one message to each linked peer
#: in turn, so a message going to N peers is encoded once, not N times. One tuple,
#: replaced whole (reading it needs no lock), keyed by the message's identity.
_last: tuple[object, object, str] = (None, None, "")


def encode_message(message: Message, reply_to: Identifier | None = None, *, extras: bool = True,
                   taken: tuple[str, ...] = (), timeout: float | None = None) -> str:
    """The wire form of ``message`` as JSON text: with an extras object when it has a uid,
    hops, ``reply_to``, ``taken`` or ``timeout``; without (``extras=False``, for peers
    that know no extras) the three parts alone.

    Raises ``TypeError`` (what JSON cannot hold) or ``ValueError`` (NaN, a cycle, nested
    deeper than :data:`MAX_MESSAGE_DEPTH`) naming the message.
    """
    global _last
    if not extras:
        return _encode(message, None, (), None, False)
    if taken or timeout is not None:
        return _encode(message, reply_to, taken, timeout, True)
    last_message, last_reply_to, text = _last
    if last_message is message and last_reply_to is reply_to:
        return text
    text = _encode(message, reply_to, (), None, True)
    _last = (message, reply_to, text)
    return text


def _encode(message: Message, reply_to: Identifier | None, taken: tuple[str, ...],
            timeout: float | None, extras: bool) -> str:
    ident, args, kwargs, hops, uid = message
    value: tuple[Any, ...]
    if not extras:
        value = (ident.text, args, kwargs)
    elif not hops and reply_to is None and not taken and timeout is None:
        # the usual message between processes: a uid at most
        value = (ident.text, args, kwargs) if uid is None else (ident.text, args, kwargs,
                                                                 {"uid": uid})
    else:
        more: dict[str, Any] = {}
        if uid is not None:
            more["uid"] = uid
        if hops:
            more["hops"] = hops
        if reply_to is not None:
            more["reply_to"] = reply_to.text
        if taken:
            more["taken"] = taken
        if timeout is not None:
            more["timeout"] = timeout
        value = (ident.text, args, kwargs, more)
    try:
        text = dumps(value)
        # An object with a key starts '{"' in JSON text (in a string it would be '{\\"'):
        # kwargs, when it has keys, and the extras are the envelope's; any more is a dict
        # inside the arguments, whose keys are looked at then.
        if text.count('{"') > (1 if kwargs else 0) + len(value) - 3:
            refuse_other_keys((args, kwargs))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"message {ident} cannot be sent to another process: its arguments "
                        f"must be JSON-serialisable ({exc})") from None
    if nested_deeper(text, MAX_MESSAGE_DEPTH):  # the peer could not read it: see _nesting
        raise ValueError(f"message {ident} cannot be sent to another process: it is nested "
                         f"more than {MAX_MESSAGE_DEPTH} levels deep, the limit")
    return text


def identifier(text: Any, what: str) -> Identifier:
    """The identifier ``text`` names; :class:`WireError` (naming ``what``) for one that is
    not a string, not valid, or local (local messages never leave their process)."""
    if type(text) is not str:
        raise WireError(f"{what} must be an identifier string")
    try:
        ident = parse(text)  # the cached Identifier, without a constructor call
    except InvalidIdentifier as exc:
        raise WireError(f"{what}: {exc}") from None
    if ident.is_local:
        raise WireError(f"{what}: {text!r} is local (starts with '_'); local messages never "
                        "leave their process")
    return ident


def message_from_wire(ident_text: Any, args: Any, kwargs: Any, extras: Any, what: str
                      ) -> tuple[Message, Identifier | None]:
    """Check the parts of one message and build it (with its ``reply_to``); raises
    :class:`WireError` naming ``what`` and the part that is wrong. ``extras`` may be None.

    The checks of a good message are made at once, without building the texts of the
    errors (this runs for every message that comes in); :func:`_refuse` says what is wrong.
    """
    try:  # the cached Identifier; None (then _refuse says why) for what names none
        ident = parse(ident_text) if type(ident_text) is str else None
    except InvalidIdentifier:
        ident = None
    if ident is None or ident.is_local or type(args) is not list or type(kwargs) is not dict:
        _refuse(ident_text, args, kwargs, extras, what)
    if extras is None:
        return new_message((ident, tuple(args), kwargs, 0, None)), None
    if type(extras) is not dict:
        raise WireError(f"{what} extras must be an object")
    uid = extras.get("uid")
    hops = extras.get("hops", 0)
    if (uid is not None and not fits_uid(uid)) or type(hops) is not int or not 0 <= hops <= MAX_HOPS:
        _refuse(ident_text, args, kwargs, extras, what)
    reply_to = extras.get("reply_to")
    if reply_to is not None:
        reply_to = identifier(reply_to, f"{what} reply_to")
    return new_message((ident, tuple(args), kwargs, hops, uid)), reply_to


def _refuse(ident_text: Any, args: Any, kwargs: Any, extras: Any, what: str) -> NoReturn:
    """Raise the :class:`WireError` that says what is wrong with a message."""
    identifier(ident_text, f"{what} identifier")
    if type(args) is not list:
        raise WireError(f"{what} args must be an array")
    if type(kwargs) is not dict:
        raise WireError(f"{what} kwargs must be an object")
    uid = extras.get("uid")
    if uid is not None and not fits_uid(uid):
        raise WireError(f"{what} uid must be a string of {MIN_UID_LENGTH} to {MAX_UID_LENGTH} "
                        f"characters, unique among every sender's (random ones): a node "
                        f"delivers each uid once")
    raise WireError(f"{what} hops must be an integer from 0 to {MAX_HOPS}")


_NO_EXTRAS: Mapping[str, Any] = {}


def decode_message(item: Any, what: str = "the message"
                   ) -> tuple[Message, Identifier | None, Mapping[str, Any]]:
    """One message in its wire form (a parsed JSON array): the message, its ``reply_to``
    and its extras object (empty when it has none); :class:`WireError` naming ``what``."""
    if type(item) is list and len(item) == 4:
        ident_text, args, kwargs, extras = item
    elif type(item) is list and len(item) == 3:
        ident_text, args, kwargs = item
        extras = None
    else:
        raise WireError(f"{what} must be [identifier, args, kwargs] or "
                        "[identifier, args, kwargs, extras]")
    message, reply_to = message_from_wire(ident_text, args, kwargs, extras, what)
    return message, reply_to, extras or _NO_EXTRAS


# -- replies to ask ----------------------------------------------------------------------

def encode_reply(value: Any, node: str, receiver: object = None) -> dict[str, Any]:
    """One receiver's reply as it crosses: ``{"value": value}``, or ``{"error": ...}``
    for a :class:`berrymq.ReplyError` and for a value JSON cannot hold (named by its type,
    as a ``TypeError`` of ``receiver`` on ``node``) or nested deeper than
    :data:`MAX_MESSAGE_DEPTH`, which no asker could read back. ``receiver`` is the
    receiver object that returned ``value`` (None: unknown); it is described only when it
    must be named."""
    if isinstance(value, ReplyError):
        return {"error": value.to_json()}
    why = ""
    try:
        text = dumps(value)
        if '{"' in text:  # (an object with keys: see _encode)
            refuse_other_keys(value)
        deep = nested_deeper(text, MAX_MESSAGE_DEPTH)
    except (TypeError, ValueError) as exc:
        deep = None
        if isinstance(exc, KeyNotText):
            why = f" ({exc})"
    if deep is not False:
        who = "" if receiver is None else describe_receiver(receiver)
        text = (f"the reply {type(value).__name__} is not JSON{why}" if deep is None else
                f"the reply is nested more than {MAX_MESSAGE_DEPTH} levels deep, the limit")
        error = ReplyError("TypeError", text, who, node)
        return {"error": error.to_json()}
    return {"value": value}


def encode_replies(values: Sequence[Any], node: str,
                   receivers: Sequence[object] = ()) -> list[dict[str, Any]]:
    """The replies of a remote ``ask`` as they cross (:func:`encode_reply`);
    ``receivers[i]`` is the receiver of ``values[i]`` where known (see
    :func:`berrymq._ask_local.ask_local`), so that a reply that is not JSON names it."""
    known = len(receivers)
    return [encode_reply(value, node, receivers[i] if i < known else None)
            for i, value in enumerate(values)]


def decode_replies(entries: Any, peer: str) -> list[Any]:
    """The replies of an ``ask`` answer: values, and :class:`berrymq.ReplyError` entries;
    :class:`berrymq.TransportError` naming ``peer`` for anything else."""
    if type(entries) is not list:
        raise TransportError(f"{peer} answered ask with {type(entries).__name__}, not an array")
    replies: list[Any] = []
    for entry in entries:
        if type(entry) is dict and "value" in entry:
            replies.append(entry["value"])
        elif type(entry) is dict and type(entry.get("error")) is dict:
            replies.append(ReplyError.from_json(entry["error"]))
        else:
            raise TransportError(f"{peer} answered ask with a malformed entry")
    return replies

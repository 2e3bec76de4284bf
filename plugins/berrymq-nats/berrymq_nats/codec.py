"""The bridge's wire forms: a message as a JSON array, replies to ``ask`` as JSON objects.

A message is ``[identifier, args, kwargs, hops, uid]``, followed when needed by
``reply_to`` (for ``talk``), ``taken`` (the shared-queue groups of the sending process
that took it already) and the asker's ``timeout`` (for requests).
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any

from berrymq.errors import ReplyError
from berrymq.identifier import Identifier
from berrymq.message import Message

__all__ = ["FromBroker", "decode_reply", "dumps", "encode_message", "encode_reply",
           "from_broker", "loads", "shared_queue_guard"]


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One C encoder and one C scanner, made once: json.dumps/json.loads would make an encoder
# per call, and check for trailing text with a regular expression.
_encoder = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, True
) if json.encoder.c_make_encoder is not None else None  # type: ignore[attr-defined]
_scanner = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def dumps(value: Any) -> str:
    """Compact JSON text (non-ASCII kept as is)."""
    if _encoder is None:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_not_json)
    return "".join(_encoder(value, 0))


def loads(data: bytes) -> Any:
    """The JSON value at the start of ``data`` (UTF-8)."""
    try:
        value, _ = _scanner(data.decode(), 0)
    except StopIteration:
        raise ValueError(f"not JSON: {data[:60]!r}") from None
    return value


def encode_message(message: Message, reply_to: Identifier | None, taken: tuple[str, ...],
                   timeout: float | None = None) -> bytes:
    """The bytes published for ``message``; ``TypeError`` naming it if JSON cannot hold it."""
    ident = message[0]
    fields: list[Any] = [str(ident), message[1], message[2], message[3], message[4]]
    if reply_to is not None or taken or timeout is not None:
        fields.append(None if reply_to is None else str(reply_to))
        fields.append(taken or None)
        if timeout is not None:
            fields.append(timeout)
    try:
        return dumps(fields).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"message {ident} cannot be sent through NATS: its arguments must be "
            f"JSON-serialisable ({exc})"
        ) from None


def encode_reply(value: Any, node: str) -> Any:
    """One receiver's reply as it crosses: ``{"v": value}`` or ``{"e": error}``."""
    if isinstance(value, ReplyError):
        return {"e": value.to_json()}
    item = {"v": value}
    try:
        dumps(item)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"e": ReplyError("TypeError", f"reply is not JSON-serialisable: {exc}",
                                "nats", node).to_json()}
    return item


def decode_reply(item: Any) -> Any:
    if isinstance(item, dict) and "e" in item:
        return ReplyError.from_json(item["e"])
    return item.get("v") if isinstance(item, dict) else item


class FromBroker(dict):  # type: ignore[type-arg]
    """The keyword arguments of a message that came in through NATS's fan-out.

    Only used for messages that match a local shared queue: its guard refuses them, as
    a shared queue takes messages from other processes through its queue group alone.
    """

    __slots__ = ()


def from_broker(message: Message) -> bool:
    """Whether ``message`` came in through a plain NATS subscription (see ``FromBroker``)."""
    return type(message[2]) is FromBroker


def shared_queue_guard(message: Message) -> bool:
    """Installed on shared queues' subscriptions while a bridge runs (see ``from_broker``)."""
    return type(message[2]) is not FromBroker

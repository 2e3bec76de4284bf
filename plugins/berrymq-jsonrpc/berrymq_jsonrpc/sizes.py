"""The size of one message: one rule, measured the same way by every node and client.

A message is at most ``max_size - 512`` bytes (:func:`message_limit`), measured as the
JSON of ``[identifier, args, kwargs, extras]`` where *extras* holds its ``uid`` (a message
without one is measured with the 20 characters of the uid a node gives it when it
forwards it) and its ``reply_to``, and not its ``hops``. That measure does not change on
the way: a node that forwards a message adds one to its hops and gives it a uid if it has
none, and the 512 bytes are the room kept for that and for the request around it
(method, token, secret, id). So a message one node accepts fits every link it is handed
to, and a larger one is refused where it enters: at the sending call of a berryMQ client
(its outbox, :class:`~berrymq_jsonrpc.outbox.Outbox`), and by the first node it reaches
(*Message too large*, -32003, with :func:`too_large_data`), never accepted and then lost
or refused one hop later.

A node measures the messages of a request only when the request is at least
:func:`measured_from` bytes (a fifth of the limit): re-encoding a message read from a
smaller one cannot reach the limit (a number such as ``1e15`` grows at most 3.8 times
when written again, and the uid adds 31 bytes), and the usual small request pays nothing.
"""

from __future__ import annotations

from typing import Any

from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.wire import byte_size, dumps

__all__ = ["ENVELOPE", "UID_ROOM", "measure", "measured_from", "message_limit",
           "too_large_data", "too_large_detail", "unmeasured"]

#: Room left in a request for everything around one message: the method, token, secret
#: and id of the request, and the hops a node adds to the message's extras.
ENVELOPE = 512
#: A message without a uid is measured with one this long, the length of berryMQ's own
#: uids: the first node to forward it gives it one.
UID_ROOM = 20
_NO_UID = "u" * UID_ROOM
#: The bytes of ``"uid":"..."`` with a uid of :data:`UID_ROOM` characters.
_UID_MEMBER = len('"uid":""') + UID_ROOM


def message_limit(max_size: int) -> int:
    """The largest message, in bytes as measured by :func:`measure`, where the setting
    ``max_size`` is ``max_size``."""
    return max_size - ENVELOPE


def measured_from(max_size: int) -> int:
    """Requests of fewer bytes than this hold no message over :func:`message_limit` and
    are not measured (see the module's docstring)."""
    return message_limit(max_size) // 5


def measure(message: Message, reply_to: Identifier | None = None) -> int:
    """The size of ``message`` under the rule: the bytes of the JSON of ``[identifier,
    args, kwargs, extras]``, extras holding its uid (or :data:`UID_ROOM` characters in
    its place) and ``reply_to``, without its hops."""
    uid = message[4]
    extras: dict[str, Any] = {"uid": _NO_UID if uid is None else uid}
    if reply_to is not None:
        extras["reply_to"] = reply_to.text
    return byte_size(dumps((message[0].text, message[1], message[2], extras)))


def unmeasured(text: str, message: Message, reply_to: Identifier | None) -> int:
    """How many bytes of ``text``, the wire form of ``message`` made by
    :func:`berrymq.wire.encode_message`, the rule does not count: those of its hops
    (``,"hops":N``); less than 0 for a message without a uid, which is measured with one.

    Worked out from the two forms' differences, not by encoding the message again: that
    second encoding of every message without a uid (what a client sends) cost a quarter of
    a client's one-way throughput. The two forms differ only in the extras object: the
    wire's holds ``hops`` (when not 0) and ``reply_to``, the rule's the uid (or
    :data:`UID_ROOM` characters) and ``reply_to``; ``test_sizes`` checks the arithmetic
    against :func:`measure`."""
    hops = message[3]
    if message[4] is not None:
        return len(',"hops":') + len(str(hops)) if hops else 0
    if hops:  # '"hops":N' leaves the object, '"uid":"<UID_ROOM>"' comes in
        return len('"hops":') + len(str(hops)) - _UID_MEMBER
    if reply_to is not None:  # '"uid":"<UID_ROOM>",' comes into the object
        return -_UID_MEMBER - 1
    return -_UID_MEMBER - len(",{}")  # ',{"uid":"<UID_ROOM>"}' comes after the three parts


def too_large_detail(size: int, max_size: int) -> str:
    """The words of a refusal of a message of ``size`` bytes (the same at the sending call
    and in a node's answer): the size, the limit, and the setting to change."""
    return (f"a message of {size} bytes of JSON (measured as [identifier, args, kwargs, "
            f"extras] with its uid, without its hops) is over the limit of "
            f"{message_limit(max_size)} bytes: the setting max_size ({max_size}) less "
            f"{ENVELOPE} for the request around it; the message was refused. Raise "
            "max_size on every node and client it crosses to send larger messages")


def too_large_data(size: int, max_size: int, where: str = "") -> dict[str, Any]:
    """The ``data`` of a *Message too large* (-32003) refusing one message: ``limit``,
    ``setting``, ``size`` and ``detail`` (``where``, e.g. ``"messages[3]: "``, in front)."""
    return {"limit": message_limit(max_size), "setting": "max_size", "size": size,
            "detail": where + too_large_detail(size, max_size)}

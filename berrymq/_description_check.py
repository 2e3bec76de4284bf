"""Checking a picture of the network (:func:`berrymq.network.describe`'s dict) that came
from another process, before it is drawn: ``berrymq graph URL`` draws what a node answered,
and a malformed answer must be an error naming the field, not a traceback in a renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_description"]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _list_of_objects(value: object, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise ValueError(f"{where} is {_shown(value)}, not a list")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}[{i}] is {_shown(item)}, not an object")
    return value


def _field(item: Mapping[str, Any], key: str, kinds: type | tuple[type, ...],
           where: str, required: bool = False) -> None:
    if key not in item:
        if required:
            raise ValueError(f"{where} has no {key!r}")
        return
    value = item[key]
    if not isinstance(value, kinds):
        raise ValueError(f"{where + '.' if where else ''}{key} is {_shown(value)}")


def check_description(description: object) -> None:
    """Check that ``description`` has the shape :func:`render` reads (see
    :mod:`berrymq.network`): every list a list of objects, every id and pattern a string, ``forwarders``
    a count. Fields that are missing are drawn with defaults; only ``id`` (and a follow's
    ``pattern``, a transport's ``scheme`` and ``status``, a connection's ``address``) must
    be there. Meant for a description received from another process (``berrymq graph
    URL``), so that a malformed one is an error naming the field, not a traceback.

    :raises ValueError: naming the first field that is wrong.
    """
    if not isinstance(description, Mapping):
        raise ValueError(f"the description is {_shown(description)}, not an object")
    _field(description, "forwarders", (int, type(None)), "")
    for i, receiver in enumerate(_list_of_objects(description.get("receivers", []),
                                                  "receivers")):
        where = f"receivers[{i}]"
        _field(receiver, "id", str, where, required=True)
        for j, follow in enumerate(_list_of_objects(receiver.get("follows", []),
                                                    f"{where}.follows")):
            _field(follow, "pattern", str, f"{where}.follows[{j}]", required=True)
    for i, sender in enumerate(_list_of_objects(description.get("senders", []), "senders")):
        where = f"senders[{i}]"
        _field(sender, "id", str, where, required=True)
        _field(sender, "sends", list, where)
        for j, sent in enumerate(sender.get("sends", [])):
            if not isinstance(sent, str):
                raise ValueError(f"{where}.sends[{j}] is {_shown(sent)}, not a string")
    for i, connection in enumerate(_list_of_objects(description.get("connections", []),
                                                    "connections")):
        where = f"connections[{i}]"
        _field(connection, "id", str, where, required=True)
        _field(connection, "address", str, where, required=True)
    for i, transport in enumerate(_list_of_objects(description.get("transports", []),
                                                   "transports")):
        for key in ("scheme", "status"):
            _field(transport, key, str, f"transports[{i}]", required=True)

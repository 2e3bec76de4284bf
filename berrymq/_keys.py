"""Dict keys JSON cannot carry: only strings are object keys in JSON, and the encoder
turns ``1``, ``2.5``, ``True`` and ``None`` into the strings ``"1"``, ``"2.5"``, ``"true"``
and ``"null"`` without a word. A message or a reply holding such a key is refused naming
it (:mod:`berrymq.wire`), rather than reaching the other side changed."""

from __future__ import annotations

from typing import Any

__all__ = ["KeyNotText", "refuse_other_keys"]


class KeyNotText(TypeError):
    """A dict key that is not a string, in what was to cross (its text names the key)."""


def refuse_other_keys(value: Any) -> None:
    """Raise ``TypeError`` naming the first key of a dict in ``value`` that is not a string.

    JSON writes the keys 1, 2.5, True and None as the strings "1", "2.5", "true" and
    "null": the other side would get other keys than were sent, and two keys that write
    alike as one (``{1: "a", "1": "b"}`` arrived as ``{"1": "b"}``), without a word.
    Called once :func:`dumps` wrote an object beyond the envelope's (the common message
    holds none, and costs nothing here)."""
    stack = [value]
    push, pop, scalars = stack.append, stack.pop, _SCALARS
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict or isinstance(item, dict):
            for key, inner in item.items():
                if type(key) is not str and not isinstance(key, str):
                    raise KeyNotText(f"a dict key {key!r} ({type(key).__name__}): JSON object "
                                    "keys are strings, and the other side would get another "
                                    "key; make the keys strings")
                if type(inner) not in scalars:
                    push(inner)
        elif kind is list or kind is tuple or isinstance(item, list | tuple):
            for inner in item:
                if type(inner) not in scalars:
                    push(inner)


#: what :func:`refuse_other_keys` need not look into
_SCALARS = frozenset((str, int, float, bool, type(None)))

"""Identifiers: the ``name[@namespace][:action]`` strings that name messages and patterns.

An identifier is parsed once and cached, so that sending the same text again costs one
dictionary look-up. Matching is symmetric: ``*`` on either side matches anything.
"""

from __future__ import annotations

from typing import Any

from berrymq.errors import InvalidIdentifier

__all__ = ["MAX_IDENTIFIER_LENGTH", "WILDCARD", "Identifier", "InvalidIdentifier", "parse"]

WILDCARD = "*"
#: The longest identifier text, in characters: names are words, not payloads, and every
#: cache keyed by identifiers (routes, parsed texts) is bounded in bytes by it.
MAX_IDENTIFIER_LENGTH = 256

# The cache is bounded so that a program sending unique identifiers cannot grow it without
# limit; when full it is simply emptied (parsing is cheap, the cache is for the hot path).
_CACHE_LIMIT = 8192
_cache: dict[str, Identifier] = {}


def _check_part(text: str, part: str, what: str) -> None:
    if not part:
        raise InvalidIdentifier(text, f"the {what} is empty")
    if WILDCARD in part and part != WILDCARD:
        raise InvalidIdentifier(
            text, f"the {what} {part!r} has a partial wildcard; use '*' alone"
        )


def _why_not_one_word(text: str) -> str:
    """Why ``text``, which is not one printable word, is refused: a lone surrogate (a JSON
    escape such as ``\\ud800`` decodes to one) is not text at all, and saying it holds
    whitespace or control characters would send its writer looking for the wrong thing."""
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return (f"it is not valid Unicode text: it holds a lone surrogate (U+{ord(char):04X}), "
                    "half of a UTF-16 pair, which no UTF-8 text can encode")
    return "it contains whitespace or control characters"


class Identifier:
    """A parsed identifier: ``name``, ``action``, ``namespace`` and whether it is local.

    ``Identifier("job@ops:go")`` has name ``job``, action ``go`` and namespace ``ops``; a
    missing action means ``*``. Identifiers are immutable, hashable and compare by their
    canonical text (``str(identifier)``).
    """

    __slots__ = ("_hash", "action", "id", "is_local", "name", "namespace", "text")

    name: str
    action: str
    namespace: str | None
    is_local: bool
    id: str
    #: the canonical text, as ``str()`` gives it (``"ns:name:action"`` with a namespace)
    text: str
    _hash: int

    def __new__(cls, text: str | Identifier) -> Identifier:
        if type(text) is Identifier:
            return text
        cached = _cache.get(text) if type(text) is str else None
        if cached is not None:
            return cached
        return _parse(text)

    def __init__(self, text: str | Identifier) -> None:  # parsing happens in __new__
        pass

    @property
    def is_wildcard(self) -> bool:
        """True when the name or the action is ``*``."""
        return self.name == WILDCARD or self.action == WILDCARD

    def matches(self, other: Identifier | str) -> bool:
        """Whether a message named by one of the two would reach a receiver of the other."""
        if not isinstance(other, Identifier):
            other = Identifier(other)
        return (
            self.namespace == other.namespace
            and (self.name == other.name or self.name == WILDCARD or other.name == WILDCARD)
            and (
                self.action == other.action
                or self.action == WILDCARD
                or other.action == WILDCARD
            )
        )

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Identifier({self.text!r})"

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Identifier):
            return self.text == other.text
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        return (Identifier, (self.text,))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Identifier is immutable")


def _parse(text: object) -> Identifier:
    if not isinstance(text, str):
        raise InvalidIdentifier(text, f"expected a str, got {type(text).__name__}")
    if not text:
        raise InvalidIdentifier(text, "it is empty")
    words = text.split(None, 1)  # no whitespace: the text itself, alone
    if not text.isprintable() or len(words) != 1 or words[0] != text:
        raise InvalidIdentifier(text, _why_not_one_word(text))
    head, colon, action = text.partition(":")
    if colon:
        if ":" in action:
            raise InvalidIdentifier(text, "it has more than one ':'")
        _check_part(text, action, "action")
    else:
        action = WILDCARD
    name, at, namespace = head.partition("@")
    _check_part(text, name, "name")
    if "@" in action:
        raise InvalidIdentifier(text, "'@namespace' belongs after the name, before ':'")
    ns: str | None = None
    if at:
        if not namespace:
            raise InvalidIdentifier(text, "the namespace after '@' is empty")
        if "@" in namespace or WILDCARD in namespace:
            raise InvalidIdentifier(text, f"the namespace {namespace!r} is not a plain name")
        ns = namespace
    canonical = f"{name}@{ns}:{action}" if ns is not None else f"{name}:{action}"
    if len(canonical) > MAX_IDENTIFIER_LENGTH:  # the text on the wire: "name" is "name:*"
        counted = "" if colon else (f", {len(canonical)} with the ':*' that a missing action "
                                    "counts as")
        raise InvalidIdentifier(text, f"it is {len(text)} characters long{counted}, over the "
                                      f"limit of {MAX_IDENTIFIER_LENGTH}")
    ident = object.__new__(Identifier)
    setter = object.__setattr__
    setter(ident, "name", name)
    setter(ident, "action", action)
    setter(ident, "namespace", ns)
    setter(ident, "is_local", name.startswith("_"))
    setter(ident, "id", f"{name}:{action}")
    setter(ident, "text", canonical)
    # Not hash(canonical): the route cache keys both the text and the Identifier, and an
    # equal hash would make every look-up by text run Identifier.__eq__ first.
    setter(ident, "_hash", hash((Identifier, canonical)))
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[text] = ident
    return ident


def parse(text: str | Identifier) -> Identifier:
    """Return the :class:`Identifier` for ``text`` (an identifier is returned as it is)."""
    if type(text) is Identifier:
        return text
    cached = _cache.get(text) if type(text) is str else None
    return cached if cached is not None else _parse(text)

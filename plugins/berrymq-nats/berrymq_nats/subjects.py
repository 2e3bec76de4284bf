"""Identifiers to NATS subjects, and patterns to the subjects that receive them.

A message sent as ``name@namespace:action`` is published on::

    <prefix>.<namespace>.<name>.<action>

- ``<prefix>`` is the ``subject_prefix`` setting (``berrymq`` by default), so that several
  independent buses can share one NATS account.
- ``<namespace>`` is ``~`` for the default namespace, else the escaped namespace.
- Every name, action and namespace is escaped: ASCII letters, digits, ``_`` and ``-``
  stay; every other character (``.``, ``*``, ``>``, ``%``, ``~``, ``$``, non-ASCII ...)
  becomes ``%XX`` for each byte of its UTF-8 encoding. Identifiers never contain
  whitespace or control characters (the parser refuses them).
- A wildcard name or action (``*``) is published as the literal token ``%2A``, which
  no escaped name can produce otherwise, as ``*`` is never part of a name.

NATS wildcards only work for subscribers, while berryMQ's work on both sides. So a
receiver of a pattern subscribes to the subjects of the messages it must get, including
messages sent with a wildcard (the ``%2A`` token)::

    pattern     subscribes to (P = <prefix>.<namespace>)
    job:stop    P.job.stop  P.%2A.stop  P.job.%2A  P.%2A.%2A
    job:*       P.job.*     P.%2A.*
    *:stop      P.*.stop    P.*.%2A
    *:*         P.*.*

A subject must fit the server's control line (``max_control_line``, 4096 bytes unless
the server is set up otherwise): the line ``PUB <subject> <reply> <size>`` or ``SUB
<subject> <queue group> <sid>``. A longer one makes the server answer ``-ERR 'Maximum
Control Line Exceeded'``, and ``nats-py`` then closes the client for good. So a message
whose subject is over :data:`MAX_PUBLISH_SUBJECT` bytes is refused as it is sent
(:class:`SubjectTooLong`), a receiver whose subscription would not fit
(:meth:`SubjectMap.subscribe_problem`: a shared queue sends its subject twice, as the
subject and the queue group) as it is made, and ``subject_prefix`` is at most
:data:`MAX_PREFIX` bytes.

Subjects covered by another subscription of the same process are dropped (``job:*``
covers ``job:stop``). A message matching two remaining subscriptions (``job:*`` and
``*:stop`` both see ``job:stop``) reaches the process twice and is delivered once: the bus
drops a message whose unique id it has already seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from berrymq.errors import MessageTooLarge
from berrymq.identifier import WILDCARD, Identifier

__all__ = [
    "DEFAULT_NAMESPACE_TOKEN",
    "DEFAULT_PREFIX",
    "MAX_CONTROL_LINE",
    "MAX_PREFIX",
    "MAX_PUBLISH_SUBJECT",
    "MAX_SUBSCRIBE_LINE",
    "WILDCARD_TOKEN",
    "SubjectMap",
    "SubjectTooLong",
    "check_prefix",
    "escape_token",
    "minimize",
    "prefix_problem",
    "unescape_token",
]

DEFAULT_PREFIX = "berrymq"
DEFAULT_NAMESPACE_TOKEN = "~"
WILDCARD_TOKEN = "%2A"

#: The server's longest control line (its ``max_control_line``, 4096 bytes by default),
#: counted, as the server does, without the verb and the line's end.
MAX_CONTROL_LINE = 4096
#: Room on a line for the spaces, a subscription's id or a payload's size.
_NUMBERS = 64
#: Room on a ``PUB`` line for a reply subject (an ``ask``'s: ``_INBOX.`` and about 40 more).
_REPLY = 128
#: The longest subject a message is published on, in bytes.
MAX_PUBLISH_SUBJECT = MAX_CONTROL_LINE - _REPLY - _NUMBERS
#: The longest subject and queue group of one subscription together, in bytes.
MAX_SUBSCRIBE_LINE = MAX_CONTROL_LINE - _NUMBERS
#: The longest ``subject_prefix``, in bytes (the rest of a subject needs room too).
MAX_PREFIX = 1024


class SubjectTooLong(MessageTooLarge):
    """A message's (or a receiver's) NATS subject would not fit the server's control line;
    it was not sent (not subscribed)."""


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SUBJECT_CACHE_LIMIT = 16384


def escape_token(text: str) -> str:
    """Escape one name, action or namespace into a NATS subject token.

    >>> escape_token("job.v2")
    'job%2Ev2'
    >>> escape_token("*")
    '%2A'
    """
    if all(ch in _SAFE for ch in text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out)


def unescape_token(token: str) -> str:
    """The inverse of :func:`escape_token` (for tools that read subjects)."""
    if "%" not in token:
        return token
    data = bytearray()
    index = 0
    while index < len(token):
        ch = token[index]
        if ch == "%":
            data.append(int(token[index + 1:index + 3], 16))
            index += 3
        else:
            data.extend(ch.encode("utf-8"))
            index += 1
    return data.decode("utf-8")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is usable as the first tokens of a subject, else raise."""
    problem = prefix_problem(prefix)
    if problem is not None:
        raise ValueError(f"subject_prefix {problem}")
    return prefix


def prefix_problem(prefix: object) -> str | None:
    """What is wrong with ``prefix`` as the first tokens of a subject, or None (also the
    settings file's check of ``subject_prefix``)."""
    if not isinstance(prefix, str) or not prefix:
        return f"must be a non-empty string, got {prefix!r}"
    size = len(prefix.encode("utf-8", "replace"))
    if size > MAX_PREFIX:
        return (f"is {size} bytes long, over {MAX_PREFIX}: every subject starts with it and "
                f"must fit the NATS server's control line ({MAX_CONTROL_LINE} bytes)")
    for token in prefix.split("."):
        if not token or any(ch in "*> \t\r\n" for ch in token) or not token.isprintable():
            return (f"{prefix!r} is not a valid NATS subject prefix: use tokens separated "
                    "by single dots, without '*', '>' or whitespace")
    return None


#: A tree of subjects by token: ``{"a": {"b": {None: {}}}}`` holds ``a.b`` (``None``
#: marks where a subject ends).
_Tree: TypeAlias = "dict[str | None, _Tree]"


def _covered(node: _Tree, tokens: list[str], index: int, itself: bool) -> bool:
    """Whether ``node`` holds, below it, a subject of ``len(tokens)`` tokens that covers
    ``tokens[index:]`` with a ``*`` token (``itself``: the path so far is ``tokens``'
    own, which does not count)."""
    if index == len(tokens):
        return not itself and None in node
    token = tokens[index]
    same = node.get(token)
    if same is not None and _covered(same, tokens, index + 1, itself):
        return True
    wild = node.get("*") if token != "*" else None
    return wild is not None and _covered(wild, tokens, index + 1, False)


def minimize(subjects: Iterable[str]) -> set[str]:
    """Drop every subject that another one of ``subjects`` covers with a ``*`` token
    (``a.*.c`` covers ``a.b.c``; ``a.*.*`` covers ``a.b.*``).

    Runs on the I/O thread at every change of the bus's subscriptions, so it must not
    compare all pairs (1,000 patterns, about 4,000 subjects, took 12 s that way): the
    subjects go into a tree by token, and each looks for a cover along the paths of its
    own tokens and of ``*``, which costs a few steps per token for berryMQ's subjects
    (``*`` only in the last two tokens)."""
    unique = set(subjects)
    tree: _Tree = {}
    for subject in unique:
        node = tree
        for token in subject.split("."):
            node = node.setdefault(token, {})
        node[None] = {}
    return {s for s in unique if not _covered(tree, s.split("."), 0, True)}


class SubjectMap:
    """Maps identifiers to subjects under one prefix; publish subjects are cached."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = check_prefix(prefix)
        self._cache: dict[Identifier, str] = {}
        # the prefix's bytes beyond its characters (the rest of a subject is ASCII)
        self._extra = len(prefix.encode("utf-8")) - len(prefix)

    def _base(self, ident: Identifier) -> str:
        ns = ident.namespace
        token = DEFAULT_NAMESPACE_TOKEN if ns is None else escape_token(ns)
        return f"{self.prefix}.{token}"

    def subject_of(self, ident: Identifier) -> str:
        """The subject of ``ident``, however long (to compare with one a message came on)."""
        subject = self._cache.get(ident)
        if subject is None:
            subject = f"{self._base(ident)}.{escape_token(ident.name)}.{escape_token(ident.action)}"
            if len(self._cache) >= _SUBJECT_CACHE_LIMIT:
                self._cache = {}
            self._cache[ident] = subject
        return subject

    def subject(self, ident: Identifier) -> str:
        """The subject a message sent as ``ident`` is published on.

        :raises SubjectTooLong: over :data:`MAX_PUBLISH_SUBJECT` bytes."""
        subject = self.subject_of(ident)
        size = len(subject) + self._extra
        if size > MAX_PUBLISH_SUBJECT:
            raise SubjectTooLong(
                f"message {ident} was not sent: its NATS subject would be {size} bytes, over "
                f"the {MAX_PUBLISH_SUBJECT} that fit the server's {MAX_CONTROL_LINE}-byte "
                "control line (a shorter identifier or subject_prefix fits)")
        return subject

    def subscribe_problem(self, pattern: Identifier, shared: bool) -> str | None:
        """Why receivers of ``pattern`` (a shared queue's: ``shared``) cannot subscribe
        through NATS: its subjects (and queue group) would not fit the server's control
        line; None when they fit."""
        size = len(self.subject_of(pattern)) + self._extra  # the longest of its subjects
        if shared:
            size *= 2  # the subject and the queue group, on one line
        if size <= MAX_SUBSCRIBE_LINE:
            return None
        what = "subject and queue group" if shared else "subject"
        return (f"the NATS {what} of {pattern} would take {size} bytes of the server's "
                f"{MAX_CONTROL_LINE}-byte control line, over the {MAX_SUBSCRIBE_LINE} that fit "
                "(a shorter pattern or subject_prefix fits)")

    def interest(self, pattern: Identifier) -> tuple[str, ...]:
        """The subjects a receiver of ``pattern`` subscribes to (see the module docs)."""
        base = self._base(pattern)
        name = None if pattern.name == WILDCARD else escape_token(pattern.name)
        action = None if pattern.action == WILDCARD else escape_token(pattern.action)
        w = WILDCARD_TOKEN
        if name is not None and action is not None:
            return (f"{base}.{name}.{action}", f"{base}.{w}.{action}",
                    f"{base}.{name}.{w}", f"{base}.{w}.{w}")
        if name is not None:
            return (f"{base}.{name}.*", f"{base}.{w}.*")
        if action is not None:
            return (f"{base}.*.{action}", f"{base}.*.{w}")
        return (f"{base}.*.*",)

    def group(self, pattern: Identifier) -> str:
        """The NATS queue group of the shared queues of ``pattern``."""
        return self.subject_of(pattern)

"""The view of peers that ``ask`` relies on (:mod:`berrymq_nats.asking`), and its bounds.

Any client of the NATS server can publish on the presence subject, so what comes there is
checked before it is kept or used:

- a node id is what a bus makes (:attr:`berrymq.Bus.node_id`: lowercase hex), at most
  :data:`NODE_ID_CHARS` characters: it becomes one token of a subject (a probe, the
  answer to ``hello``), and a node id holding a space or a line break would break the
  NATS protocol line it is written in. A presence message with any other node id, of
  another kind, or not JSON is ignored (counted in :attr:`View.ignored`, logged at most
  once a minute);
- a peer that announces more than :data:`MAX_PEER_PATTERNS` patterns, a pattern that is
  not a valid identifier, or patterns that would take the view past
  :data:`MAX_PATTERNS` in all, is kept as **following everything**: asks expect it (so
  they still reach it) and probe it when it is silent, which takes it out of an ask it
  does not listen to, or out of the view when nobody listens on its node subject. So the
  view holds at most :data:`MAX_PEERS` peers and :data:`MAX_PATTERNS` patterns, and an
  ask's look-up in it costs at most that many matches.
"""

from __future__ import annotations

import logging
import re
import time

from berrymq.identifier import Identifier, parse

__all__ = ["EVERYTHING", "MAX_PATTERNS", "MAX_PEERS", "MAX_PEER_PATTERNS", "NODE_ID_CHARS",
           "Ignored", "View", "node_id"]

logger = logging.getLogger("berrymq.nats")

#: How many peers the view holds; beyond, the oldest is forgotten (then it is unknown).
MAX_PEERS = 10_000
#: The most patterns one peer is known by; a peer announcing more follows everything.
MAX_PEER_PATTERNS = 1_000
#: The most patterns the view holds in all; a peer that would take it past follows everything.
MAX_PATTERNS = 50_000
#: The longest node id taken (a bus makes 16 hex digits).
NODE_ID_CHARS = 64
#: The patterns of a peer that follows everything (compared by identity, not matched).
EVERYTHING: tuple[Identifier, ...] = (parse("*"),)

_NODE_ID = re.compile(f"[0-9a-f]{{1,{NODE_ID_CHARS}}}")
_LOG_INTERVAL = 60.0


class Ignored(ValueError):
    """A presence message that is not taken."""


def node_id(value: object) -> str:
    """``value`` if it is a node id as a bus makes them, else :class:`Ignored`."""
    if type(value) is str and _NODE_ID.fullmatch(value):
        return value
    raise Ignored(f"the node id {str(value)[:80]!r} is not up to {NODE_ID_CHARS} "
                  "lowercase hex digits")


def _patterns(announced: object) -> tuple[Identifier, ...]:
    """The patterns of an announcement; :data:`EVERYTHING` for too many or an invalid one."""
    if type(announced) is not list:
        raise Ignored(f"the patterns are a {type(announced).__name__}, not a list")
    if len(announced) > MAX_PEER_PATTERNS:
        return EVERYTHING
    parsed: dict[Identifier, None] = {}
    for pattern in announced:
        if type(pattern) is not str:
            return EVERYTHING
        try:
            parsed[parse(pattern)] = None
        except ValueError:  # InvalidIdentifier
            return EVERYTHING
    return tuple(parsed)


class View:
    """The peers one bridge knows, by node id, with the patterns they answer for (I/O
    thread; :meth:`expected` reads it from any thread)."""

    def __init__(self, who: str) -> None:
        self.peers: dict[str, tuple[Identifier, ...]] = {}
        #: patterns held in all (a peer that follows everything counts one)
        self.patterns = 0
        #: presence messages ignored (see the module's docstring)
        self.ignored = 0
        self._who = who
        self._logged_at = -_LOG_INTERVAL
        self._logged = 0

    def update(self, node: str, announced: object) -> None:
        """``node`` announced ``announced`` (a JSON list of patterns)."""
        patterns = _patterns(announced)
        self.remove(node)
        if self.patterns + len(patterns) > MAX_PATTERNS:
            patterns = EVERYTHING
        if len(self.peers) >= MAX_PEERS:
            self.remove(next(iter(self.peers)))
        self.peers[node] = patterns
        self.patterns += len(patterns)

    def remove(self, node: str) -> None:
        patterns = self.peers.pop(node, None)
        if patterns is not None:
            self.patterns = max(0, self.patterns - len(patterns))

    def expected(self, ident: Identifier) -> set[str]:
        """The peers that answer ``ident``."""
        return {node for node, patterns in list(self.peers.items())
                if patterns is EVERYTHING or any(p.matches(ident) for p in patterns)}

    def ignore(self, subject: str, exc: Exception) -> None:
        """Count a presence message that is not taken; log at most once a minute."""
        self.ignored += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_INTERVAL:
            logger.warning("%s ignored %d presence message(s) on %s (%d in all); the last: "
                           "%s", self._who, self.ignored - self._logged, subject, self.ignored,
                           str(exc if isinstance(exc, Ignored) else repr(exc))[:200])
            self._logged_at, self._logged = now, self.ignored


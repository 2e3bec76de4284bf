"""Cycle detection's two halves: the uids a node gives its messages, and the uids it has seen.

A message leaving a node gets a ``uid``: the node's random prefix (48 bits drawn when the
node is made, unrelated to the public node id) plus 72 random bits of its own, from the
operating system's CSPRNG (:func:`os.urandom`), in URL-safe base64: 20 characters, no
longer than a node id and a counter were. Nobody can predict the uid of a message a node
has not sent yet, not even from the uids it sent before, so a client that sends messages
with made-up uids cannot make a node drop a peer's later messages as seen (issue 10). The
random bits are drawn 4.5 KiB at a time into a buffer (:func:`uid_source`): no lock, and
about 0.1 µs per uid more than a counter.

A message coming in is checked on receipt only: one whose ``uid`` has the node's prefix
went round a cycle back home; one seen before came by two ways. The seen uids are kept in
two generations of dicts, filled with ``setdefault`` (atomic for str keys) and dropped one
generation at a time, so the check takes no lock and the memory stays bounded.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import threading
from collections.abc import Callable, Iterator

__all__ = ["SEEN_LIMIT", "UID_BATCH", "SeenUids", "UidMemory", "uid_source"]

#: uids remembered per generation (two generations are kept).
SEEN_LIMIT = 50_000

#: random uid endings drawn at once into a node's buffer (9 bytes each: 12 characters)
UID_BATCH = 512


def uid_source(prefix: str) -> Callable[[], str]:
    """The uid maker of one node: ``prefix`` plus 12 base64 characters (72 bits) from
    :func:`os.urandom`, taken from a buffer refilled :data:`UID_BATCH` at a time (one system
    call per 512 uids).

    Taking one is a C iterator's ``__next__`` (atomic under the GIL): no lock. Two threads
    that find the buffer empty at once each draw a new one and one of them is dropped,
    which costs a few random bytes, never a repeated uid.
    """
    empty: Iterator[str] = iter(())
    current = [empty.__next__]

    def new_uid() -> str:
        try:
            return current[0]()
        except StopIteration:
            while True:
                text = base64.urlsafe_b64encode(os.urandom(9 * UID_BATCH)).decode("ascii")
                ends = map(text.__getitem__, map(slice, range(0, 12 * UID_BATCH, 12),
                                                 range(12, 12 * UID_BATCH + 12, 12)))
                take = current[0] = map(prefix.__add__, ends).__next__
                with contextlib.suppress(StopIteration):  # drained by others meanwhile
                    return take()

    return new_uid


class SeenUids:
    """The newest ``limit`` to ``2 * limit`` uids seen, in two generations of dicts: a
    full one becomes the older and the one before it is dropped. No lock on the way of
    a message (``setdefault`` is atomic for str keys); one taken once in ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.now: dict[str, object] = {}
        self.before: dict[str, object] = {}
        self._rotating = threading.Lock()

    def __len__(self) -> int:
        return len(self.now) + len(self.before)

    def first(self, uid: str) -> bool:
        """Whether ``uid`` is new here (it is remembered from now on)."""
        if uid in self.before:
            return False
        token = object()
        now = self.now
        if now.setdefault(uid, token) is not token:
            return False
        if len(now) >= self.limit:
            with self._rotating:  # two threads that find it full rotate it once
                if self.now is now:
                    self.before, self.now = now, {}
        return True


class UidMemory:
    """The uids of one node: those it gives (:attr:`new_uid`) and those it has seen."""

    def __init__(self) -> None:
        #: the start of this node's uids: random, secret until its messages are seen, and
        #: not the node id (which the ``network`` method tells anyone)
        self.prefix = secrets.token_urlsafe(6)  # 8 characters: every uid's first 8
        #: the next uid: the prefix and 72 random bits (no lock, see :func:`uid_source`)
        self.new_uid = uid_source(self.prefix)
        self.seen = SeenUids(SEEN_LIMIT)

    def first_sight(self, uid: str) -> bool:
        """False for a uid of this node's own (back from a cycle) or one seen before."""
        return not uid.startswith(self.prefix) and self.seen.first(uid)

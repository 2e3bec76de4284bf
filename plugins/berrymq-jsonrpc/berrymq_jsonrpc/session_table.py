"""The sessions a node's protocol service keeps, by token: opened by the ``connect_*`` and
``interconnect`` methods, found by the token of each later request, and closed by
``close_connection``, by their peer going away, or when idle longer than their ttl.

A session is not tied to the connection it was opened on: its token works from any
connection of the same transport until the ttl expires, so clients that open a connection
per call can use every style. Only an interconnection whose link answers over the
connection it came on ends with that connection (:meth:`SessionTable.close_sessions_of`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from berrymq.bursts import BurstLog
from berrymq.stats import stats_for
from berrymq.transports.ioloop import io_loop
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import app_error, invalid_params
from berrymq_jsonrpc.sessions import WAITS, Session, in_waits

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["DEFAULT_LIVENESS_INTERVAL", "DROPPED_AT_CLOSE", "SessionTable"]

logger = logging.getLogger("berrymq.remote")

#: How often, in seconds, the links of interconnect sessions are checked for a peer gone
#: (setting ``liveness_interval``).
DEFAULT_LIVENESS_INTERVAL = 5.0
#: The reason the node counts messages of a session queue closed before they were taken.
DROPPED_AT_CLOSE = "dropped: session closed with messages not taken"

_TOKEN_LENGTH = len(secrets.token_urlsafe(p.TOKEN_BYTES))


class SessionTable:
    """The open sessions of one transport's service, by token, and their expiry.

    :param bus: the bus whose forwarders the links of interconnect sessions are.
    :param name: names the transport in log lines.
    :param max_sessions: how many sessions may be open at once (setting
        ``max_sessions``); one more is refused with *Limit reached*, as is one more
        interconnection sent back over a connection that carries
        :attr:`max_interconnects_per_connection` of them.
    :param liveness_interval: how often the links of interconnect sessions are checked
        for a peer gone.
    """

    def __init__(self, bus: Bus, *, name: str, max_sessions: int,
                 liveness_interval: float) -> None:
        self.bus = bus
        self.name = name
        self.max_sessions = max_sessions
        #: the longest ``ttl`` a session may have, in seconds (setting ``max_ttl``); one
        #: asking for more is refused with *Limit reached*
        self.max_ttl: float = p.DEFAULT_MAX_TTL
        #: the most interconnections whose links send back over one connection a peer
        #: opened (setting ``max_interconnects_per_connection``, which the TCP transport
        #: reads: only its connections carry requests both ways)
        self.max_interconnects_per_connection = p.DEFAULT_MAX_INTERCONNECTS_PER_CONNECTION
        #: how many open sessions send back over each such connection (under _lock)
        self._sent_on: dict[Any, int] = {}
        #: how often the links of interconnect sessions are checked for a peer gone
        self.liveness_interval = liveness_interval
        self.sessions: dict[str, Session] = {}
        #: the tokens of the sessions opened over each connection (``Session.context``),
        #: and of those whose requests last came over it (``carried_by``), under _lock: a
        #: connection's question "does a session need me" without a scan of every session
        #: (each idle connection asked it by a scan: 6,000 of them, 4 s of the I/O thread)
        self._of_context: dict[Any, set[str]] = {}
        self._carried_over: dict[Any, set[str]] = {}
        #: the sessions refused, by the setting whose cap they were over (``/status``)
        self.refused: dict[str, int] = {}
        self.stats = stats_for(bus)  # stats: the node's counters (berrymq.stats)
        self._lock = threading.Lock()
        self._sweeper: concurrent.futures.Future[None] | None = None
        self._closed = False
        self._drops = BurstLog(logger)  # logged once per burst, with a count

    def open_session(self, style: str, ttl: float, context: Any = None,
                     token: str | None = None, *, sends_on: Any = None) -> Session:
        """Open a session and give it a fresh token, or ``token``: the one a JSON-RPC 1.0
        peer proposed for ``interconnect`` (Invalid params when it names an open session).
        ``sends_on``: the connection the session's link will send back over (see
        :meth:`check_room`). Once the node is stopping: *Not available*, naming why.
        """
        if self._closed:  # a request read as the node stops: no session outlives it
            raise app_error(p.NOT_AVAILABLE, {"detail": "the node is stopping: it opens no "
                                                        "new session"})
        session = Session(token or secrets.token_urlsafe(p.TOKEN_BYTES), style, ttl, context)
        with self._lock:
            if token is not None and token in self.sessions:
                raise invalid_params("'token' already names an open session; propose another")
            self.check_ttl(ttl)
            self._check_room(sends_on)
            if sends_on is not None:
                session.sends_on = sends_on
                self._sent_on[sends_on] = self._sent_on.get(sends_on, 0) + 1
            self.sessions[session.token] = session
            if context is not None:
                self._of_context.setdefault(context, set()).add(session.token)
            if self._sweeper is None:
                self._sweeper = io_loop.submit(self._sweep())
        return session

    def count_refusal(self, setting: str) -> None:
        """Count one connection turned away for going over ``setting`` (``max_size``: a
        request over it, answered and closed), for ``/status`` ``refused``."""
        with self._lock:
            self.refused[setting] = self.refused.get(setting, 0) + 1

    def check_room(self, sends_on: Any = None) -> None:
        """*Limit reached* when one more session would go over ``max_sessions``, or, for a
        session whose link would send back over the connection ``sends_on``, over
        ``max_interconnects_per_connection`` of that connection (counted in
        ``/status``): asked before a session's link is made, and again when it opens."""
        with self._lock:
            self._check_room(sends_on)

    def _check_room(self, sends_on: Any) -> None:
        # under _lock. Sessions past their ttl that the sweeper has not closed yet do not
        # count: they are taken out here (and closed on a WAITS thread) before a refusal.
        if len(self.sessions) >= self.max_sessions and (expired := self._detach_expired()):
            in_waits(self._close_expired, expired)
        if len(self.sessions) >= self.max_sessions:
            self.refused["max_sessions"] = self.refused.get("max_sessions", 0) + 1
            raise app_error(p.LIMIT_REACHED, {
                "setting": "max_sessions", "limit": self.max_sessions,
                "detail": f"the node has {self.max_sessions} sessions open, the cap "
                          "(setting max_sessions); close one or wait for one to expire"})
        cap = self.max_interconnects_per_connection
        if sends_on is not None and self._sent_on.get(sends_on, 0) >= cap:
            setting = "max_interconnects_per_connection"
            self.refused[setting] = self.refused.get(setting, 0) + 1
            raise app_error(p.LIMIT_REACHED, {
                "setting": setting, "limit": cap,
                "detail": f"this connection carries {cap} interconnections whose messages "
                          f"the node sends back over it, the cap (setting {setting}); close "
                          "one, or interconnect over another connection"})

    def check_ttl(self, ttl: float) -> None:
        """*Limit reached* for a ``ttl`` over :attr:`max_ttl` (counted in ``/status``)."""
        if ttl > self.max_ttl:
            self.refused["max_ttl"] = self.refused.get("max_ttl", 0) + 1
            raise app_error(p.LIMIT_REACHED, {
                "setting": "max_ttl", "limit": self.max_ttl,
                "detail": f"a session's ttl may be at most {self.max_ttl:g} seconds (setting "
                          f"max_ttl), not {ttl!r}; ask for less: traffic either way keeps a "
                          "session open"})

    def session(self, token: Any, carrier: Any = None) -> Session:
        """The open session of ``token`` (touched; ``carrier``, the connection its messages
        came on, noted as :attr:`Session.carried_by`), or the documented error: Invalid
        params when it is missing or not a string, :data:`~berrymq_jsonrpc.protocol.BAD_TOKEN`
        when it cannot be a token (one the node issues, or one a JSON-RPC 1.0 peer may
        propose), :data:`~berrymq_jsonrpc.protocol.UNKNOWN_TOKEN` when no
        open session has it (never opened, closed or expired)."""
        if type(token) is not str:
            given = "is missing or null" if token is None else "must be a string"
            raise invalid_params(f"'token' {given}: the string that connect_oneway, "
                                 "interconnect or connect_via_queue returned")
        session = self.sessions.get(token)
        if session is None:
            issued = len(token) == _TOKEN_LENGTH and token.isascii() and token.replace(
                "-", "").replace("_", "").isalnum()
            if not issued and not p.proposable_token(token):
                raise app_error(p.BAD_TOKEN)  # neither this node's kind nor a 1.0 peer's
            raise app_error(p.UNKNOWN_TOKEN)
        session.touch()
        if carrier is not None and session.carried_by is not carrier:
            with self._lock:
                if token in self.sessions:  # (not closed meanwhile)
                    _untie(self._carried_over, session.carried_by, token)
                    self._carried_over.setdefault(carrier, set()).add(token)
                session.carried_by = carrier
        return session

    def ties(self, connection: Any) -> bool:
        """Whether a session was opened over ``connection``, or last used over it (an
        idle connection that a session needs is not closed)."""
        return bool(self._of_context.get(connection) or self._carried_over.get(connection))

    def close_session(self, token: str, reason: str = "closed") -> bool:
        """Close a session and free its resources; False when there was none."""
        with self._lock:
            session = self._detach(token)
        if session is None:
            return False
        self._release(session, reason)
        return True

    def _detach(self, token: str) -> Session | None:
        """Under ``_lock``: take the session of ``token`` out of the table (its token is
        unknown from now on, and it no longer counts against the caps); None if none."""
        session = self.sessions.pop(token, None)
        if session is not None:
            _untie(self._of_context, session.context, token)
            _untie(self._carried_over, session.carried_by, token)
        carrier = None if session is None else session.sends_on
        if carrier is not None:
            left = self._sent_on.pop(carrier) - 1
            if left:
                self._sent_on[carrier] = left
        return session

    def _detach_expired(self) -> list[Session]:
        """Under ``_lock``: take out every session idle longer than its ttl."""
        now = time.monotonic()
        expired = [token for token, session in self.sessions.items() if session.deadline < now]
        return [session for token in expired if (session := self._detach(token)) is not None]

    def _close_expired(self, sessions: list[Session]) -> None:
        """Free what the expired ``sessions``, detached, hold (see :meth:`_release`)."""
        for session in sessions:
            self._release(session, "expired")
        logger.info("%s: %d session(s) idle longer than their ttl; closed", self.name,
                    len(sessions))

    def _release(self, session: Session, reason: str) -> None:
        """Free what a detached session holds: its queue (messages never taken are counted
        lost), its link (which may flush), and tell those waiting on its end."""
        session.closed = True
        if session.queue is not None:
            dropped = session.queue.close()
            if dropped:  # accepted ("ok" to their senders), never taken: lost
                self.stats.lost(DROPPED_AT_CLOSE, dropped)  # stats
                self._drops.warning("%s: %d message(s) freed unread: the queue of session "
                                    "%r (%s) was closed (%s)", self.name, dropped, session,
                                    session.queue.pattern, reason)
        link = session.link
        if link is not None:
            self.bus.remove_forwarder(link)
            link.close()
        # the opener's connection (told through on_close) says itself that it was lost,
        # but takes an expiry as a close, quietly
        told = bool(session.on_close) and reason != "expired"
        if session.style == "interconnect" and reason not in _ENDED_ON_PURPOSE and not told:
            why = (f"idle longer than its ttl, {session.ttl:g} s: interconnect again, or with "
                   "a longer ttl" if reason == "expired" else reason)
            where = f" with {link.address}" if link is not None else ""
            # (texts, not the session: a handler that keeps records would keep it alive)
            logger.warning("%s: interconnection %s%s ended (%s); messages are no longer "
                           "forwarded either way", self.name, repr(session), where, why)
        for callback in session.on_close:
            try:
                callback(reason)
            except Exception:
                logger.exception("closing session %r", session)
        logger.debug("%s session %r %s", self.name, session, reason)

    def close_sessions_of(self, context: Any, reason: str) -> None:
        """A connection (``context``) ended: close the sessions that cannot live without
        it (an interconnection whose link answers over it; on a :data:`WAITS` thread, as
        closing may flush), and let the others be used from any other connection of the
        transport until their ttl expires. Quick: may be called on the I/O loop."""
        with self._lock:
            tokens = []
            for token in self._of_context.pop(context, ()):
                session = self.sessions[token]
                link = session.link
                if link is not None and getattr(link, "channel", None) is context:
                    tokens.append(token)
                else:
                    session.context = None
            for token in self._carried_over.pop(context, ()):
                self.sessions[token].carried_by = None
        for token in tokens:
            in_waits(self.close_session, token, reason)

    async def _sweep(self) -> None:
        """On the I/O loop: close the sessions idle longer than their ttl (the closing
        itself, which may flush a link, runs on a :data:`WAITS` thread)."""
        loop = asyncio.get_running_loop()
        next_probe = time.monotonic() + self.liveness_interval
        while not self._closed:
            ttls = [s.ttl for s in list(self.sessions.values())]
            pause = min(1.0, max(0.02, min(ttls) / 4)) if ttls else 1.0
            await asyncio.sleep(min(pause, max(0.02, next_probe - time.monotonic())))
            now = time.monotonic()
            if now >= next_probe:
                next_probe = now + self.liveness_interval
                await self._probe_links()
            with self._lock:
                expired = self._detach_expired()
            if expired:  # closed in one go: one thread hop per session fell behind
                try:
                    await loop.run_in_executor(WAITS, self._close_expired, expired)
                except RuntimeError:  # the interpreter is shutting down
                    return

    async def _probe_links(self) -> None:
        """Liveness: let each session's link look whether its peer is gone (an HTTP peer
        has no standing connection whose end would tell); a link that finds it so closes
        its session, as a failed send would. Bounded by the channels' own timeouts."""
        probes = [probe() for s in list(self.sessions.values())
                  if (probe := getattr(s.link, "probe", None)) is not None]
        for result in await asyncio.gather(*probes, return_exceptions=True):
            if isinstance(result, Exception):
                logger.warning("%s: a liveness check failed: %s", self.name, result)

    def close(self) -> None:
        """Close every session and stop the sweeper (idempotent)."""
        self._closed = True
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
        for token in list(self.sessions):
            self.close_session(token, "server closed")
        self._drops.flush()


#: The reasons an interconnection's session ends that a side asked for itself (closing
#: its connection or its transport), was told of (``close_connection``) or was told by an
#: exception (an ``interconnect`` that failed): said at debug level only; its other ends
#: (its ttl, a connection lost) are warnings, as nothing else would tell an operator that
#: messages stopped going across.
_ENDED_ON_PURPOSE = frozenset({"closed", "closed by the peer", "server closed",
                               "interconnect failed"})


def _untie(index: dict[Any, set[str]], connection: Any, token: str) -> None:
    """Take ``token`` out of ``index``'s set for ``connection`` (the set goes when empty)."""
    if connection is None:
        return
    tokens = index.get(connection)
    if tokens is not None:
        tokens.discard(token)
        if not tokens:
            del index[connection]

"""``ask`` through NATS: who is expected to answer, and waiting for exactly them.

NATS delivers a request to every subscriber of its subject but does not say how many
there are. So that an ``ask`` can return as soon as the replies it can expect have come
(no fixed wait for latecomers), the bridges keep a view of each other, the **peers**:

- Every bridge subscribes to ``<prefix>.~~.presence`` and to its own
  ``<prefix>.~~.node.<node id>`` (``~~`` is a token no escaped namespace produces). On
  each (re)connection it publishes ``hello`` with the patterns it answers requests for
  (those of its plain subscriptions); every other bridge answers with ``here`` and its
  own patterns on the newcomer's node subject. A bridge whose patterns change publishes
  ``here`` again; one that closes publishes ``bye``.
- An asker expects a reply from each peer whose patterns match the identifier. Each
  responding process acknowledges at once (from the I/O thread), then sends the list of
  its receivers' replies. The ask is done when every expected and every acknowledging
  process has replied.
- A peer expected but silent once the others have answered is **probed**: a request on
  its node subject. A live peer answers the probe after the acknowledgement it would
  have sent (one connection keeps its order), so an answer without an acknowledgement
  means the peer does not listen any more; NATS's "no responders" means it is gone
  (killed without a ``bye``), and it leaves the view. "No responders" to the request
  itself takes every peer expected out of the view.
- A peer in the view that acknowledged and has not replied is probed every
  :data:`CHECK_EVERY` seconds: one killed while its receivers ran (:data:`GONE_AFTER`
  "no responders" in a row) gives a ``ConnectionClosed`` entry, not a ``TimeoutError``.
- Only when a process the view did not know acknowledges (it joined a moment ago) does
  the asker wait ``ask_gather`` seconds for more such processes, as a bridge without a
  view would have to.

The view itself, what it takes from the presence subject and its bounds, is
:class:`berrymq_nats.presence.View`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from berrymq.aio import describe_receiver
from berrymq.ask import ask_local_by
from berrymq.errors import ConnectionClosed, QueueFull, ReplyError
from berrymq.identifier import Identifier
from berrymq.message import Message, new_message
from berrymq.wire import decode_replies, dumps, encode_message, encode_replies, encode_reply, loads
from berrymq_nats.client import check_payload, payload_limit
from berrymq_nats.inbound import progress
from berrymq_nats.losses import REFUSED_HERE
from berrymq_nats.presence import Ignored, View, node_id

if TYPE_CHECKING:
    from berrymq_nats.bridge import NatsBridge

__all__ = ["AskWaiter", "Asking"]

#: How many request ids a responder remembers to answer each request once.
_SEEN_REQUESTS = 10_000
#: The part of the asker's timeout a responder leaves for the trip back (at most
#: :data:`_MAX_ROOM` seconds): it answers by then with the replies it has.
_ROOM = 0.2
_MAX_ROOM = 1.0
#: Seconds between probes of a process that acknowledged an ask and has not replied.
CHECK_EVERY = 1.0
#: "No responders" in a row that take a process that acknowledged for gone (2 s away).
GONE_AFTER = 3


def answer_within(timeout: float) -> float:
    """The seconds a responder takes to answer an asker that waits ``timeout``."""
    return timeout - min(timeout * _ROOM, _MAX_ROOM)

class AskWaiter:
    """Collects the answers to one ``ask`` (filled by the I/O thread, read by the asker)."""

    def __init__(self, expected: set[str], gather: float, known: Container[str] = ()) -> None:
        self.cond = threading.Condition()
        self.expected = expected
        self.gather = gather
        self.acked: dict[str, None] = {}
        self.replies: dict[str, list[Any]] = {}
        self.gone: set[str] = set()
        self.first_unknown: float | None = None
        self.no_responders = False
        self.probed = False
        self.next_check = time.monotonic() + CHECK_EVERY  # of processes that acknowledged
        self.known = known  # the peers in the view: only those are probed while they work
        self.missed: dict[str, int] = {}  # probes in a row NATS found nobody for

    def _heard(self, node: str) -> None:
        self.acked.setdefault(node, None)
        if node not in self.expected and self.first_unknown is None:
            self.first_unknown = time.monotonic()
        self.cond.notify_all()

    def ack(self, node: str) -> None:
        with self.cond:
            self._heard(node)

    def reply(self, node: str, replies: list[Any]) -> None:
        with self.cond:
            self.replies[node] = replies
            self._heard(node)

    def not_listening(self, node: str) -> None:
        """A probed peer answered: one that did not acknowledge does not listen; one that
        did is working on its replies."""
        with self.cond:
            if node not in self.acked:
                self.gone.add(node)
                self.cond.notify_all()
            else:
                self.missed.pop(node, None)

    def left(self, node: str) -> bool:
        """NATS found nobody for a probe of ``node``: whether it is now taken for gone (at
        once if it did not acknowledge; else at :data:`GONE_AFTER` such probes in a row)."""
        with self.cond:
            if node in self.acked:
                self.missed[node] = self.missed.get(node, 0) + 1
                if self.missed[node] < GONE_AFTER:
                    return False
            self.gone.add(node)
            self.cond.notify_all()
            return True

    def none(self) -> None:
        """NATS said "no responders" to the request: no process listens, the peers
        expected included (they are gone)."""
        with self.cond:
            self.no_responders = True
            self.gone |= self.expected - self.acked.keys()
            self.cond.notify_all()

    def _missing(self) -> set[str]:
        return self.expected - self.replies.keys() - self.gone

    def _next_step(self, now: float) -> float | bool | set[str]:
        """True when done; a time to wake at (False: the deadline); or the peers to
        probe now."""
        if not self.acked:
            return self.no_responders
        working = {node for node in self.acked if node not in self.replies} - self.gone
        if working:  # waited for; those of the view probed
            return self._probe_working({node for node in working if node in self.known}, now)
        missing = self._missing()
        if missing and not self.probed:  # expected and silent: probed once
            self.probed = True
            return missing
        if missing:
            return False
        if self.first_unknown is not None and now < self.first_unknown + self.gather:
            return self.first_unknown + self.gather
        return True

    def _probe_working(self, working: set[str], now: float) -> float | bool | set[str]:
        """Those of ``working`` to probe now, or when: every :data:`CHECK_EVERY` s."""
        if not working:
            return False
        if now < self.next_check:
            return self.next_check
        self.next_check = now + CHECK_EVERY
        return working

    def wait(self, deadline: float, timeout: float, probe: Any) -> list[Any]:
        """The answers by ``deadline`` (a ``time.monotonic()`` time) at the latest: the
        replies that came and a ``TimeoutError`` entry for each process silent then
        (``timeout``, the asker's, is what the entries say)."""
        with self.cond:
            while True:
                now = time.monotonic()
                state = self._next_step(now)
                if state is True or now >= deadline:
                    break
                if isinstance(state, set):
                    self.cond.release()
                    try:
                        probe(state)
                    finally:
                        self.cond.acquire()
                    continue
                wake = deadline if state is False else min(deadline, float(state))
                self.cond.wait(wake - now)
            return self._result(timeout)

    def _result(self, timeout: float) -> list[Any]:
        silent = [n for n in self._missing() if n not in self.acked]
        if not self.acked and silent:
            raise TimeoutError(f"no process answered through NATS within {timeout:g}s")
        result: list[Any] = []
        for node in [*self.acked, *silent]:
            got = self.replies.get(node)
            if got is None and node in self.gone:  # acknowledged, then killed
                result.append(ReplyError("ConnectionClosed", "the process left NATS before "
                                         "it replied", "nats", node))
            elif got is None:
                result.append(ReplyError("TimeoutError", f"no reply within {timeout:g}s",
                                         "nats", node))
            else:
                result.extend(got)
        return result


class Asking:
    """One bridge's side of ``ask``: the asker, the responder and the view of peers."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self.node = bridge.bus.node_id
        control = f"{bridge.subjects.prefix}.~~"
        self.presence_subject = f"{control}.presence"
        self.node_prefix = f"{control}.node."
        self.view = View(f"NATS bridge of bus {bridge.bus.name}")
        self.patterns: tuple[str, ...] = ()
        self._asks: dict[str, AskWaiter] = {}
        self._ids = itertools.count()
        self._seen: dict[str, None] = {}

    # -- the view of peers (I/O thread) ---------------------------------------------------

    @property
    def peers(self) -> dict[str, tuple[Identifier, ...]]:
        """The peers known, by node id, with the patterns they answer for."""
        return self.view.peers

    def announce(self, kind: str, patterns: tuple[str, ...] | None = None, to: str = "") -> None:
        """Publish this bridge's patterns (``hello``, ``here`` or ``bye``)."""
        if patterns is not None:
            self.patterns = patterns
        payload = dumps({"k": kind, "n": self.node, "p": list(self.patterns)}).encode()
        self.bridge.outbox.put_control((to or self.presence_subject, payload, ""))

    def on_control(self, msg: Msg) -> None:
        """A message on the presence subject or this bridge's node subject: one that is
        not as a bridge sends them is ignored (counted in :attr:`View.ignored
        <berrymq_nats.presence.View.ignored>`), its node id never used in a subject."""
        if msg.reply:  # a probe: say that this process is here
            self.bridge.outbox.put_control(
                (msg.reply, dumps({"k": "alive", "n": self.node}).encode(), ""))
            return
        try:
            data = loads(msg.data)
            kind, node = data["k"], node_id(data["n"])
            if node == self.node:
                return
            if kind == "bye":
                self.view.remove(node)
            elif kind in ("hello", "here"):
                self.view.update(node, data["p"])
                if kind == "hello":
                    self.announce("here", to=self.node_prefix + node)
            else:
                raise Ignored(f"unknown kind {str(kind)[:40]!r}")
        except Exception as exc:  # noqa: BLE001 - a foreign or broken control message
            self.view.ignore(msg.subject, exc)

    def expected(self, ident: Identifier) -> set[str]:
        """The peers that answer ``ident``."""
        return self.view.expected(ident)

    # -- the asker ------------------------------------------------------------------------

    def request(self, message: Message, timeout: float) -> list[Any]:
        """Publish ``message`` as a NATS request and gather every process's replies; returns
        within ``timeout`` (the link keeps the deadline: see :class:`AskWaiter`)."""
        deadline, bridge = time.monotonic() + timeout, self.bridge
        if not bridge.wait_up(timeout):  # (connecting: waited for; a forked process: never)
            why = bridge.outbox.forked_error or bridge.down_reason
            raise ConnectionClosed(f"NATS at {bridge.address} is not connected ({why})")
        token = str(next(self._ids))
        ident = message[0]
        waiter = AskWaiter(self.expected(ident), bridge.options.ask_gather, self.view.peers)
        self._asks[token] = waiter
        inbox = f"{bridge.answers}.{token}"

        def probe(nodes: set[str]) -> None:
            for node in nodes:
                bridge.outbox.put_control((self.node_prefix + node, b'{"k":"probe","n":""}',
                                           f"{inbox}.{node}"))

        progress.ask_started()
        try:
            payload = encode_message(message, None, taken=bridge.shared.taken(ident),
                                     timeout=timeout).encode()
            check_payload(bridge.client, ident, payload)
            bridge.outbox.put((bridge.subjects.subject(ident), payload, inbox), ident,
                              deadline - time.monotonic())  # room: no longer than the ask
            return waiter.wait(deadline, timeout, probe)
        finally:
            progress.ask_ended()
            self._asks.pop(token, None)

    def on_answer(self, msg: Msg) -> None:
        """I/O thread: an acknowledgement, replies, a probe's answer, or "no responders"."""
        token, _, probed = msg.subject[len(self.bridge.answers) + 1:].partition(".")
        waiter = self._asks.get(token)
        if waiter is None:
            return
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            if probed:
                if waiter.left(probed):
                    self.view.remove(probed)
            else:  # nobody listens: the peers expected are gone (killed without a bye)
                for node in waiter.expected:
                    self.view.remove(node)
                waiter.none()
            return
        try:
            data = loads(msg.data)  # (a node id goes into the subject of a probe)
            kind, node = data["k"], node_id(data["n"])
            if kind == "a":
                waiter.ack(node)
            elif kind == "alive":
                waiter.not_listening(node)
            else:
                waiter.reply(node, decode_replies(data["r"], node))
        except Exception as exc:  # noqa: BLE001 - a foreign or broken answer
            self.bridge.undecodable(msg.subject, exc)

    # -- the responder --------------------------------------------------------------------

    def acknowledge(self, reply: str) -> None:
        """I/O thread: a request came in; say at once that this process answers it."""
        self.bridge.outbox.put_control((reply, dumps({"k": "a", "n": self.node}).encode(), ""))

    def refuse(self, reply: str, problem: str) -> None:
        """I/O thread: answer a request that was not taken with one ``QueueFull`` entry
        saying ``problem`` (after its acknowledgement: the asker is done with this process)."""
        error = ReplyError("QueueFull", problem, "nats", self.node)
        payload = dumps({"k": "r", "n": self.node, "r": [encode_reply(error, self.node)]}).encode()
        self.bridge.outbox.put_control((reply, payload, ""))

    def answer(self, message: Message, timeout: float, reply: str) -> None:
        """The answering thread: run the receivers and publish their replies (once per
        request: a process may get a request through two of its subscriptions) before the
        asker's ``timeout`` is over, leaving room for the trip back (:func:`answer_within`):
        then the replies so far, and a ``TimeoutError`` entry naming the receiver still
        running, as a local ask has (the asker would get none of them after its deadline)."""
        deadline = time.monotonic() + answer_within(timeout)
        uid = message[4]
        seen = self._seen
        if uid is not None:
            if uid in seen:
                return  # the same request through another subscription: answered there
            seen[uid] = None
            if len(seen) > _SEEN_REQUESTS:
                del seen[next(iter(seen))]
            if not self.bridge.bus.first_request(uid):
                # asked over another link too (an interconnect beside NATS), which ran the
                # receivers: no replies here, said at once (the asker waits for this process)
                payload = dumps({"k": "r", "n": self.node, "r": []}).encode()
                self.bridge.outbox.put_control((reply, payload, ""))
                return
        asked = new_message((message[0], message[1], message[2], message[3] + 1, uid))
        receivers: list[object] = []  # of each reply: one that is not JSON names its own

        def refused(exc: QueueFull) -> None:  # the asker has an entry; counted as for a message
            self.bridge.losses.add(REFUSED_HERE, 1, f"{asked[0]}: {exc}")

        try:
            replies = ask_local_by(self.bridge.bus, asked, deadline, timeout,
                                   receivers=receivers, refused=refused, from_peer=True)
        except Exception as exc:  # noqa: BLE001 - reported to the asker
            replies = [ReplyError(type(exc).__name__, str(exc), "bus", self.node)]
            receivers = []
        entries = encode_replies(replies, self.node, list(receivers))
        payload = dumps({"k": "r", "n": self.node, "r": entries}).encode()
        limit = payload_limit(self.bridge.client)
        if len(payload) > limit:  # nats-py would refuse it: the asker would wait in vain
            payload = self._within(entries, receivers, len(payload), limit)
        self.bridge.outbox.put_control((reply, payload, ""))

    def _within(self, entries: list[dict[str, Any]], receivers: list[object], size: int,
                limit: int) -> bytes:
        """The replies ``entries`` (``size`` bytes as JSON, over the server's ``limit``)
        made to fit: the largest values, one by one, become ``MessageTooLarge`` entries
        naming their receivers, so that the asker hears at once what happened to them and
        still gets the replies that fit."""
        sizes = sorted(((len(dumps(entry)), i) for i, entry in enumerate(entries)
                        if "value" in entry), reverse=True)
        for entry_size, i in sizes:
            who = describe_receiver(receivers[i]) if i < len(receivers) else "nats"
            error = ReplyError(
                "MessageTooLarge", f"the reply is {entry_size} bytes as JSON; the replies of "
                f"this process were {size} bytes, over the NATS server's max_payload of "
                f"{limit} bytes: it was not sent", who, self.node)
            entries[i] = encode_reply(error, self.node)
            size += len(dumps(entries[i])) - entry_size
            if size <= limit:
                break
        if size > limit:  # the error entries alone are too large (long messages): one says so
            error = ReplyError("MessageTooLarge", f"the replies of this process were over the "
                               f"NATS server's max_payload of {limit} bytes: none was sent",
                               "nats", self.node)
            entries = [encode_reply(error, self.node)]
        return dumps({"k": "r", "n": self.node, "r": entries}).encode()

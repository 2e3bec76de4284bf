"""Style 03 on the server: the queue a ``connect_via_queue`` session keeps, and the methods
that take from it, ``get`` and ``get_nowait``; a blocking ``get`` is awaited on the I/O
loop, without a thread (:meth:`QueueMethods.get_waiting`), and keeps its session alive
while it waits."""

from __future__ import annotations

import math
import queue
import time
from typing import TYPE_CHECKING, Any

from berrymq.wire import dumps
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import JsonRpcError, app_error, error_object, invalid_params
from berrymq_jsonrpc.params import (
    allowed,
    caller_max_size,
    identifier,
    number,
    presents,
    session_ttl,
)
from berrymq_jsonrpc.replies import ReplyBound, Slot, current_slot, no_room
from berrymq_jsonrpc.session_table import SessionTable
from berrymq_jsonrpc.sessions import NoRoom, SessionQueue
from berrymq_jsonrpc.taken import took

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq_jsonrpc.input_end import InputEnd

__all__ = ["QueueMethods"]

#: The params a blocking ``get`` answered on the loop may have.
_GET = frozenset({"token", "block", "timeout", p.PARAM_SECRET})


class QueueMethods(SessionTable):
    """The sessions of a service, with the methods of style 03 on their queues.

    :param secret: when set, every request must carry it as ``secret``.
    :param queue_size: the bound of each session's queue, in messages.
    :param max_get_wait: the cap, in seconds, of a blocking ``get``.
    :param max_queued_bytes: the cap on the bytes held in all the node's session queues.
    :param max_size: the largest request, in bytes: also the largest message a queue holds
        (its ``get`` answers stay within what a client reads) and a quarter of the largest
        answer (:mod:`berrymq_jsonrpc.replies`).
    """

    def __init__(self, bus: Bus, *, name: str, max_sessions: int, liveness_interval: float,
                 secret: str | None, queue_size: int, max_get_wait: float,
                 max_queued_bytes: int, max_size: int = p.DEFAULT_MAX_SIZE) -> None:
        super().__init__(bus, name=name, max_sessions=max_sessions,
                         liveness_interval=liveness_interval)
        self._secret = secret.encode() if secret else None
        self.queue_size = queue_size
        self.max_get_wait = max_get_wait
        #: the cap on the bytes held in all the node's session queues
        self.max_queued_bytes = max_queued_bytes
        #: the largest request in bytes (setting ``max_size``)
        self.max_size = max_size
        #: the bound on the size of an answer (4 x max_size, see berrymq_jsonrpc.replies)
        self.bound = ReplyBound(max_size)

    def _connect_via_queue(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_CONNECT_VIA_QUEUE, params,
                frozenset({"identifier", "ttl", "max_size"}))
        pattern = identifier(params.get("identifier"), "'identifier'")
        ttl = session_ttl(params, self.max_ttl)
        limit = caller_max_size(params) or self.max_size  # the client's, when smaller
        session = self.open_session("queue", ttl, context)
        session.queue = SessionQueue(self.bus, pattern, self.queue_size, self.max_queued_bytes,
                                     min(limit, self.max_size), limit < self.max_size)
        session.queue.taker = f"{session} ({pattern})"  # two clients of one pattern apart
        return session.token

    def _queue_of(self, params: dict[str, Any]) -> SessionQueue:
        session = self.session(params.get("token"))
        if session.queue is None:
            raise app_error(p.NO_QUEUE)
        return session.queue

    def _get(self, context: Any, params: dict[str, Any]) -> list[Any]:
        allowed(p.METHOD_GET, params, frozenset({"token", "block", "timeout"}))
        session = self.session(params.get("token"))
        store = session.queue
        if store is None:
            raise app_error(p.NO_QUEUE)
        block = params.get("block", True)
        if type(block) is not bool:
            raise invalid_params("'block' must be true or false")
        timeout = number(params, "timeout", None, allow_none=True)
        wait = 0.0 if not block else min(self.max_get_wait, self.max_get_wait if timeout is None
                                         else timeout)
        session.touch(wait)
        try:
            entry = _take(store, wait)
        except queue.Empty:
            raise app_error(p.EMPTY) from None
        finally:
            session.touch()
        self._taken_out(entry, store)
        return entry

    async def get_waiting(self, request: dict[str, Any], ended: InputEnd | None = None,
                          slot: Slot | None = None) -> bytes | None:
        """Answer a blocking ``get`` on the I/O loop, without a thread: it awaits its
        session's queue. None when the request is not a plain one (a notification,
        anything the checks of :meth:`_get` would refuse): the caller then answers it
        like any other (a refusal at once, on the loop; a notification on a thread).

        :param ended: done once the client has ended its side of the connection (or lost
            it): the wait then stops with *Queue is empty* and nothing taken, so that a
            message coming later stays queued for the client's next ``get`` instead of
            being written to a client that may be gone. (A message queued when the
            request is read is its answer all the same: the client asked for it.)
        :param slot: the request's part of a batch's answer: a message is taken only if
            its answer fits there (else *Limit reached*, the message stays queued)."""
        params = p.named_params(p.METHOD_GET, request.get("params", {}))
        request_id = request.get("id")
        if params is None or "id" not in request or not params.keys() <= _GET:
            return None
        secret = self._secret
        given = params.get(p.PARAM_SECRET)
        if secret is not None and not presents(given, secret):
            return None
        token = params.get("token")
        session = self.sessions.get(token) if type(token) is str else None
        timeout = params.get("timeout")
        if (session is None or session.queue is None or params.get("block", True) is not True
                or (timeout is not None and (type(timeout) not in (int, float)
                                             or not 0 <= timeout < math.inf))):
            return None
        store = session.queue
        wait = self.max_get_wait if timeout is None else min(self.max_get_wait, timeout)
        session.touch(wait)
        try:
            return await self._wait_for_entry(store, wait, request_id, ended, slot)
        finally:
            session.touch()

    async def _wait_for_entry(self, store: SessionQueue, wait: float, request_id: Any,
                              ended: InputEnd | None, slot: Slot | None) -> bytes:
        """The answer to a blocking ``get``: the first entry of ``store`` within ``wait``
        seconds, else Empty (at once, with nothing taken, once ``ended`` is done)."""
        deadline = time.monotonic() + wait
        line = store.line
        place = line.join()  # the entries go to the gets in the order they came
        try:
            while True:
                if line.is_first(place):
                    answer = self._entry_answer(store, request_id, slot)
                    if answer is not None:
                        return answer
                left = deadline - time.monotonic()
                if left > 0:
                    await line.wait(place, left, ended)
                if left <= 0 or (ended is not None and ended.done()):
                    # nothing taken: what came stays for the next get
                    return dumps(error_object(p.EMPTY, p.APPLICATION_ERRORS[p.EMPTY],
                                              request_id)).encode()
        finally:
            line.leave(place, store.has_entries)

    def _entry_answer(self, store: SessionQueue, request_id: Any,
                      slot: Slot | None) -> bytes | None:
        """The answer of a blocking ``get`` whose turn it is: the first entry, a refusal,
        or None when the queue is empty."""
        try:
            entry = store.get(0, None if slot is None else slot.fits)
        except NoRoom:
            assert slot is not None
            refusal = no_room(slot)
            return dumps(error_object(refusal.code, refusal.message, request_id,
                                      refusal.data)).encode()
        except queue.Empty:
            return None
        except JsonRpcError:  # the session closed meanwhile
            return dumps(error_object(p.UNKNOWN_TOKEN, p.APPLICATION_ERRORS[
                p.UNKNOWN_TOKEN], request_id)).encode()
        self._taken_out(entry, store)
        return dumps({"jsonrpc": "2.0", "result": entry, "id": request_id}).encode()

    def _taken_out(self, entry: list[Any], store: SessionQueue) -> None:
        """An entry was taken from ``store`` for an answer: counted as sent, and for the
        answer's writer (see :mod:`berrymq_jsonrpc.taken`)."""
        self.stats.message_out(entry[0], store.taker)  # stats
        took()

    def _get_nowait(self, context: Any, params: dict[str, Any]) -> list[Any]:
        allowed(p.METHOD_GET_NOWAIT, params, frozenset({"token"}))
        store = self._queue_of(params)
        try:
            entry = _take(store, 0)
        except queue.Empty:
            raise app_error(p.EMPTY) from None
        self._taken_out(entry, store)
        return entry


def _take(store: SessionQueue, wait: float) -> list[Any]:
    """The next entry of ``store`` for ``get`` or ``get_nowait``: among a batch's members,
    taken only if its answer fits in the batch's (else *Limit reached*, and it stays)."""
    slot = current_slot()
    if slot is None or wait != 0:
        return store.get(wait)
    try:
        return store.get(0, slot.fits)
    except NoRoom:
        raise no_room(slot) from None

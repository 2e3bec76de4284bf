"""The bound on what a node answers: one request's answer, or one batch's, is at most
:data:`~berrymq_jsonrpc.protocol.REPLY_SIZE_FACTOR` times ``max_size`` bytes (the *reply
limit*, what berryMQ's clients read), however small the request (docs/protocol.md,
"Batches" and "Limits").

Why: the answer to a request can be far larger than the request. A 1 MiB batch of 20,000
``network`` calls asked for a 26 MB answer, built in 9 s of CPU and held until the client
read it (it need not); 20 such connections took a node from 38 MB to 509 MB. The request
limit cannot see this: the growth is in the answer.

- **One request** (:func:`bounded`): an answer over the limit that took no effect (that
  of ``network``, an error) is replaced by *Limit reached* naming it; the answer to an
  ``ask`` too (its receivers ran and the message was delivered, as the error says; only
  their replies are not sent). Every other answer is under the limit by construction: a
  message in a queue is at most ``max_size`` bytes, and the rest are small.
- **A batch** (:class:`BatchBudget`): its members' answers are counted as they run. Room
  is kept from the start for an error for each member with an ``id``; once the answers
  would take more than the rest of the limit, the members not yet run are not run (they
  had no effect: nothing is lost) and each is answered *Limit reached*. An answer that
  would not fit is kept all the same when its member took effect (a ``get`` that took a
  message keeps it in its answer; a ``get`` only takes a message whose answer fits, see
  :meth:`Slot.fits`); the answer is then over the limit by that one answer. A batch whose
  errors alone would pass the limit is not run at all: it is answered with one error.
  Notifications run whatever the count (they are answered nothing, so never refused).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from berrymq.wire import byte_size, dumps
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import JsonRpcError, app_error, error_object, invalid_request, validate_request

__all__ = ["BatchBudget", "ReplyBound", "Slot", "bounded", "code_of", "current_slot",
           "no_room", "reply_limit"]

#: While a batch member runs: its :class:`Slot` (None otherwise), which a ``get`` asks
#: before it takes a message.
_SLOT: contextvars.ContextVar[Slot | None] = contextvars.ContextVar("berrymq_reply_slot",
                                                                    default=None)

#: The errors a member answers without having taken effect: its answer may give way.
_HARMLESS_ERRORS = frozenset({p.PARSE_ERROR, p.INVALID_REQUEST, p.METHOD_NOT_FOUND,
                              p.INVALID_PARAMS, p.UNKNOWN_TOKEN, p.EMPTY, p.TOO_LARGE,
                              p.UNAUTHORISED, p.NO_QUEUE, p.NOT_AVAILABLE, p.BAD_TOKEN,
                              p.LIMIT_REACHED, p.NOT_ALLOWED})
#: What a ``{"jsonrpc":"2.0","result":...,"id":...}`` adds to its result and its id.
_RESULT_FRAME = len('{"jsonrpc":"2.0","result":,"id":}')


def reply_limit(max_size: int) -> int:
    """The most bytes one answer takes (a TCP line without its end, an HTTP body)."""
    return p.REPLY_SIZE_FACTOR * max_size


def _data(max_size: int, detail: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"setting": "max_size", "limit": max_size}
    if detail is not None:
        data["detail"] = detail
    return data


def _limit_error(request_id: Any, max_size: int, detail: str | None = None) -> str:
    return dumps(error_object(p.LIMIT_REACHED, p.APPLICATION_ERRORS[p.LIMIT_REACHED],
                              request_id, _data(max_size, detail)))


def _ran_detail(limit: int) -> str:
    return (f"its receivers ran (the message was delivered), but their replies came to more "
            f"than {limit} bytes, {p.REPLY_SIZE_FACTOR} times max_size, the most this node "
            "answers; they are not sent")


def _gives_way(method: Any, code: int | None) -> bool:
    """Whether an answer may be replaced by an error: the member took no effect (it
    failed, or it was ``network``), or it was an ``ask`` (replaced by an error that says
    its receivers ran)."""
    if code is None:
        return method in (p.METHOD_NETWORK, p.METHOD_ASK)
    return code in _HARMLESS_ERRORS


def _replacement(method: Any, code: int | None, request_id: Any, max_size: int,
                 detail: str) -> str:
    if code is None and method == p.METHOD_ASK:
        return _limit_error(request_id, max_size, _ran_detail(reply_limit(max_size)))
    return _limit_error(request_id, max_size, detail)


def current_slot() -> Slot | None:
    """The :class:`Slot` of the batch member running in this thread or task, if any."""
    return _SLOT.get()


def no_room(slot: Slot) -> JsonRpcError:
    """The error a ``get`` among a batch's members answers when the answer with its next
    message would not fit in the batch's (the message stays queued)."""
    return app_error(p.LIMIT_REACHED, _data(slot.budget.max_size))


_ERROR_PREFIX = '{"jsonrpc":"2.0","error":{"code":'


def code_of(text: str) -> int | None:
    """The error code of an answer this node wrote (None for a result); ``0`` when the
    text is not of the shape it writes (then nothing is assumed about it)."""
    if not text.startswith(_ERROR_PREFIX):
        return None if text.startswith('{"jsonrpc":"2.0","result":') else 0
    end = text.find(",", len(_ERROR_PREFIX))
    try:
        return int(text[len(_ERROR_PREFIX):end])
    except ValueError:
        return 0


class ReplyBound:
    """The bound on the answers of one node's dispatcher (its ``max_size``)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        #: the most bytes of one answer (:func:`reply_limit`)
        self.limit = reply_limit(max_size)

    def batch(self, members: Sequence[Any]) -> BatchBudget:
        """A budget for the answer to ``members``, a batch."""
        return BatchBudget(members, self.max_size)

    def one(self, request: Any, text: str, code: int | None) -> str:
        """The answer to one request, bounded (:func:`bounded`)."""
        if type(request) is not dict:
            return text
        return bounded(request, text, code, self.max_size)


def bounded(request: dict[str, Any], text: str, code: int | None, max_size: int) -> str:
    """The answer ``text`` to one request (not a batch; ``code``: its error code, None
    for a result), or *Limit reached* in its place when it is over the reply limit and may
    give way (see the module's docstring)."""
    limit = reply_limit(max_size)
    method = request.get("method")
    if byte_size(text) <= limit or not _gives_way(method, code):
        return text
    detail = (f"the answer would be {byte_size(text)} bytes, over {limit} bytes, "
              f"{p.REPLY_SIZE_FACTOR} times max_size, the most this node answers")
    if method == p.METHOD_NETWORK:
        detail += f"; {_NETWORK_WHOLE}"
    return _replacement(method, code, request.get("id"), max_size, detail)


#: Where a picture of the network too big for a JSON-RPC answer is served whole.
_NETWORK_WHOLE = ("GET /network on the node's HTTP port or --monitor address gives the "
                  "picture whole")


class Slot:
    """One member's part of a :class:`BatchBudget`: what a ``get`` among the members asks
    before it takes a message (:meth:`fits`)."""

    def __init__(self, budget: BatchBudget, index: int) -> None:
        self.budget = budget
        self.index = index

    def fits(self, size: int) -> bool:
        """Whether an answer whose result is ``size`` bytes of JSON fits in the batch's
        answer; if so its room is taken, so that the ``get`` may take its message (called
        with the queue's lock held: nothing else takes that message meanwhile)."""
        budget = self.budget
        frame = _RESULT_FRAME + byte_size(dumps(budget.ids[self.index]))
        return budget.claim(self.index, size + frame)


class BatchBudget:
    """The bytes one batch's answer takes, counted as its members run (from threads and
    tasks at once: members that may wait run beside the others), against the reply limit.

    :param members: the batch, parsed.
    :param max_size: the ``max_size`` setting (the limit is :func:`reply_limit` of it).
    """

    def __init__(self, members: Sequence[Any], max_size: int) -> None:
        self.max_size = max_size
        self.limit = reply_limit(max_size)
        self._lock = threading.Lock()
        # the errors' sizes but for their ids (``null`` in these), made once per batch
        self._not_run = len(_limit_error(None, max_size)) - 4
        self._ran = len(_limit_error(None, max_size, _ran_detail(self.limit))) - 4
        #: each member's id (None for one without), and the room kept for its error
        self.ids: list[Any] = []
        self._kept: list[int] = []
        #: the members that always run: notifications (answered nothing), and members
        #: that are no valid request (answered Invalid Request, which is their error)
        self._always: set[int] = set()
        self._claimed: set[int] = set()
        for index, member in enumerate(members):
            self.ids.append(member.get("id") if type(member) is dict else None)
            kept, always = self._error_size(member)
            self._kept.append(kept)
            if always:
                self._always.add(index)
        # the answer's brackets and commas, and an error for each member that may get one
        self._reserved = sum(self._kept) + len(members) + 1
        self.used = 0
        #: set once a member's answer did not fit: the members not yet run are not run
        self.spent = False

    def _error_size(self, member: Any) -> tuple[int, bool]:
        """The room kept for the error ``member`` may be answered with instead, and
        whether it always runs (see :attr:`_always`)."""
        try:
            validate_request(member)
        except ValueError as problem:
            return byte_size(invalid_request(str(problem))), True  # its answer, whatever happens
        if "id" not in member:
            return 0, True  # a notification: answered nothing
        frame = self._ran if member.get("method") == p.METHOD_ASK else self._not_run
        return frame + byte_size(dumps(member["id"])), False

    @property
    def over(self) -> bool:
        """Whether the errors alone would take the answer over the limit."""
        return self._reserved > self.limit

    def refusal(self) -> bytes:
        """The one answer to a batch that is :attr:`over`: nothing of it ran."""
        return _limit_error(None, self.max_size, (
            f"this batch of {len(self.ids)} members would be answered with more than "
            f"{self.limit} bytes ({p.REPLY_SIZE_FACTOR} times max_size, the most this node "
            "answers) even as errors; none was run: send fewer members at a time")).encode()

    def may_run(self, index: int) -> bool:
        """Whether member ``index`` may run: a notification or a member that is no valid
        request always may, any other until one answer did not fit. If not, its error
        (:meth:`not_run`) is counted now."""
        if index in self._always:
            return True
        with self._lock:
            if not self.spent:
                return True
            self._settle(index, self._kept[index])
            return False

    @contextlib.contextmanager
    def slot(self, index: int) -> Iterator[Slot]:
        """Member ``index``'s :class:`Slot`, the current one (:func:`current_slot`) while
        the block runs."""
        slot = Slot(self, index)
        reset = _SLOT.set(slot)
        try:
            yield slot
        finally:
            _SLOT.reset(reset)

    def not_run(self, index: int) -> str:
        """The answer to member ``index`` when it was not run (or its answer gave way)."""
        return _limit_error(self.ids[index], self.max_size)

    def claim(self, index: int, size: int) -> bool:
        """Take room for an answer of ``size`` bytes to member ``index`` if it fits; if
        not, the members not yet run will not run."""
        with self._lock:
            if self.spent or self.used + size + self._reserved - self._kept[index] > self.limit:
                self.spent = True
                return False
            self._settle(index, size)
            self._claimed.add(index)
            return True

    def _settle(self, index: int, size: int) -> None:
        self._reserved -= self._kept[index]
        self.used += size

    def answer(self, index: int, request: Any, text: str | None, code: int | None) -> str | None:
        """Member ``index`` ran and was answered ``text`` (None: a notification; ``code``
        its error code, None for a result): what the batch's answer holds for it."""
        if text is None:
            return None
        with self._lock:
            if index in self._claimed:
                return text  # its room was taken before it took its message
            size = byte_size(text)
            if self.used + size + self._reserved - self._kept[index] <= self.limit:
                self._settle(index, size)
                return text
            self.spent = True
            method = request.get("method") if type(request) is dict else None
            if not _gives_way(method, code):
                self._settle(index, size)  # it took effect: its answer stays
                return text
            self._settle(index, self._kept[index])
        if code is None and method == p.METHOD_ASK:
            return _limit_error(self.ids[index], self.max_size, _ran_detail(self.limit))
        return self.not_run(index)

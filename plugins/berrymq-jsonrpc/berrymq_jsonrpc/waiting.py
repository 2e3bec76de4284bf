"""Which requests may wait, which never do, and a batch that mixes them.

A transport answers each request where it holds nothing up:

- a request that may wait (:func:`may_wait`: an ``ask``, whose receivers take their time,
  or a blocking ``get``) beside the others, through :meth:`WaitingMethods.answer_waiting
  <berrymq_jsonrpc.waiting_methods.WaitingMethods.answer_waiting>`: a ``get`` awaits its queue on the I/O
  loop, an ``ask`` runs on a :data:`~berrymq_jsonrpc.sessions.WAITS` thread and is answered
  by its timeout at the latest (:mod:`berrymq_jsonrpc.ask_timer`);
- a request that delivers nothing and never waits (:data:`QUICK_METHODS`, a ``get`` that
  does not block or is a notification, which is not run) on the loop;
- everything else in order on the delivery lane.

A batch with a member that may wait is answered member by member (:func:`answer_batch`),
so that its ``get`` waits without a thread and its ``ask`` keeps its timeout, as they
would sent alone.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from berrymq.transports.ioloop import io_loop
from berrymq.wire import dumps
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import error_answer, error_object, validate_request
from berrymq_jsonrpc.replies import code_of

if TYPE_CHECKING:
    from berrymq.bursts import BurstLog
    from berrymq_jsonrpc.input_end import InputEnd
    from berrymq_jsonrpc.replies import BatchBudget
    from berrymq_jsonrpc.service import Service

__all__ = ["QUICK_METHODS", "SLOW_METHODS", "answer_batch", "is_nonblocking_get", "may_wait",
           "refuse_waiting", "waits_in"]

#: Methods that may wait (a blocking ``get``, receivers answering ``ask``): answered beside
#: the other requests, never on the delivery lane, where they would hold up every
#: connection of the node.
SLOW_METHODS = frozenset({p.METHOD_GET, p.METHOD_ASK})

#: Methods that deliver nothing and never wait: answered on the I/O loop when nothing the
#: same connection handed over before is still to run (see
#: :meth:`~berrymq_jsonrpc.service.Service.answers_on_loop`), so that a slow receiver on
#: the delivery lane does not hold them up.
QUICK_METHODS = frozenset({p.METHOD_CONNECT_ONEWAY, p.METHOD_CONNECT_VIA_QUEUE,
                           p.METHOD_GET_NOWAIT, p.METHOD_NETWORK})


def may_wait(request: Any, *, in_batch: bool = False) -> bool:
    """Whether ``request`` (parsed) is a valid call that may wait (``ask``, a blocking
    ``get``), or a batch with one among its members (a batch nested in a batch never is:
    it is one Invalid Request and runs nothing). A JSON-RPC 1.0 call (the original's
    dialect) may too, waiting as a 2.0 call would and answered in its own form, except in
    a batch (a 2.0 feature: there it is an Invalid Request)."""
    if type(request) is list:  # a batch inside a batch is an Invalid Request, not run
        return not in_batch and any(may_wait(member, in_batch=True) for member in request)
    if type(request) is not dict:
        return False
    method = request.get("method")
    if type(method) is not str or method not in SLOW_METHODS:
        return False
    if p.is_v1(request):
        if in_batch:
            return False
    else:
        try:
            validate_request(request)
        except ValueError:
            return False
    return not is_nonblocking_get(method, request)


def waits_in(request: Any) -> int:
    """How many requests that may wait ``request`` (parsed) is: 1 or 0 for one request,
    the number of its members that may wait for a batch. Each counts against a
    connection's ``max_waiting``: a batch of 10,000 blocking gets is 10,000 waits."""
    if type(request) is list:
        return sum(may_wait(member, in_batch=True) for member in request)
    return int(may_wait(request))


def refuse_waiting(service: Service, request: Any, waits: int, running: int, log: BurstLog,
                   client: str) -> bytes | None:
    """The answer to ``request``, which may wait (or a batch with ``waits`` such members),
    refused because ``running`` such requests already run on ``client``'s connection and
    ``waits`` more would pass ``max_waiting``: *Limit reached* naming the setting, for each
    member of a batch that has an id (None when there is none: a notification gets
    nothing). Nothing of it runs. Logged on ``log``, once per burst."""
    limit = service.max_waiting
    if waits > limit:
        detail = (f"this batch holds {waits} requests that may wait (ask, a blocking get), "
                  f"over the cap of {limit} running at once on one connection (setting "
                  "max_waiting); none of it was run: send them in smaller batches")
    else:
        detail = (f"{running} requests that may wait (ask, a blocking get) are running "
                  f"on this connection, and {waits} more would pass the cap of {limit} "
                  "(setting max_waiting); this was not run: send it again when one has "
                  "been answered, or on another connection")
    members = request if type(request) is list else [request]
    log.warning("%s: a request (%.200s) was refused: %s", client,
                ", ".join(sorted({str(m.get("method")) for m in members if type(m) is dict})),
                detail)
    data = {"setting": "max_waiting", "limit": limit, "detail": detail}
    message = p.APPLICATION_ERRORS[p.LIMIT_REACHED]
    refusal = error_answer(request, p.LIMIT_REACHED, message, data)
    if refusal is not None and len(refusal) > service.bound.limit:
        # a batch so large that an error per member would pass the reply limit
        refusal = dumps(error_object(p.LIMIT_REACHED, message, None, data)).encode()
    return refusal


def is_nonblocking_get(method: str, request: dict[str, Any]) -> bool:
    """Whether ``request`` is a ``get`` with ``block`` false, by name or by position (it
    never waits, as ``get_nowait``), or a ``get`` notification (no ``id``), which is not
    run at all (:data:`~berrymq_jsonrpc.protocol.NOT_RUN_AS_NOTIFICATIONS`: it would take
    a message for nobody)."""
    if method != p.METHOD_GET:
        return False
    if "id" not in request:
        return True
    params = p.named_params(method, request.get("params", {}))
    return params is not None and params.get("block") is False


async def answer_batch(service: Service, batch: list[Any], context: Any,
                       ended: InputEnd | None) -> bytes | None:
    """On the I/O loop: the answer to a batch with members that may wait. Each of those
    is answered as if sent alone; the others together, in order, on the delivery lane.
    The responses come in the batch's order; None when all were notifications. All of
    them share the batch's bound (:class:`~berrymq_jsonrpc.replies.BatchBudget`)."""
    budget = service.bound.batch(batch)
    if budget.over:
        return budget.refusal()
    slow = [may_wait(member, in_batch=True) for member in batch]
    quick = [(index, member) for index, (member, waits) in enumerate(zip(batch, slow, strict=True))
             if not waits]
    answers = [_waited(service, budget, index, member, context, ended)
               for index, (member, waits) in enumerate(zip(batch, slow, strict=True)) if waits]
    in_order, waited = await asyncio.gather(_on_lane(service, budget, quick, context),
                                            asyncio.gather(*answers))
    replies, in_turn = iter(waited), iter(in_order)
    texts = [reply.encode() for waits in slow
             if (reply := next(replies) if waits else next(in_turn)) is not None]
    return b"[" + b",".join(texts) + b"]" if texts else None


async def _waited(service: Service, budget: BatchBudget, index: int, member: Any, context: Any,
                  ended: InputEnd | None) -> str | None:
    """The response to member ``index``, one that may wait, within the batch's budget."""
    if not budget.may_run(index):
        return budget.not_run(index)
    with budget.slot(index) as slot:
        reply = await service.answer_waiting(member, context, ended, slot)
    text = None if reply is None else reply.decode()
    return budget.answer(index, member, text, None if text is None else code_of(text))


async def _on_lane(service: Service, budget: BatchBudget, members: list[tuple[int, Any]],
                   context: Any) -> list[str | None]:
    """The responses to ``members``, made in order on the delivery lane (none: no turn)."""
    if not members:
        return []
    return await io_loop.lane.call(functools.partial(_each, service, budget, members, context))


def _each(service: Service, budget: BatchBudget, members: list[tuple[int, Any]],
          context: Any) -> list[str | None]:
    """On the delivery lane: the response to each member of a batch, in order."""
    member = service.dispatcher.member
    return [member(budget, index, request, context) for index, request in members]

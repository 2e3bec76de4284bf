"""The protocol's methods that take messages in: ``send_message``, ``send_messages`` and
``ask``, and a ``send_message`` answered before its delivery.

Each message is measured against the size limit (:mod:`berrymq_jsonrpc.sizes`) and given
to the bus; a refusal (a full queue, a message over ``max_size``) is counted in
``/status`` and logged once per burst of them, as a sender of notifications has no answer
to read it from. A base class of :class:`~berrymq_jsonrpc.service.Service`, as
:class:`~berrymq_jsonrpc.waiting_methods.WaitingMethods` is: apart from the service's
sessions and requests because these are the methods every message from a peer goes
through, with their own refusals.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq.errors import InvalidIdentifier, QueueFull
from berrymq.transports.support import drop_tracebacks
from berrymq.wire import encode_replies
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.ask_timer import ask_arrived, local_replies
from berrymq_jsonrpc.jsonrpc import JsonRpcError, app_error, invalid_params
from berrymq_jsonrpc.outbox import REFUSED
from berrymq_jsonrpc.params import allowed, decode_message, message_from_wire, number
from berrymq_jsonrpc.sessions import NOT_WRITABLE, Session, Unwritable, refusal_data
from berrymq_jsonrpc.sizes import measure, too_large_data
from berrymq_jsonrpc.waiting_methods import WaitingMethods

if TYPE_CHECKING:
    from berrymq.bursts import BurstLogs
    from berrymq.identifier import Identifier
    from berrymq.message import Message

__all__ = ["MEASURE", "MessageMethods"]

logger = logging.getLogger("berrymq.remote")

#: While :meth:`MessageMethods.answer_at_once` runs: where ``send_message`` puts the delivery of
#: the message it accepted, instead of running the receivers in the caller's thread.
_HANDED: contextvars.ContextVar[list[Callable[[], object]] | None] = contextvars.ContextVar(
    "berrymq_jsonrpc_handed", default=None)
#: Whether the messages of the request being answered are measured against the size
#: limit (:mod:`berrymq_jsonrpc.sizes`): False while :meth:`Service.handle_parsed` answers
#: a request its transport said is too small to hold one over it.
MEASURE: contextvars.ContextVar[bool] = contextvars.ContextVar("berrymq_jsonrpc_measure",
                                                               default=True)


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


#: The reason in ``/status`` ``lost`` of messages sent with a token of no open session.
NO_SESSION = "refused: unknown or expired token"


def _well_formed(decoders: list[Callable[[], object]]) -> int:
    """How many of ``decoders`` decode a message (the others raise Invalid params)."""
    count = 0
    for decode in decoders:
        try:
            decode()
        except JsonRpcError:
            continue
        count += 1
    return count


_SEND_MESSAGE = frozenset({"token", "identifier", "args", "kwargs", "uid", "hops", "reply_to"})
_ASK = frozenset({"identifier", "args", "kwargs", "timeout", "token", "uid", "hops"})


class MessageMethods(WaitingMethods):
    """The sessions, queue and waiting methods of a service, with the methods that take
    messages in."""

    if TYPE_CHECKING:  # the service's own
        message_limit: int
        refusals: BurstLogs

        def handle_parsed(self, request: Any, context: Any = None,
                          size: int | None = None) -> bytes | None: ...

    def message_methods(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        """The protocol's methods of this class by name, for the service's dispatcher."""
        return {
            p.METHOD_SEND_MESSAGE: self._send_message,
            p.METHOD_SEND_MESSAGES: self._send_messages,
            p.METHOD_ASK: self._ask,
        }

    def answers_at_once(self, request: Any) -> bool:
        """Whether ``request`` (parsed) is a ``send_message`` that :meth:`answer_at_once`
        may answer before its message is delivered: JSON-RPC 2.0, one call, and a message
        that nothing can refuse (see :meth:`berrymq.Bus.may_refuse`), so the answer says
        all the delivery could. A malformed one is answered at once with its error."""
        if type(request) is not dict or p.is_v1(request) \
                or request.get("method") != p.METHOD_SEND_MESSAGE:
            return False
        params = request.get("params")
        if type(params) is not dict or type(params.get("identifier")) is not str:
            return True
        try:
            return "reply_to" not in params and not self.bus.may_refuse(params["identifier"])
        except InvalidIdentifier:
            return True

    def answer_at_once(self, request: Any, context: Any, size: int | None = None
                       ) -> tuple[bytes | None, list[Callable[[], object]]]:
        """Answer a request that :meth:`answers_at_once` chose, in this thread (the I/O
        loop), without running receivers: the answer, and the delivery of the message it
        accepted, for the caller to give to the delivery lane once the answer is written
        (``size`` as for :meth:`handle_parsed`)."""
        handed: list[Callable[[], object]] = []
        reset = _HANDED.set(handed)
        try:
            return self.handle_parsed(request, context, size), handed
        finally:
            _HANDED.reset(reset)

    def _deliver(self, session: Session, message: Message,
                 reply_to: Identifier | None) -> QueueFull | None:
        """Give one message to the bus; the refusal when a full queue refused it."""
        try:  # a duplicate, or one over the hop limit, is counted by the core
            self.bus.receive(message, session.link, reply_to)
        except QueueFull as exc:
            self._refused(session, exc)
            drop_tracebacks(exc)
            return exc
        except ExceptionGroup as group:
            refused, others = group.split(QueueFull)
            if others is not None:
                logger.error("receivers failed on message %s from a remote node",
                             message[0], exc_info=others)
            drop_tracebacks(group, refused, others)
            if refused is not None:
                first = _first_leaf(refused)
                assert isinstance(first, QueueFull)
                self._refused(session, first)
                return first
        except Exception:
            logger.exception("delivering message %s from a remote node failed", message[0])
        return None

    def _refused(self, peer: object, refusal: QueueFull) -> None:
        """A message (or an ``ask``) from ``peer`` (a session, where a request came from)
        was refused (a full queue, or one that cannot hold it:
        :class:`~berrymq_jsonrpc.sessions.Unwritable`): counted and logged per burst, as a
        sender of notifications has no answer (a peer's full link's refusal,
        :attr:`~berrymq.QueueFull.not_forwarded`, is counted by the core)."""
        reason = NOT_WRITABLE if isinstance(refusal, Unwritable) else REFUSED
        if not refusal.not_forwarded:
            self.stats.lost(reason)  # stats
        self._say_refused(peer, refusal, "not forwarded" if refusal.not_forwarded else reason)

    def _say_refused(self, peer: object, why: object, kind: str) -> None:
        """Log a refused message of ``peer``'s, once per burst of refusals of ``kind``."""
        self.refusals.of(kind).warning("%s: a message from %s was refused: %s", self.name,
                                       peer or "a client", why)

    def _sending_session(self, params: dict[str, Any], context: Any,
                         messages: Callable[[], int]) -> Session:
        """The session that messages come in, or the refusal of its token: an unknown,
        expired or malformed one loses them (as many as ``messages()`` says are well
        formed: the others never became messages), counted in ``/status`` ``lost``
        (:data:`NO_SESSION`) and logged once per burst, since the sender of a
        notification hears nothing (a session expires after ``ttl`` seconds unused)."""
        try:
            return self.session(params.get("token"), context)
        except JsonRpcError as exc:
            if exc.code in (p.UNKNOWN_TOKEN, p.BAD_TOKEN) and (count := messages()):
                self.stats.lost(NO_SESSION, count)  # stats
                self._say_refused(getattr(context, "url", None),
                                  f"{p.APPLICATION_ERRORS[exc.code]} ({exc.code})", NO_SESSION)
            raise

    def _too_large(self, peer: object, size: int, where: str) -> Exception:
        """The refusal of a message over the size limit (*Message too large*, naming the
        setting), counted in ``/status`` ``refused`` (``max_size``) and logged once per
        burst: nothing of its request runs, and its sender is told."""
        self.count_refusal("max_size")  # stats
        data = too_large_data(size, self.max_size, where)
        self._say_refused(peer, data["detail"], "max_size")
        return app_error(p.TOO_LARGE, data)

    def _send_message(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_SEND_MESSAGE, params, _SEND_MESSAGE)
        decode = functools.partial(
            message_from_wire, params.get("identifier"), params.get("args", []),
            params.get("kwargs", {}), params, "the message's")
        session = self._sending_session(params, context, lambda: _well_formed([decode]))
        message, reply_to = decode()
        if MEASURE.get() and (size := measure(message, reply_to)) > self.message_limit:
            raise self._too_large(session, size, "")
        self.stats.message_in(message[0], session)  # stats
        handed = _HANDED.get()
        if handed is not None:  # see answer_at_once: nothing can refuse it
            handed.append(functools.partial(self._deliver, session, message, reply_to))
            return p.RESULT_OK
        refusal = self._deliver(session, message, reply_to)
        if refusal is not None:
            raise app_error(p.QUEUE_FULL, refusal_data([0], refusal))
        return p.RESULT_OK

    def _send_messages(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_SEND_MESSAGES, params, frozenset({"token", "messages"}))
        items = params.get("messages")
        session = self._sending_session(params, context, lambda: _well_formed(
            [functools.partial(decode_message, item, "") for item in items]
            if type(items) is list else []))
        if type(items) is not list:
            raise invalid_params("'messages' must be an array")
        built = [decode_message(item, f"messages[{index}]") for index, item in enumerate(items)]
        if MEASURE.get():  # one over the limit: none of them is taken
            for index, (message, reply_to) in enumerate(built):
                if (size := measure(message, reply_to)) > self.message_limit:
                    raise self._too_large(session, size, f"messages[{index}]: ")
        self.stats.messages_in([message[0] for message, _ in built], session)  # stats
        deliver = self._deliver
        refused: list[int] = []
        first: QueueFull | None = None
        for index, (message, reply_to) in enumerate(built):
            refusal = deliver(session, message, reply_to)
            if refusal is not None:
                refused.append(index)
                first = first or refusal
        if refused:
            raise app_error(p.QUEUE_FULL, refusal_data(refused, first))
        return p.RESULT_OK

    def _ask(self, context: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
        allowed(p.METHOD_ASK, params, _ASK)
        peer: object = getattr(context, "url", None)  # the asker, for the stats (TCP: where)
        if params.get("token") is not None:
            peer = self.session(params["token"])
        timeout = number(params, "timeout", None, allow_none=True)
        message, _ = message_from_wire(
            params.get("identifier"), params.get("args", []), params.get("kwargs", {}),
            {k: params[k] for k in ("uid", "hops") if k in params}, "the request's",
        )
        if MEASURE.get() and (size := measure(message)) > self.message_limit:
            raise self._too_large(peer, size, "")
        if not ask_arrived(self.bus, self.stats, message, peer):  # counted there
            return []  # answered already: the asker asked this node over another link too
        replies, receivers = local_replies(self.bus, message, timeout,  # full queues: counted
                                           functools.partial(self._refused, peer))
        return encode_replies(replies, self.bus.node_id, receivers)

"""The server side of the protocol, for any transport: the methods, on the sessions they open.

A :class:`Service` belongs to one transport of one bus. Each ``connect_*`` or
``interconnect`` request opens a :class:`~berrymq_jsonrpc.sessions.Session` named by a token; it keeps
what the connection needs (a bounded queue for style 03, an outgoing link for style 01).
The table of open sessions, and their closing and expiry, is
:class:`~berrymq_jsonrpc.session_table.SessionTable`, the methods of style 03 are
:class:`~berrymq_jsonrpc.queue_methods.QueueMethods`, and answering the requests that may
wait is :class:`~berrymq_jsonrpc.waiting_methods.WaitingMethods`; a service is all three. The transport
feeds request texts to :meth:`Service.handle` with a *context* (the TCP connection the
request came on, or None over HTTP) and writes back what it returns.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq import network
from berrymq._delivery import drop_tracebacks
from berrymq.bursts import BurstLog
from berrymq.errors import InvalidIdentifier, QueueFull
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.wire import ParseError, encode_replies, loads
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.ask_timer import ask_arrived, local_replies
from berrymq_jsonrpc.dialect import CALLBACK_TIMEOUT, answer_v1
from berrymq_jsonrpc.jsonrpc import Dispatcher, app_error, invalid_params
from berrymq_jsonrpc.limits import CallbackRule
from berrymq_jsonrpc.outbox import REFUSED
from berrymq_jsonrpc.params import (
    allowed,
    decode_message,
    host_port_pair,
    message_from_wire,
    number,
    presents,
    session_ttl,
    string,
)
from berrymq_jsonrpc.session_table import DEFAULT_LIVENESS_INTERVAL
from berrymq_jsonrpc.sessions import NOT_WRITABLE, Session, Unwritable, refusal_data
from berrymq_jsonrpc.sizes import measure, measured_from, message_limit, too_large_data
from berrymq_jsonrpc.waiting import QUICK_METHODS, is_nonblocking_get
from berrymq_jsonrpc.waiting_methods import WaitingMethods

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq_jsonrpc.client import Link

__all__ = ["DEFAULT_MAX_WAITING", "LinkFactory", "Service"]

logger = logging.getLogger("berrymq.remote")

#: How many requests that may wait (``ask``, a blocking ``get``) run at once per connection
#: (setting ``max_waiting``); one more is answered *Limit reached* at once.
DEFAULT_MAX_WAITING = 16

#: ``factory(addr, token, context)``: the outgoing link of an ``interconnect`` session,
#: which forwards to the caller (at ``addr``, or back over ``context``) with ``token``.
LinkFactory = Callable[[str | tuple[str, int] | None, str, Any], "Link"]

#: While :meth:`Service.answer_at_once` runs: where ``send_message`` puts the delivery of
#: the message it accepted, instead of running the receivers in the caller's thread.
_HANDED: contextvars.ContextVar[list[Callable[[], object]] | None] = contextvars.ContextVar(
    "berrymq_jsonrpc_handed", default=None)
#: Whether the messages of the request being answered are measured against the size
#: limit (:mod:`berrymq_jsonrpc.sizes`): False while :meth:`Service.handle_parsed` answers
#: a request its transport said is too small to hold one over it.
_MEASURE: contextvars.ContextVar[bool] = contextvars.ContextVar("berrymq_jsonrpc_measure",
                                                                default=True)


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


_SEND_MESSAGE = frozenset({"token", "identifier", "args", "kwargs", "uid", "hops", "reply_to"})
_ASK = frozenset({"identifier", "args", "kwargs", "timeout", "token", "uid", "hops"})


class Service(WaitingMethods):
    """The protocol's methods on one bus, and the sessions they open.

    :param bus: the bus that incoming messages are delivered to.
    :param secret: when set, every request must carry it as ``secret``.
    :param queue_size: the bound of each style-03 queue.
    :param max_get_wait: the cap, in seconds, of a blocking ``get``.
    :param link_factory: makes the outgoing link of an ``interconnect`` session.
    :param max_waiting: how many requests that may wait run at once per connection (a
        transport with connections that carry many requests applies it).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        secret: str | None = None,
        queue_size: int = p.DEFAULT_QUEUE_SIZE,
        max_get_wait: float = p.DEFAULT_MAX_GET_WAIT,
        link_factory: LinkFactory | None = None,
        name: str = "remote",
        max_sessions: int = p.DEFAULT_MAX_SESSIONS,
        callbacks: CallbackRule | None = None,
        liveness_interval: float = DEFAULT_LIVENESS_INTERVAL,
        max_queued_bytes: int = p.DEFAULT_MAX_QUEUED_BYTES,
        max_waiting: int = DEFAULT_MAX_WAITING,
        max_ttl: float = p.DEFAULT_MAX_TTL,
        max_size: int = p.DEFAULT_MAX_SIZE,
        callback_timeout: float = CALLBACK_TIMEOUT,
    ) -> None:
        super().__init__(bus, name=name, max_sessions=max_sessions,
                         liveness_interval=liveness_interval, secret=secret,
                         queue_size=queue_size, max_get_wait=max_get_wait,
                         max_queued_bytes=max_queued_bytes, max_size=max_size)
        self.link_factory = link_factory
        self.max_ttl = max_ttl
        #: the largest message taken in (:mod:`berrymq_jsonrpc.sizes`), and the size of
        #: a request below which its messages are not measured
        self.message_limit = message_limit(max_size)
        self.measured_from = measured_from(max_size)
        #: how long a JSON-RPC 1.0 peer may take to answer a call-back (the setting timeout)
        self.callback_timeout = callback_timeout
        #: the cap on the requests that may wait, running at once on one connection
        self.max_waiting = max_waiting
        #: the addresses ``interconnect`` may make this node call back (``callback_hosts``)
        self.callbacks = callbacks or CallbackRule(None)
        self._count = itertools.count()
        #: called when a link of this service lost messages (the transport's next flush
        #: then says False); set by the transport
        self.on_loss: Callable[[], None] | None = None
        #: refusals and drops are logged once per burst, with a count (each is counted)
        self._refusals = BurstLog(logger)
        #: the ends of this node's links (a failure, a peer gone): one line per burst
        self.link_failures = BurstLog(logger)
        methods: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
            p.METHOD_CONNECT_ONEWAY: self._connect_oneway,
            p.METHOD_INTERCONNECT: self._interconnect,
            p.METHOD_CONNECT_VIA_QUEUE: self._connect_via_queue,
            p.METHOD_SEND_MESSAGE: self._send_message,
            p.METHOD_SEND_MESSAGES: self._send_messages,
            p.METHOD_GET: self._get,
            p.METHOD_GET_NOWAIT: self._get_nowait,
            p.METHOD_CLOSE_CONNECTION: self._close_connection,
            p.METHOD_ASK: self._ask,
            p.METHOD_NETWORK: self._network,
        }
        self.dispatcher = Dispatcher(
            {name: self._authorised(method) for name, method in methods.items()},
            p.POSITIONAL_PARAMS,
            gate=self._authorised(lambda context, params: None),
            answer_only=p.NOT_RUN_AS_NOTIFICATIONS, bound=self.bound,
        )

    # -- requests ---------------------------------------------------------------------------

    def handle(self, data: bytes | str, context: Any = None) -> bytes | None:
        """Answer a request text; None when nothing is to be answered."""
        try:
            reply = self.handle_parsed(loads(data), context, len(data))
        except ParseError as exc:
            reply = self.dispatcher.parse_error(exc)
        self.stats.exchanged(len(data), 0 if reply is None else len(reply))  # stats
        return reply

    def handle_parsed(self, request: Any, context: Any = None,
                      size: int | None = None) -> bytes | None:
        """Answer a parsed request or batch; None when nothing is to be answered.
        ``size``, the bytes of its text when the transport knows them: a request smaller
        than :attr:`measured_from` has its messages taken unmeasured."""
        if size is not None and size < self.measured_from:
            reset = _MEASURE.set(False)
            try:
                return self._answer(request, context)
            finally:
                _MEASURE.reset(reset)
        return self._answer(request, context)

    def _answer(self, request: Any, context: Any) -> bytes | None:
        if p.is_v1(request):
            # JSON-RPC 1.0 (no "jsonrpc" member) and the original berryMQ's dialect
            # (issue 11): dialect.py normalises, dispatches and answers in 1.0 form.
            return answer_v1(self, request, context)
        return self.dispatcher.handle_parsed(request, context)

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

    @staticmethod
    def answers_on_loop(request: Any) -> bool:
        """Whether ``request`` (parsed) is a JSON-RPC 2.0 call of a method that delivers
        nothing and never waits (:data:`QUICK_METHODS`, a ``get`` not blocking or not run):
        the transport answers it on the loop with :meth:`handle_parsed`, once nothing its
        connection handed to the delivery lane before is still to run (the order a client
        sees on one connection is kept). Calls of other methods are answered in order on
        the lane, behind whatever receivers run there."""
        if type(request) is not dict or p.is_v1(request):
            return False
        method = request.get("method")
        if type(method) is not str:
            return False
        return method in QUICK_METHODS or is_nonblocking_get(method, request)

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

    def close(self) -> None:
        """Close every session (see SessionTable), then write what this node's bursts of
        refusals and link failures came to since their last lines."""
        super().close()
        self._refusals.flush()
        self.link_failures.flush()

    @property
    def requires_secret(self) -> bool:
        """Whether every request must carry the shared secret (JSON-RPC 1.0 cannot)."""
        return self._secret is not None

    def _authorised(self, method: Callable[[Any, dict[str, Any]], Any]
                    ) -> Callable[[Any, dict[str, Any]], Any]:
        def checked(context: Any, params: dict[str, Any]) -> Any:
            given = params.pop(p.PARAM_SECRET, None)
            secret = self._secret
            if secret is not None and not presents(given, secret):
                raise app_error(p.UNAUTHORISED)
            return method(context, params)

        return checked

    # -- the methods ----------------------------------------------------------------------

    def _connect_oneway(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_CONNECT_ONEWAY, params, frozenset({"ttl"}))
        return self.open_session("oneway", session_ttl(params, self.max_ttl), context).token

    def _interconnect(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_INTERCONNECT, params, frozenset({"addr", "token", "ttl"}))
        addr: str | tuple[str, int] | None = host_port_pair(params.get("addr"))
        if addr is None:  # not the original's [host, port]: a URL
            addr = string(params, "addr", required=False)
        peer_token = string(params, "token")
        assert peer_token is not None
        longest = p.PROPOSED_TOKEN_LENGTHS[1]  # sent back with every message forwarded
        if len(peer_token) > longest:
            raise invalid_params(f"'token' must be at most {longest} characters")
        ttl = session_ttl(params, self.max_ttl)
        self.check_ttl(ttl)  # before the link to the peer is made
        if self.link_factory is None:
            raise app_error(p.NOT_AVAILABLE, "this node cannot forward to its peers")
        # without addr the link sends back over the connection the request came on (TCP),
        # where what it holds counts against max_interconnects_per_connection
        sends_on = context if addr is None else None
        self.check_room(sends_on)  # max_sessions too: before a callback connection is made
        link = self.link_factory(addr, peer_token, context)
        try:
            session = self.open_session("interconnect", ttl, context, sends_on=sends_on)
        except BaseException:  # refused after all (a race): the link and its connection go
            link.close(0.0)
            raise
        session.link = link
        link.session = session
        self.bus.add_forwarder(link)
        return session.token

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
        if not refusal.not_forwarded:
            self.stats.lost(NOT_WRITABLE if isinstance(refusal, Unwritable) else REFUSED)  # stats
        self._say_refused(peer, refusal)

    def _say_refused(self, peer: object, why: object) -> None:
        """Log a refused message of ``peer``'s, once per burst of them."""
        self._refusals.warning("%s: a message from %s was refused: %s", self.name,
                               peer or "a client", why)

    def _too_large(self, peer: object, size: int, where: str) -> Exception:
        """The refusal of a message over the size limit (*Message too large*, naming the
        setting), counted in ``/status`` ``refused`` (``max_size``) and logged once per
        burst: nothing of its request runs, and its sender is told."""
        self.count_refusal("max_size")  # stats
        data = too_large_data(size, self.max_size, where)
        self._say_refused(peer, data["detail"])
        return app_error(p.TOO_LARGE, data)

    def _send_message(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_SEND_MESSAGE, params, _SEND_MESSAGE)
        session = self.session(params.get("token"), context)
        message, reply_to = message_from_wire(
            params.get("identifier"), params.get("args", []), params.get("kwargs", {}),
            params, "the message's",
        )
        if _MEASURE.get() and (size := measure(message, reply_to)) > self.message_limit:
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
        session = self.session(params.get("token"), context)
        items = params.get("messages")
        if type(items) is not list:
            raise invalid_params("'messages' must be an array")
        built = [decode_message(item, f"messages[{index}]") for index, item in enumerate(items)]
        if _MEASURE.get():  # one over the limit: none of them is taken
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

    def _close_connection(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_CLOSE_CONNECTION, params, frozenset({"token"}))
        token = self.session(params.get("token")).token
        self.close_session(token, "closed by the peer")
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
        if _MEASURE.get() and (size := measure(message)) > self.message_limit:
            raise self._too_large(peer, size, "")
        if not ask_arrived(self.bus, self.stats, message, peer):  # counted there
            return []  # answered already: the asker asked this node over another link too
        replies, receivers = local_replies(self.bus, message, timeout,  # full queues: counted
                                           functools.partial(self._refused, peer))
        return encode_replies(replies, self.bus.node_id, receivers)

    def _network(self, context: Any, params: dict[str, Any]) -> Any:
        allowed(p.METHOD_NETWORK, params, frozenset({"token"}))
        if params.get("token") is not None:
            self.session(params["token"])
        return network.describe(self.bus)

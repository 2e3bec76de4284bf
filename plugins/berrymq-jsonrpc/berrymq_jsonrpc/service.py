"""The server side of the protocol, for any transport: the methods, on the sessions they open.

A :class:`Service` belongs to one transport of one bus. Each ``connect_*`` or
``interconnect`` request opens a :class:`~berrymq_jsonrpc.sessions.Session` named by a token; it keeps
what the connection needs (a bounded queue for style 03, an outgoing link for style 01).
The table of open sessions, and their closing and expiry, is
:class:`~berrymq_jsonrpc.session_table.SessionTable`, the methods of style 03 are
:class:`~berrymq_jsonrpc.queue_methods.QueueMethods`, answering the requests that may
wait is :class:`~berrymq_jsonrpc.waiting_methods.WaitingMethods`, and the methods that take
messages in (``send_message``, ``send_messages``, ``ask``) are
:class:`~berrymq_jsonrpc.message_methods.MessageMethods`; a service is all four. The transport
feeds request texts to :meth:`Service.handle` with a *context* (the TCP connection the
request came on, or None over HTTP) and writes back what it returns.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berrymq import network
from berrymq.bursts import BurstLog, BurstLogs
from berrymq.wire import ParseError, loads
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.dialect import CALLBACK_TIMEOUT, answer_v1
from berrymq_jsonrpc.jsonrpc import Dispatcher, app_error, invalid_params
from berrymq_jsonrpc.limits import CallbackRule
from berrymq_jsonrpc.message_methods import MEASURE, MessageMethods
from berrymq_jsonrpc.params import (
    allowed,
    caller_max_size,
    host_port_pair,
    presents,
    session_ttl,
    string,
)
from berrymq_jsonrpc.reading import DEFAULT_MAX_READING_BYTES, READING
from berrymq_jsonrpc.session_table import DEFAULT_LIVENESS_INTERVAL
from berrymq_jsonrpc.sizes import measured_from, message_limit
from berrymq_jsonrpc.waiting import QUICK_METHODS, is_nonblocking_get

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq_jsonrpc.client import Link

__all__ = ["DEFAULT_MAX_WAITING", "LinkFactory", "Service"]

logger = logging.getLogger("berrymq.remote")

#: How many requests that may wait (``ask``, a blocking ``get``) run at once per connection
#: (setting ``max_waiting``); one more is answered *Limit reached* at once
#: (:func:`~berrymq_jsonrpc.waiting.refuse_waiting`).
DEFAULT_MAX_WAITING = 16

#: ``factory(addr, token, context, max_size)``: the outgoing link of an ``interconnect``
#: session, which forwards to the caller (at ``addr``, or back over ``context``) with
#: ``token``, within the caller's own ``max_size`` when it gave one.
LinkFactory = Callable[[str | tuple[str, int] | None, str, Any, int | None], "Link"]


class Service(MessageMethods):
    """The protocol's methods on one bus, and the sessions they open.

    :param bus: the bus that incoming messages are delivered to.
    :param secret: when set, every request must carry it as ``secret``.
    :param queue_size: the bound of each style-03 queue.
    :param max_get_wait: the cap, in seconds, of a blocking ``get``.
    :param link_factory: makes the outgoing link of an ``interconnect`` session.
    :param max_waiting: how many requests that may wait run at once per connection,
        each such member of a batch counted (HTTP, one request at a time: in one batch).
    :param max_reading_bytes: the cap on the bytes of requests being read, all the
        node's connections together (:mod:`berrymq_jsonrpc.reading`).
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
        max_reading_bytes: int = DEFAULT_MAX_READING_BYTES,
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
        #: the node's shares of requests being read, and this transport's cap on them
        self.reading = bus.state(READING)
        self.max_reading_bytes = max_reading_bytes
        #: the addresses ``interconnect`` may make this node call back (``callback_hosts``)
        self.callbacks = callbacks or CallbackRule(None)
        self._count = itertools.count()
        #: called when a link of this service lost messages (the transport's next flush
        #: then says False); set by the transport
        self.on_loss: Callable[[], None] | None = None
        #: refusals and drops are logged once per burst, with a count (each is counted)
        self.refusals = BurstLogs(logger)  # one per reason: each line counts its own
        #: the ends of this node's links (a failure, a peer gone): one line per burst
        self.link_failures = BurstLog(logger)
        #: messages taken for answers that never left (see berrymq_jsonrpc.taken)
        self.unsent = BurstLog(logger)
        methods: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
            p.METHOD_CONNECT_ONEWAY: self._connect_oneway,
            p.METHOD_INTERCONNECT: self._interconnect,
            p.METHOD_CONNECT_VIA_QUEUE: self._connect_via_queue,
            p.METHOD_GET: self._get,
            p.METHOD_GET_NOWAIT: self._get_nowait,
            p.METHOD_CLOSE_CONNECTION: self._close_connection,
            p.METHOD_NETWORK: self._network,
            **self.message_methods(),  # send_message, send_messages, ask
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
            reset = MEASURE.set(False)
            try:
                return self._answer(request, context)
            finally:
                MEASURE.reset(reset)
        return self._answer(request, context)

    def _answer(self, request: Any, context: Any) -> bytes | None:
        if p.is_v1(request):
            # JSON-RPC 1.0 (no "jsonrpc" member) and the original berryMQ's dialect
            # (issue 11): dialect.py normalises, dispatches and answers in 1.0 form.
            return answer_v1(self, request, context)
        return self.dispatcher.handle_parsed(request, context)

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

    def close(self) -> None:
        """Close every session (see SessionTable), then write what this node's bursts of
        refusals and link failures came to since their last lines."""
        super().close()
        self.refusals.flush()
        self.link_failures.flush()
        self.unsent.flush()

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
        allowed(p.METHOD_INTERCONNECT, params, frozenset({"addr", "token", "ttl", "max_size"}))
        addr: str | tuple[str, int] | None = host_port_pair(params.get("addr"))
        if addr is None:  # not the original's [host, port]: a URL
            addr = string(params, "addr", required=False)
        peer_token = string(params, "token")
        assert peer_token is not None
        longest = p.PROPOSED_TOKEN_LENGTHS[1]  # sent back with every message forwarded
        if len(peer_token) > longest:
            raise invalid_params(f"'token' must be at most {longest} characters")
        ttl = session_ttl(params, self.max_ttl)
        limit = caller_max_size(params)
        self.check_ttl(ttl)  # before the link to the peer is made
        if self.link_factory is None:
            raise app_error(p.NOT_AVAILABLE, "this node cannot forward to its peers")
        # without addr the link sends back over the connection the request came on (TCP),
        # where what it holds counts against max_interconnects_per_connection
        sends_on = context if addr is None else None
        self.check_room(sends_on)  # max_sessions too: before a callback connection is made
        link = self.link_factory(addr, peer_token, context, limit)
        try:
            session = self.open_session("interconnect", ttl, context, sends_on=sends_on)
        except BaseException:  # refused after all (a race): the link and its connection go
            link.close(0.0)
            raise
        session.link = link
        link.session = session
        self.bus.add_forwarder(link)
        return session.token

    def _close_connection(self, context: Any, params: dict[str, Any]) -> str:
        allowed(p.METHOD_CLOSE_CONNECTION, params, frozenset({"token"}))
        token = self.session(params.get("token")).token
        self.close_session(token, "closed by the peer")
        return p.RESULT_OK

    def _network(self, context: Any, params: dict[str, Any]) -> Any:
        allowed(p.METHOD_NETWORK, params, frozenset({"token"}))
        if params.get("token") is not None:
            self.session(params["token"])
        return network.describe(self.bus)

"""JSON-RPC 2.0 encoding, decoding and dispatch, with the defects of the libraries fixed.

berryMQ uses ``jsonrpcserver`` 5.0.9 to dispatch requests to methods and
``jsonrpcclient`` 4.0.3 to build requests and read replies. This module is the only one
that imports ``jsonrpcserver`` (:mod:`berrymq_jsonrpc.jsonrpc_client` the only one that
imports ``jsonrpcclient``), and the two neutralise each of their known defects (issue 3,
point 4):

1. ``jsonrpcserver``'s default validator is ``jsonschema`` and costs about four times the
   rest of dispatch: :func:`validate_request` is a strict hand-written check that rejects
   the same requests (and also a boolean ``id``), and dispatch runs with it.
2. It answers a batch like ``[1, 2, 3]`` or a mixed batch with one error and runs
   nothing: :meth:`Dispatcher.handle` splits batches itself (JSON-RPC 2.0 section 6):
   ``[]`` is one Invalid Request, every bad member gets its own Invalid Request, valid
   members run, and notifications are never answered (a batch of notifications gets no
   reply at all).
3. It puts the raised exception's text in ``error.data``: methods are wrapped so that
   any exception becomes a fixed ``Internal error`` (the detail goes to the log), and the
   data of internal and server errors is dropped on the way out.
4. It accepts and echoes ``NaN``/``Infinity``: requests are read and answers written
   with berryMQ's one codec, :mod:`berrymq.wire`, which rejects non-finite numbers (also
   ``1e999``) as a parse error and never writes them.
5. A result that is not JSON-serialisable makes its ``dispatch`` raise: each response is
   serialised on its own, and one that cannot be becomes an ``Internal error`` for that
   request only.
6. Its bundled ``serve()`` binds every interface and serves one client at a time: it is
   never used; the transport plugins run their own servers.
7. ``jsonrpcclient.parse_json`` raises ``KeyError``/``TypeError`` on malformed replies and
   reads a reply holding both ``result`` and ``error`` as a success:
   :func:`~berrymq_jsonrpc.jsonrpc_client.parse_reply` checks the shape first (see
   :mod:`berrymq_jsonrpc.jsonrpc_client`).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

with warnings.catch_warnings():
    # jsonrpcserver 5.0.9 reads its schema with importlib.resources.read_text, deprecated
    # since Python 3.11; not our code, and harmless.
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    from jsonrpcserver.dispatcher import call as call_method
    from jsonrpcserver.dispatcher import create_request, get_method, to_response
    from jsonrpcserver.exceptions import JsonRpcError
    from jsonrpcserver.response import to_serializable_one
    from jsonrpcserver.result import Success
    from jsonrpcserver.sentinels import NOID

from berrymq.wire import NestedTooDeep, NumberTooLong, ParseError, byte_size, dumps, loads
from berrymq_jsonrpc import protocol as p

if TYPE_CHECKING:
    from berrymq_jsonrpc.replies import BatchBudget, ReplyBound

__all__ = [
    "Dispatcher",
    "JsonRpcError",
    "Method",
    "app_error",
    "error_answer",
    "error_v1",
    "error_object",
    "internal_error",
    "invalid_params",
    "invalid_request",
    "validate_request",
]

logger = logging.getLogger("berrymq.remote")

#: A berryMQ method: ``method(context, params) -> result``; raise :class:`JsonRpcError`
#: (see :func:`app_error`, :func:`invalid_params`) to answer an error.
Method = Callable[[Any, dict[str, Any]], Any]

# -- requests --------------------------------------------------------------------------

_REQUEST_KEYS = frozenset({"jsonrpc", "method", "params", "id"})


def validate_request(request: Any) -> Any:
    """Raise ``ValueError`` unless ``request`` is one valid JSON-RPC 2.0 request object.

    The same rules as ``jsonrpcserver``'s schema (``jsonrpc`` is ``"2.0"``, ``method`` a
    string, ``params`` an array or object, ``id`` a string, number or null, no other
    members), without its cost; a boolean ``id`` is rejected too. The error's text says
    what is wrong, for the client (:func:`invalid_request`).
    """
    if type(request) is not dict:
        raise ValueError("a request is a JSON object (a batch is an array of them, not nested)")
    if request.get("jsonrpc") != "2.0":
        raise ValueError("the jsonrpc member must be the string 2.0, or be absent in a "
                         "JSON-RPC 1.0 request (which a batch cannot hold)")
    if type(request.get("method")) is not str:
        raise ValueError("the method member must be a string")
    if "params" in request and type(request["params"]) not in (list, dict):
        raise ValueError("the params member must be an array or an object")
    if "id" in request:
        ident = request["id"]
        if ident is not None and type(ident) not in (str, int, float):
            raise ValueError("the id member must be a string, a number or null")
    if not request.keys() <= _REQUEST_KEYS:
        raise ValueError("a request has no members but jsonrpc, method, params and id")
    return request


def _accept(request: Any) -> Any:
    return request  # validation happened before dispatch


def _identity(value: Any) -> Any:
    return value


def error_object(code: int, message: str, request_id: Any = None, data: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response object."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": request_id}


def error_answer(request: Any, code: int, message: str, data: Any = None) -> bytes | None:
    """The answer to ``request`` (parsed) when it is not run: the error ``code`` for it,
    or for each member of a batch that has an ``id``; None when nothing is to be answered
    (notifications). A JSON-RPC 1.0 request (no ``jsonrpc`` member) gets 1.0's form."""
    if p.is_v1(request) and "id" in request:
        return error_v1(code, message, request["id"], data)
    members = request if type(request) is list else [request]
    errors = [error_object(code, message, member.get("id"), data)
              for member in members if type(member) is dict and "id" in member]
    if not errors:
        return None
    return dumps(errors if type(request) is list else errors[0]).encode()


def error_v1(code: int, message: str, request_id: Any, data: Any = None) -> bytes:
    """A JSON-RPC 1.0 error response (the original berryMQ's dialect): ``result`` null,
    the error object, the request's ``id``."""
    error = error_object(code, message, None, data)["error"]
    return dumps({"result": None, "error": error, "id": request_id}).encode()


def internal_error(request: Any) -> bytes | None:
    """The answer to ``request`` when answering it failed inside the node (*Internal
    error*, see :func:`error_answer`): the client is never left waiting."""
    return error_answer(request, p.INTERNAL_ERROR, "Internal error")


def app_error(code: int, data: Any = None) -> JsonRpcError:
    """The exception a method raises to answer one of berryMQ's application errors, with
    the fixed message of :data:`~berrymq_jsonrpc.protocol.APPLICATION_ERRORS`."""
    if data is None:
        return JsonRpcError(code, p.APPLICATION_ERRORS[code])
    return JsonRpcError(code, p.APPLICATION_ERRORS[code], data)


def invalid_params(detail: str) -> JsonRpcError:
    """Invalid params, with ``data`` naming the parameter and the problem (our own text)."""
    return JsonRpcError(p.INVALID_PARAMS, "Invalid params", detail)


_PARSE_ERROR = dumps(error_object(p.PARSE_ERROR, "Parse error")).encode()
_EMPTY_BATCH = "an empty batch: send at least one request"


def invalid_request(problem: str) -> str:
    """The answer to JSON that is no request, with ``data`` saying what is wrong
    (``problem``: our own fixed words, never the client's text)."""
    return dumps(error_object(p.INVALID_REQUEST, "Invalid Request", None, problem))

_SANITISED_CODES = frozenset({p.INTERNAL_ERROR, -32000})


class Dispatcher:
    """Runs requests against a table of methods and gives the response text.

    :param methods: name -> ``method(context, params)``. ``params`` is always a dict:
        by-position params are mapped to names with ``positional`` (too many are Invalid
        params).
    :param positional: name -> the parameter names in order, for by-position params.
    :param gate: called as ``gate(context, params)`` before a method not in the table is
        answered *Method not found*, to refuse the request first (a node with a shared
        secret answers a request without it *Unauthorised*, whatever its method).
    :param answer_only: methods not run at all when called as a notification: their one
        effect is their answer (``get`` takes a message to answer with it), which would
        go to nobody.
    :param bound: the bound on the size of an answer (:mod:`berrymq_jsonrpc.replies`);
        None: none.
    """

    def __init__(self, methods: Mapping[str, Method],
                 positional: Mapping[str, tuple[str, ...]] | None = None,
                 gate: Method | None = None,
                 answer_only: frozenset[str] = frozenset(),
                 bound: ReplyBound | None = None) -> None:
        positional = positional or {}
        self._methods = {
            name: self._wrap(name, method, positional.get(name, ()))
            for name, method in methods.items()
        }
        self._gate = gate
        self._answer_only = answer_only
        self.bound = bound

    def _not_found(self, name: str) -> Callable[..., Any]:
        """The method that answers a request for ``name``, not in the table, once
        :attr:`_gate` let it through."""
        gate = self._gate
        assert gate is not None

        def refuse(context: Any, /, *args: Any, **kwargs: Any) -> Any:
            gate(context, {} if args else kwargs)  # by position: no secret
            raise JsonRpcError(p.METHOD_NOT_FOUND, "Method not found", name)

        return refuse

    @staticmethod
    def _wrap(name: str, method: Method, order: tuple[str, ...]) -> Callable[..., Any]:
        # The signature (context, /, *args, **kwargs) takes whatever params come (a
        # param named "context" too: context is positional-only), so a call never fails
        # with the text of a TypeError; our methods check their params themselves with
        # fixed messages.
        def call(context: Any, /, *args: Any, **kwargs: Any) -> Any:
            if args:
                if len(args) > len(order):
                    raise invalid_params(f"{name} takes at most {len(order)} "
                                         f"parameter{'s' if len(order) > 1 else ''} by position")
                kwargs = dict(zip(order, args, strict=False))
            try:
                return Success(method(context, kwargs))
            except JsonRpcError:
                raise
            except Exception:
                logger.exception("JSON-RPC method %s failed", name)
                raise JsonRpcError(p.INTERNAL_ERROR, "Internal error") from None

        return call

    def handle(self, data: bytes | str, context: Any = None) -> bytes | None:
        """Answer one request text (a request or a batch); None when there is nothing to
        answer (notifications)."""
        try:
            request = loads(data)
        except ParseError as exc:
            return self.parse_error(exc)
        return self.handle_parsed(request, context)

    @staticmethod
    def parse_error(problem: ParseError | None = None) -> bytes:
        """The answer to a text that is not JSON (``problem``: why, when known). A text
        nested too deep, or holding an integer of too many digits, gets ``data`` naming
        the limit (``limit``, ``detail``): it may be valid JSON, and the client is told
        what to change."""
        if isinstance(problem, NestedTooDeep | NumberTooLong):
            return dumps(error_object(p.PARSE_ERROR, "Parse error", None, {
                "limit": problem.limit, "detail": str(problem)})).encode()
        return _PARSE_ERROR

    def handle_parsed(self, request: Any, context: Any = None) -> bytes | None:
        """Answer an already parsed request or batch (see :meth:`handle`), within the
        :attr:`bound` on an answer's size."""
        bound = self.bound
        if type(request) is list:
            if not request:
                return invalid_request(_EMPTY_BATCH).encode()
            if bound is None:
                texts = [text for text in (self._one(member, context)[0] for member in request)
                         if text]
            else:
                budget = bound.batch(request)
                if budget.over:
                    return budget.refusal()
                texts = [text for index, member in enumerate(request)
                         if (text := self.member(budget, index, member, context))]
            return ("[" + ",".join(texts) + "]").encode() if texts else None
        text, code = self._one(request, context)
        if text and bound is not None and byte_size(text) > bound.limit:
            text = bound.one(request, text, code)
        return text.encode() if text else None

    def member(self, budget: BatchBudget, index: int, member: Any, context: Any) -> str | None:
        """The answer to member ``index`` of a batch, within the batch's ``budget``: its
        own, or *Limit reached* when it was not run or its answer did not fit."""
        if not budget.may_run(index):
            return budget.not_run(index)
        with budget.slot(index):  # for a get among the members (see replies.Slot)
            text, code = self._one(member, context)
        return budget.answer(index, member, text, code)

    def _one(self, request: Any, context: Any) -> tuple[str | None, int | None]:
        """The answer to one request, and its error code (None for a result or none)."""
        try:
            validate_request(request)
        except ValueError as problem:
            return invalid_request(str(problem)), p.INVALID_REQUEST
        if "id" not in request and request["method"] in self._answer_only:
            return None, None  # a notification whose answer is all it does: not run
        # jsonrpcserver's own steps for one request, as its dispatch_to_response runs them
        # for each member once parsed and validated (done above): find the method, call
        # it, make the response. Its step between, validate_args, binds the params to the
        # method's signature with inspect on every request (a third of the cost of a
        # send_message call); every method here takes any params (see _wrap), so it is
        # left out.
        call = create_request(request)
        methods = self._methods
        if self._gate is not None and call.method not in methods:
            methods = {call.method: self._not_found(call.method)}
        try:
            result = get_method(methods, call.method).bind(
                functools.partial(call_method, call, context))
            if call.id is NOID:
                return None, None  # a notification
            response = to_response(call, result)
        except Exception:
            logger.exception("dispatching %.100s failed", request["method"])
            return (dumps(error_object(p.INTERNAL_ERROR, "Internal error", request.get("id"))),
                    p.INTERNAL_ERROR)
        answer: dict[str, Any] = to_serializable_one(response)  # type: ignore[assignment]
        error = answer.get("error")
        code = None
        if error is not None:
            code = error.get("code")
            if code in _SANITISED_CODES:
                error.pop("data", None)
        try:
            return dumps(answer), code
        except (TypeError, ValueError):
            logger.error("the result of %s (id %r) is not JSON; answered Internal error",
                         request.get("method"), answer.get("id"))
            return (dumps(error_object(p.INTERNAL_ERROR, "Internal error", answer.get("id"))),
                    p.INTERNAL_ERROR)

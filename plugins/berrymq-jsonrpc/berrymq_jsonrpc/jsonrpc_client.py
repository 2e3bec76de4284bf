"""The client side of JSON-RPC 2.0: request texts built by ``jsonrpcclient``, and replies
read into results or berryMQ's exceptions.

This module is the only one that imports ``jsonrpcclient`` 4.0.3 (as
:mod:`berrymq_jsonrpc.jsonrpc` is for ``jsonrpcserver``), and it neutralises the library's
defect: ``jsonrpcclient.parse_json`` raises ``KeyError``/``TypeError`` on malformed
replies and reads a reply holding both ``result`` and ``error`` as a success.
:func:`parse_reply` checks the shape first and raises :class:`berrymq.TransportError` for
a malformed reply, and turns error objects into berryMQ's exceptions (:func:`error_for`).
"""

from __future__ import annotations

import queue
from collections.abc import Mapping
from typing import Any

import jsonrpcclient

from berrymq.errors import (
    ConnectionClosed,
    MessageTooLarge,
    QueueFull,
    RemoteError,
    TransportError,
)
from berrymq.wire import ParseError, dumps, loads
from berrymq_jsonrpc import protocol as p

__all__ = ["PeerQueueFull", "encode_notification", "encode_request", "error_for", "parse_reply",
           "secret_refusal", "unauthorised"]


def encode_request(method: str, params: Mapping[str, Any], request_id: Any) -> str:
    """A request text (built by ``jsonrpcclient``), compact, without NaN/Infinity."""
    return dumps(jsonrpcclient.request(method, params=dict(params), id=request_id))


def encode_notification(method: str, params: Mapping[str, Any]) -> str:
    """A notification text (no ``id``: the server does not answer)."""
    return dumps(jsonrpcclient.notification(method, params=dict(params)))


def _check_reply(reply: Any) -> None:
    if type(reply) is not dict:
        raise TransportError("malformed JSON-RPC reply: not an object")
    if reply.get("jsonrpc") != "2.0":
        raise TransportError('malformed JSON-RPC reply: "jsonrpc" is not "2.0"')
    if "id" not in reply:
        raise TransportError('malformed JSON-RPC reply: no "id"')
    has_result, has_error = "result" in reply, "error" in reply
    if has_result == has_error:
        raise TransportError(
            'malformed JSON-RPC reply: it must hold exactly one of "result" and "error"'
        )
    if has_error:
        error = reply["error"]
        if (type(error) is not dict or type(error.get("code")) is not int
                or type(error.get("message")) is not str):
            raise TransportError(
                'malformed JSON-RPC reply: "error" needs an integer "code" and a string '
                '"message"'
            )


def parse_reply(reply: Any, request_id: Any = None, peer: str | None = None) -> Any:
    """The result of a reply (already parsed JSON, or its text), or the error it holds
    raised as a berryMQ exception (:func:`error_for`; ``peer``, the URL that answered,
    is named where the error's text would otherwise not say which peer it was).

    Raises :class:`berrymq.TransportError` for a reply that is not a JSON-RPC response or
    answers another request.
    """
    by = "" if peer is None else f"{peer}: "  # so that the error says which peer it was
    if isinstance(reply, bytes | str):
        try:
            reply = loads(reply)
        except ParseError as exc:
            raise TransportError(f"{by}malformed JSON-RPC reply: {exc}") from None
    try:
        _check_reply(reply)
    except TransportError as exc:
        raise TransportError(f"{by}{exc}") from None
    if request_id is not None and reply["id"] != request_id and "result" in reply:
        raise TransportError(f"{by}reply to request {reply['id']!r}, expected {request_id!r}")
    response = jsonrpcclient.parse(reply)
    if isinstance(response, jsonrpcclient.Ok):
        return response.result
    assert isinstance(response, jsonrpcclient.Error)
    raise error_for(response.code, response.message, response.data, peer)


class PeerQueueFull(QueueFull):
    """A peer answered :data:`~berrymq_jsonrpc.protocol.QUEUE_FULL`: some messages of the
    request were refused (not stored) and the others delivered.

    ``data`` is the error's data object; :attr:`refused` the indexes it lists.
    """

    def __init__(self, text: str, data: Any = None) -> None:
        super().__init__(text)
        self.data = data

    @property
    def refused(self) -> list[int] | None:
        """The indexes of the refused messages in the request, when the peer said."""
        data = self.data
        indexes = data.get("refused") if type(data) is dict else None
        if type(indexes) is list and all(type(i) is int for i in indexes):
            return indexes
        return None


def _setting_of(data: Any) -> str:
    """What an error's data object says, for the exception's text: its ``detail``, or
    `` (setting NAME = LIMIT on the peer)`` when it names its setting."""
    if type(data) is not dict:
        return ""
    if type(data.get("detail")) is str:
        return f" ({data['detail']})"
    if type(data.get("setting")) is str:
        return f" (setting {data['setting']} = {data.get('limit')} on the peer)"
    return ""


def error_for(code: int, message: str, data: Any = None, peer: str | None = None) -> Exception:
    """berryMQ's exception for a JSON-RPC error object:

    ======================  ===========================================
    code                    exception
    ======================  ===========================================
    ``UNKNOWN_TOKEN``       :class:`berrymq.ConnectionClosed`
    ``EMPTY``               :class:`berrymq.Empty`
    ``TOO_LARGE``           :class:`berrymq.MessageTooLarge`
    ``QUEUE_FULL``          :class:`PeerQueueFull` (a :class:`berrymq.QueueFull`)
    anything else           :class:`berrymq.RemoteError` (``code``, ``message``, ``data``)
    ======================  ===========================================

    The exception's text carries ``data`` when it is a text, and the setting it names
    when it is an object with ``setting`` and ``limit``; ``ConnectionClosed``'s names
    ``peer`` (a program with several connections can tell which one ended).
    """
    detail = f" ({data})" if isinstance(data, str) else _setting_of(data)
    if code == p.UNKNOWN_TOKEN:
        to = "" if peer is None else f" to {peer}"
        return ConnectionClosed(
            f"the peer no longer knows this connection{to}: {message}{detail}")
    if code == p.EMPTY:  # with the error's text: an ask's ReplyError shows it
        return queue.Empty(f"{message}{detail}")
    if code == p.TOO_LARGE:
        return MessageTooLarge(f"the peer refused a request over its size limit: {message}{detail}")
    if code == p.QUEUE_FULL:
        return PeerQueueFull(f"the peer's queue refused the message: {message}{detail}", data)
    error = RemoteError(code, message, data)
    if detail:
        error.args = (f"{error.args[0]}{detail}",)
    return error


def secret_refusal(*, given: bool, where: str) -> str:
    """What a node's *Unauthorised* means for the requester: ``given``, whether it sent a
    secret; ``where`` says how to give one (when none was given)."""
    if given:
        return "the secret given was refused (a wrong secret: not the node's shared secret)"
    return f"no secret was given; {where} to the node's shared secret"


def unauthorised(error: RemoteError, peer: str, *, given: bool) -> RemoteError:
    """``error``, a node's *Unauthorised*, as a :class:`berrymq.RemoteError` of the same
    code and data whose text names ``peer`` and says whether the secret was missing or
    wrong (the node's answer says neither)."""
    refused = RemoteError(error.code, error.message, error.data)
    refused.args = (f"{peer} refused the request: {error}: " + secret_refusal(
        given=given, where=f"set the transport's secret setting or {p.SECRET_ENV_VAR}"),)
    return refused

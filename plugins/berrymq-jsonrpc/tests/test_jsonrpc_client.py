"""berrymq_jsonrpc.jsonrpc_client: replies are read strictly (``jsonrpcclient``'s defect
7 neutralised) and error objects become berryMQ's exceptions."""

from __future__ import annotations

import json

import jsonrpcclient
import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc_client import error_for, parse_reply

import berrymq

# -- 7. reading replies (defect 7 of berrymq_jsonrpc.jsonrpc) --------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [
    '{"jsonrpc":"2.0","result":1,"error":{"code":1,"message":"x"},"id":1}',
    '{"jsonrpc":"2.0","id":1}',
    '{"jsonrpc":"2.0","error":{"message":"x"},"id":1}',
    '{"jsonrpc":"2.0","error":{"code":"1","message":"x"},"id":1}',
    '{"jsonrpc":"2.0","error":"boom","id":1}',
    '{"jsonrpc":"2.0","result":1}',
    '{"result":1,"id":1}',
    '[{"jsonrpc":"2.0","result":1,"id":1}]',
    '"just a string"',
    'not json',
    '{"jsonrpc":"2.0","result":NaN,"id":1}',
])
def test_malformed_replies_raise_transport_error(reply: str) -> None:
    with pytest.raises(berrymq.TransportError, match="malformed"):
        parse_reply(reply, 1)


def test_the_library_alone_misreads_malformed_replies() -> None:
    with pytest.raises(KeyError):
        jsonrpcclient.parse_json('{"jsonrpc":"2.0","error":{"message":"x"},"id":1}')
    both = jsonrpcclient.parse_json(
        '{"jsonrpc":"2.0","result":1,"error":{"code":1,"message":"x"},"id":1}')
    assert isinstance(both, jsonrpcclient.Ok)  # the defect: an error read as success


def test_a_reply_to_another_request_is_refused() -> None:
    with pytest.raises(berrymq.TransportError, match="expected 2"):
        parse_reply('{"jsonrpc":"2.0","result":1,"id":1}', 2)


@pytest.mark.parametrize(("code", "kind"), [
    (p.UNKNOWN_TOKEN, berrymq.ConnectionClosed), (p.EMPTY, berrymq.Empty),
    (p.TOO_LARGE, berrymq.MessageTooLarge), (p.QUEUE_FULL, berrymq.QueueFull),
    (p.UNAUTHORISED, berrymq.RemoteError), (-32601, berrymq.RemoteError),
])
def test_error_objects_become_berrymq_exceptions(code: int, kind: type[Exception]) -> None:
    text = json.dumps({"jsonrpc": "2.0", "error": {"code": code, "message": "m"}, "id": 1})
    with pytest.raises(kind):
        parse_reply(text, 1)
    assert isinstance(error_for(code, "m"), kind)


def test_remote_error_keeps_code_message_and_data() -> None:
    error = error_for(-32602, "Invalid params", "'token' must be a string")
    assert isinstance(error, berrymq.RemoteError)
    assert (error.code, error.message, error.data) == (
        -32602, "Invalid params", "'token' must be a string")

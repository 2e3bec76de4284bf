"""The JSON-RPC layer: each known defect of jsonrpcserver 5.0.9 / jsonrpcclient 4.0.3
(issue 3, point 4) and how berrymq_jsonrpc.jsonrpc neutralises it (the reading of replies,
defect 7, is in test_jsonrpc_client)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.jsonrpc import Dispatcher, internal_error, validate_request
from helpers import json_values
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[3]

# imported after berrymq_jsonrpc.jsonrpc, which silences the library's DeprecationWarning
import jsonrpcserver  # noqa: E402
from jsonrpcserver.main import default_validator  # noqa: E402


def methods() -> Dispatcher:
    def echo(context: Any, params: dict[str, Any]) -> Any:
        return params

    def leak(context: Any, params: dict[str, Any]) -> Any:
        raise RuntimeError("/etc/secret-path password=hunter2")

    def unserialisable(context: Any, params: dict[str, Any]) -> Any:
        return object()

    def nan(context: Any, params: dict[str, Any]) -> Any:
        return float("nan")

    return Dispatcher({"echo": echo, "leak": leak, "unserialisable": unserialisable,
                       "nan": nan}, {"echo": ("a", "b")})


def answer(dispatcher: Dispatcher, text: str) -> Any:
    reply = dispatcher.handle(text)
    return None if reply is None else json.loads(reply)


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    r: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        r["params"] = params
    if id is not ...:
        r["id"] = id
    return r


# -- 1. the validator ------------------------------------------------------------------------

CASES: list[Any] = [
    req("echo"), req("echo", [1]), req("echo", {"a": 1}), req("echo", id="x"), req("echo", id=None),
    req("echo", id=1.5), req("echo", id=...),
    {"jsonrpc": "2.0"}, {"jsonrpc": "1.0", "method": "a", "id": 1}, {"method": "a", "id": 1},
    {"jsonrpc": "2.0", "method": 1, "id": 1}, {"jsonrpc": "2.0", "method": "a", "params": 1},
    {"jsonrpc": "2.0", "method": "a", "params": "x"}, {"jsonrpc": "2.0", "method": "a", "id": {}},
    {"jsonrpc": "2.0", "method": "a", "id": []}, {"jsonrpc": "2.0", "method": "a", "extra": 1},
    {"jsonrpc": 2.0, "method": "a"}, 1, "x", None, [], True,
]


def schema_accepts(request: Any) -> bool:
    try:
        default_validator(request)
    except Exception:
        return False
    return not isinstance(request, list)


def ours_accepts(request: Any) -> bool:
    try:
        validate_request(request)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("request_", CASES, ids=range(len(CASES)))
def test_validator_rejects_what_the_schema_rejects(request_: Any) -> None:
    assert ours_accepts(request_) == schema_accepts(request_)


def test_validator_rejects_a_boolean_id_which_the_schema_lets_through_as_a_number() -> None:
    assert not ours_accepts({"jsonrpc": "2.0", "method": "a", "id": True})


request_like = st.fixed_dictionaries(
    {}, optional={"jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | json_values,
                  "method": st.text(max_size=5) | json_values,
                  "params": json_values, "id": json_values, "other": json_values},
)


@settings(max_examples=300, deadline=None)
@given(request_like)
def test_validator_agrees_with_the_schema_on_generated_requests(request_: dict[str, Any]) -> None:
    expected = schema_accepts(request_)
    if isinstance(request_.get("id"), bool):
        expected = False  # our one deliberate difference
    assert ours_accepts(request_) == expected


def test_validator_is_much_cheaper_than_the_schema() -> None:
    request_ = req("send_message", {"token": "t", "identifier": "a:b", "args": [1], "kwargs": {}})

    def cost(check: Any) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(300):
                check(request_)
            best = min(best, time.perf_counter() - start)
        return best

    assert cost(validate_request) * 3 < cost(default_validator)


# -- 2. batches (JSON-RPC 2.0 section 6) ----------------------------------------------------


def test_empty_batch_is_one_invalid_request() -> None:
    assert answer(methods(), "[]") == {"jsonrpc": "2.0", "error": {
        "code": -32600, "message": "Invalid Request",
        "data": "an empty batch: send at least one request"}, "id": None}


def test_batch_of_non_requests_gives_one_error_each() -> None:
    replies = answer(methods(), "[1,2,3]")
    assert [r["error"]["code"] for r in replies] == [-32600] * 3
    assert all(r["id"] is None for r in replies)


def test_mixed_batch_runs_its_valid_members() -> None:
    batch = [req("echo", {"a": 1}, 1), 1, req("echo", [5], ...), {"jsonrpc": "2.0"},
             req("echo", [2, 3], "two")]
    replies = answer(methods(), json.dumps(batch))
    assert replies == [
        {"jsonrpc": "2.0", "result": {"a": 1}, "id": 1},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request", "data":
            "a request is a JSON object (a batch is an array of them, not nested)"}, "id": None},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request",
                                     "data": "the method member must be a string"}, "id": None},
        {"jsonrpc": "2.0", "result": {"a": 2, "b": 3}, "id": "two"},
    ]


def test_notifications_are_never_answered() -> None:
    d = methods()
    assert d.handle(json.dumps(req("echo", [1], ...))) is None
    assert d.handle(json.dumps([req("echo", [1], ...), req("nope", None, ...)])) is None
    assert d.handle(json.dumps(req("leak", None, ...))) is None


def test_library_alone_answers_a_mixed_batch_with_one_error() -> None:
    # the defect we work around: jsonrpcserver validates the batch as a whole
    text = json.dumps([req("ping"), 1])
    reply = json.loads(jsonrpcserver.dispatch(text, methods={"ping": lambda: jsonrpcserver.Success("pong")}))
    assert isinstance(reply, dict) and reply["error"]["code"] == -32600


# -- 3. no internals in error.data ------------------------------------------------------------


def test_exception_text_never_reaches_the_client(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="berrymq.remote"):
        reply = answer(methods(), json.dumps(req("leak")))
    assert reply == {"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error"},
                     "id": 1}
    assert "hunter2" in caplog.text  # the detail is logged on the server


def test_parse_error_has_no_parser_text() -> None:
    assert answer(methods(), '{"jsonrpc": "2.0", "method": ') == {
        "jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}


def test_by_position_params_are_checked_with_our_own_text() -> None:
    reply = answer(methods(), json.dumps(req("echo", [1, 2, 3])))
    assert reply["error"] == {"code": -32602, "message": "Invalid params",
                              "data": "echo takes at most 2 parameters by position"}


# -- 4. NaN and Infinity ------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_a_parse_error(number: str) -> None:
    text = '{"jsonrpc":"2.0","method":"echo","params":[' + number + '],"id":1}'
    assert answer(methods(), text)["error"]["code"] == -32700  # berrymq.wire (test_wire)


def test_non_finite_results_are_never_written() -> None:
    reply = answer(methods(), json.dumps(req("nan")))
    assert reply["error"] == {"code": -32603, "message": "Internal error"}


def test_invalid_utf8_is_a_parse_error() -> None:
    assert json.loads(methods().handle(b'{"jsonrpc":"2.0","method":"\xff","id":1}') or b"")[
        "error"]["code"] == -32700


# -- 5. results that are not JSON ------------------------------------------------------------


def test_unserialisable_result_is_an_internal_error_for_that_request_only() -> None:
    batch = [req("unserialisable", None, 1), req("echo", [1], 2)]
    replies = answer(methods(), json.dumps(batch))
    assert replies == [
        {"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error"}, "id": 1},
        {"jsonrpc": "2.0", "result": {"a": 1}, "id": 2},
    ]


# -- 6. the bundled serve() ----------------------------------------------------------------------


def test_each_library_is_imported_by_one_module_and_nobody_uses_serve() -> None:
    sources = list((ROOT / "berrymq").rglob("*.py")) + list((ROOT / "plugins").glob(
        "berrymq-jsonrpc*/berrymq_jsonrpc*/*.py"))

    def users(library: str) -> list[str]:
        return sorted(str(path.relative_to(ROOT)) for path in sources
                      if f"import {library}" in path.read_text()
                      or f"from {library}" in path.read_text())

    assert users("jsonrpcserver") == ["plugins/berrymq-jsonrpc/berrymq_jsonrpc/jsonrpc.py"]
    assert users("jsonrpcclient") == ["plugins/berrymq-jsonrpc/berrymq_jsonrpc/jsonrpc_client.py"]
    assert "serve" not in (ROOT / "plugins/berrymq-jsonrpc/berrymq_jsonrpc/jsonrpc.py").read_text().split(
        '"""', 2)[2].replace("server", "").replace("serial", "")


def test_protocol_codes_are_distinct_and_documented() -> None:
    codes = list(p.APPLICATION_ERRORS)
    assert len(set(codes)) == len(codes)
    assert all(-32099 <= c <= -32000 for c in codes)
    assert {p.UNKNOWN_TOKEN, p.EMPTY, p.TOO_LARGE, p.UNAUTHORISED} <= set(codes)
    assert p.DEFAULT_MAX_SIZE == 1024 * 1024


def test_internal_error_answers_each_request_that_has_an_id() -> None:
    error = {"code": p.INTERNAL_ERROR, "message": "Internal error"}
    assert json.loads(internal_error({"jsonrpc": "2.0", "method": "a", "id": 7}) or b"") == {
        "jsonrpc": "2.0", "error": error, "id": 7}
    batch = [{"jsonrpc": "2.0", "method": "a", "id": 1}, {"jsonrpc": "2.0", "method": "b"}, 5]
    assert json.loads(internal_error(batch) or b"") == [{"jsonrpc": "2.0", "error": error,
                                                         "id": 1}]
    assert internal_error({"jsonrpc": "2.0", "method": "a"}) is None  # a notification

"""berrymq.wire: the one wire form of a message and of a reply, and the one JSON codec,
which every transport that leaves the process uses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import json_values
from hypothesis import given

from berrymq.errors import ReplyError, TransportError
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.wire import (
    ParseError,
    WireError,
    byte_size,
    decode_message,
    decode_replies,
    dumps,
    encode_message,
    encode_reply,
    loads,
)

# -- JSON ---------------------------------------------------------------------------------


@given(json_values)
def test_dumps_is_compact_utf8_json_that_loads_reads_back(value: Any) -> None:
    text = dumps(value)
    data = text.encode()  # UTF-8, with no lone surrogate in it
    assert byte_size(text) == len(data)
    if text.isascii():
        assert text == json.dumps(value, separators=(",", ":"), allow_nan=False)
    else:
        assert text == json.dumps(value, separators=(",", ":"), allow_nan=False,
                                  ensure_ascii=False)
    assert loads(text) == value == loads(data)


@pytest.mark.parametrize(("value", "size"), [
    (["é" * 1000], 2004),  # its UTF-8 bytes, not six-byte escapes: what a client sends
    ({"ジョブ": "実行"}, 22), (["😀"], 8), (["a\u0001"], 11),
])
def test_non_ascii_text_is_written_as_utf8_and_counted_in_bytes(value: Any, size: int) -> None:
    text = dumps(value)
    assert "\\u" not in text or "\u0001" in value[0]
    assert byte_size(text) == len(text.encode()) == size


def test_a_lone_surrogate_is_written_as_an_escape_not_refused() -> None:
    """UTF-8 cannot carry a lone surrogate: such a text is written in ASCII with escapes,
    as JSON allows, and reads back the same."""
    value = ["\ud800", "é"]
    text = dumps(value)
    assert text == '["\\ud800","\\u00e9"]' and byte_size(text) == len(text)
    assert loads(text.encode()) == value


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_refused_when_read(number: str) -> None:
    with pytest.raises(ParseError):
        loads(f"[1,{number}]")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_non_finite_numbers_are_never_written(value: Any) -> None:
    with pytest.raises(ValueError):
        dumps(value)


def test_a_value_that_contains_itself_is_a_value_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="contains itself"):
        dumps(cycle)
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps(object())


@pytest.mark.parametrize("text", [b"", b"[1,", b"[1] x", b"[1][2]", b"\xff", b"{'a':1}", "[1]\x00"])
def test_anything_but_one_strict_json_text_is_a_parse_error(text: bytes | str) -> None:
    with pytest.raises(ParseError):
        loads(text)


def test_whitespace_around_the_value_is_json_too() -> None:
    assert loads(b' \n[1, {"a": 2}]\r\n') == [1, {"a": 2}]
    assert loads(memoryview(b"[3]")) == [3]


# -- messages -----------------------------------------------------------------------------


def test_a_message_without_extras_is_its_three_parts() -> None:
    assert encode_message(Message("job:done", ("r.txt",), {"p": 3})) == '["job:done",["r.txt"],{"p":3}]'


def test_extras_carry_what_is_set_and_nothing_else() -> None:
    message = Message("job:done", (1,), {}, hops=2, uid="node-0000-message-1")
    text = encode_message(message, Identifier("job:log"), taken=("g1",), timeout=1.5)
    assert json.loads(text) == ["job:done", [1], {}, {
        "uid": "node-0000-message-1", "hops": 2, "reply_to": "job:log", "taken": ["g1"], "timeout": 1.5}]
    uid = "node-0000-message-2"
    assert json.loads(encode_message(Message("a:b", uid=uid))) == ["a:b", [], {}, {"uid": uid}]
    assert json.loads(encode_message(message, extras=False)) == ["job:done", [1], {}]


def test_a_message_sent_to_many_peers_is_encoded_once() -> None:
    message = Message("a:b", ([1, 2],), {}, uid="node-0000-message-3")
    assert encode_message(message) is encode_message(message)
    assert encode_message(message, Identifier("a:r")) != encode_message(message)


@pytest.mark.parametrize("arg", [object(), float("nan")])
def test_a_message_json_cannot_hold_is_refused_naming_it(arg: object) -> None:
    with pytest.raises((TypeError, ValueError), match="message a:b cannot be sent"):
        encode_message(Message("a:b", (arg,)))


@pytest.mark.parametrize("args, kwargs", [
    (({1: "a", "1": "b"},), {}),  # two keys that JSON writes alike: one was lost
    ((), {"opts": {True: "t", None: "n", 2.5: "f"}}),
    (([{"ok": 1}, {"deep": {3: "x"}}],), {}),
])
def test_a_dict_key_that_is_not_a_string_is_refused_naming_it(
        args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=r"message a:b cannot be sent.*a dict key"):
        encode_message(Message("a:b", args, kwargs, uid="node-0000-message-1"))


def test_string_keys_and_braces_in_strings_cross_as_they_are() -> None:
    message = Message("a:b", ("{not an object}", {"k": {"n": [1, {"m": 2}]}}), {"x": "{"})
    assert decode_message(loads(encode_message(message)))[0] == message


def test_decoding_gives_back_the_message_its_reply_to_and_its_extras() -> None:
    message = Message("job:done", ("x",), {"k": [1]}, hops=4, uid="node-0000-message-1")
    text = encode_message(message, Identifier("job:log"), taken=("g",), timeout=2)
    decoded, reply_to, extras = decode_message(loads(text))
    assert decoded == message and (decoded.hops, decoded.uid) == (4, "node-0000-message-1")
    assert reply_to == Identifier("job:log")
    assert extras["taken"] == ["g"] and extras["timeout"] == 2
    plain, reply_to, extras = decode_message(["a:b", [], {}])
    assert (plain.hops, plain.uid, reply_to, dict(extras)) == (0, None, None, {})


def test_unknown_extras_are_ignored() -> None:
    message, _, extras = decode_message(["a:b", [], {}, {"uid": "u" * 16, "future": True}])
    assert message.uid == "u" * 16 and extras["future"] is True


@pytest.mark.parametrize(("item", "error"), [
    ("a:b", "must be [identifier, args, kwargs]"),
    (["a:b", []], "must be [identifier, args, kwargs]"),
    ([1, [], {}], "identifier must be an identifier string"),
    (["a b", [], {}], "identifier:"),
    (["_local:x", [], {}], "is local"),
    (["a:b", {}, {}], "args must be an array"),
    (["a:b", [], []], "kwargs must be an object"),
    (["a:b", [], {}, []], "extras must be an object"),
    (["a:b", [], {}, {"uid": 1}], "uid must be a string"),
    (["a:b", [], {}, {"uid": "u" * 129}], "uid must be a string of 16 to 128 characters"),
    # a node delivers each uid once, whoever sends it: two clients that count their
    # uids, or send "", had each other's messages dropped as seen, answered "ok"
    (["a:b", [], {}, {"uid": ""}], "uid must be a string of 16 to 128 characters, unique among"),
    (["a:b", [], {}, {"uid": "u" * 15}], "uid must be a string of 16 to 128 characters"),
    (["a" * 300 + ":b", [], {}], "it is 302 characters long, over the limit of 256"),
    (["a:b", [], {}, {"hops": -1}], "hops must be an integer from 0 to 2147483647"),
    # a count of thousands of digits was taken, and its digits written whole to the log
    (["a:b", [], {}, {"hops": 10 ** 300}], "hops must be an integer from 0 to 2147483647"),
    (["a:b", [], {}, {"reply_to": "_x"}], "reply_to: '_x' is local"),
])
def test_what_is_not_a_message_is_refused_naming_the_part(item: Any, error: str) -> None:
    with pytest.raises(WireError, match=r"^messages\[2\]") as caught:
        decode_message(item, "messages[2]")
    assert error in str(caught.value)


# -- replies ------------------------------------------------------------------------------


def test_replies_cross_as_value_or_error() -> None:
    failed = ReplyError("KeyError", "'x'", "calc", "n1")
    entries = [encode_reply(3, "n1"), encode_reply(failed, "n1"), encode_reply(None, "n1")]
    assert entries == [{"value": 3}, {"error": failed.to_json()}, {"value": None}]
    assert decode_replies(loads(dumps(entries)), "peer") == [3, failed, None]


def test_a_reply_json_cannot_hold_becomes_a_reply_error_of_its_node() -> None:
    entry = encode_reply({1, 2}, "n1")
    assert decode_replies([entry], "peer") == [
        ReplyError("TypeError", "the reply set is not JSON", "", "n1")]


def test_a_reply_with_a_key_that_is_not_a_string_is_a_reply_error_naming_it() -> None:
    entry = encode_reply({"ok": {1: "a", "1": "b"}}, "n1")
    [error] = decode_replies([entry], "peer")
    assert isinstance(error, ReplyError) and error.exception_type == "TypeError"
    assert "a dict key 1 (int)" in error.message


@pytest.mark.parametrize("answer", [{"value": 1}, [1], [{"v": 1}], [{"error": "x"}]])
def test_a_malformed_answer_is_a_transport_error_naming_the_peer(answer: Any) -> None:
    with pytest.raises(TransportError, match="^peer answered ask with"):
        decode_replies(answer, "peer")


@pytest.mark.parametrize("text", [b'\xef\xbb\xbf{"a": [1]}', '\ufeff{"a": [1]}'])
def test_a_byte_order_mark_before_a_text_is_ignored(text: bytes | str) -> None:
    """RFC 8259 (8.1) lets a parser ignore one, which editors and some tools write before
    a file's JSON (a client sending such a file got a Parse error)."""
    assert loads(text) == {"a": [1]}


@pytest.mark.parametrize("text", [b"\xef\xbb\xbf\xef\xbb\xbf[1]", b"\xef\xbb\xbf", b"[1]\xef\xbb\xbf",
                                  "\ufeff\ufeff[1]"])
def test_a_byte_order_mark_anywhere_else_or_twice_is_a_parse_error(text: bytes | str) -> None:
    with pytest.raises(ParseError):
        loads(text)

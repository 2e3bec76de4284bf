"""The nesting limit of berryMQ's JSON (berrymq._nesting, berrymq.wire): a text nested
deeper than MAX_DEPTH is not read, a message nested deeper than MAX_MESSAGE_DEPTH is not
written, and whatever is read can be written again, from a thread deep in its stack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from berrymq.errors import ReplyError
from berrymq.message import Message
from berrymq.wire import (
    MAX_DEPTH,
    MAX_MESSAGE_DEPTH,
    NestedTooDeep,
    ParseError,
    decode_replies,
    dumps,
    encode_message,
    encode_reply,
    loads,
    nested_deeper,
)


def nest(depth: int, inner: Any = 0) -> Any:
    """``inner`` in ``depth`` arrays."""
    for _ in range(depth):
        inner = [inner]
    return inner


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


# strings full of what the measure looks at: brackets, quotes, backslashes
_tricky = st.text(alphabet='[]{}"\\ aé', max_size=8)
_values = st.recursive(
    st.none() | st.integers() | _tricky,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_tricky, children, max_size=3),
    max_leaves=40,
)


@given(_values, st.integers(0, 12))
def test_the_measure_is_the_nesting_of_the_value(value: Any, limit: int) -> None:
    for text in (dumps(value), json.dumps(value, ensure_ascii=False)):
        deeper = depth_of(value) > limit
        assert nested_deeper(text, limit) is deeper
        assert nested_deeper(text.encode(), limit) is deeper


@pytest.mark.parametrize("depth", [9, 200, 5000])  # past the passes that strip pairs
def test_deep_chains_are_measured_too(depth: int) -> None:
    text = '{"k":' * depth + '"]]}}"' + "}" * depth
    assert nested_deeper(text, depth - 1) and not nested_deeper(text, depth)
    assert nested_deeper("[" * depth + "]" * depth, depth - 1)


def test_a_text_nested_past_the_limit_is_a_parse_error_naming_it() -> None:
    assert loads(dumps(nest(MAX_DEPTH))) == nest(MAX_DEPTH)
    for text in (dumps(nest(MAX_DEPTH + 1)), '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1),
                 "[" * 980 + "]" * 980):
        with pytest.raises(NestedTooDeep, match=f"more than {MAX_DEPTH} levels") as caught:
            loads(text.encode())
        assert isinstance(caught.value, ParseError) and caught.value.limit == MAX_DEPTH


def test_brackets_inside_strings_do_not_count() -> None:
    value = ["[" * 500, '\\"' + "{" * 500, {"]" * 300: "\\"}]
    assert loads(dumps(value)) == value


def _in_a_deep_stack(frames: int, call: Any) -> Any:
    return call() if frames == 0 else _in_a_deep_stack(frames - 1, call)


def test_what_is_read_can_be_written_again_from_a_deep_stack() -> None:
    # the deepest text read, in the deepest wire form around it (a batch of send_messages),
    # written by a thread already 500 frames down: Python's limit is 1000 in all
    deepest = nest(4, loads(dumps(nest(MAX_DEPTH))))
    assert _in_a_deep_stack(500, lambda: dumps(deepest)) == dumps(deepest)


def test_a_message_too_deep_to_be_read_back_is_not_written() -> None:
    # [identifier, args, kwargs]: args is level 2, so an argument may nest 122 levels
    fits = Message("a:b", (nest(MAX_MESSAGE_DEPTH - 2),))
    assert loads(encode_message(fits))[1] == [nest(MAX_MESSAGE_DEPTH - 2)]
    with pytest.raises(ValueError, match=f"message a:b cannot be sent .* more than {MAX_MESSAGE_DEPTH}"):
        encode_message(Message("a:b", (nest(MAX_MESSAGE_DEPTH - 1),)))


def test_a_reply_too_deep_for_an_asker_becomes_a_reply_error() -> None:
    assert encode_reply(nest(MAX_MESSAGE_DEPTH), "n1") == {"value": nest(MAX_MESSAGE_DEPTH)}
    entry = encode_reply(nest(MAX_MESSAGE_DEPTH + 1), "n1")
    assert decode_replies([entry], "peer") == [ReplyError(
        "TypeError", f"the reply is nested more than {MAX_MESSAGE_DEPTH} levels deep, the limit",
        "", "n1")]

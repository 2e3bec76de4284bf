"""berrymq_jsonrpc.sizes: what a client's outbox leaves out of a message's wire form is
worked out without encoding the message again, and must agree with the rule's own measure
(the JSON of [identifier, args, kwargs, extras] with a uid, without hops) for every form
the wire takes: with or without a uid, hops, reply_to, and text that is not ASCII."""

from __future__ import annotations

from typing import Any

from berrymq_jsonrpc.sizes import measure, unmeasured
from hypothesis import given
from hypothesis import strategies as st

from berrymq.identifier import Identifier
from berrymq.message import new_message
from berrymq.wire import byte_size, encode_message

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children,
                                                                     max_size=3),
    max_leaves=8)


@given(args=st.lists(_values, max_size=3), kwargs=st.dictionaries(st.text(max_size=5), _values,
                                                                  max_size=3),
       hops=st.sampled_from([0, 1, 9, 10, 123, 10**6]),
       uid=st.sampled_from([None, "0123456789abcdefghij", "x", "ü" * 30]),
       reply_to=st.sampled_from([None, "job:answer", "jöb:ä"]))
def test_unmeasured_agrees_with_the_measure(args: list[Any], kwargs: dict[str, Any], hops: int,
                                            uid: str | None, reply_to: str | None) -> None:
    message = new_message((Identifier("jöb:done"), tuple(args), kwargs, hops, uid))
    to = None if reply_to is None else Identifier(reply_to)
    text = encode_message(message, to)
    assert byte_size(text) - unmeasured(text, message, to) == measure(message, to)


def test_a_lone_surrogate_is_measured_as_it_is_sent() -> None:
    """A lone surrogate makes the wire text ASCII with escapes; the measure is made the
    same way, so the two still agree."""
    for hops in (0, 3):
        message = new_message((Identifier("a:b"), ("\ud800",), {}, hops, None))
        text = encode_message(message, None)
        assert text.isascii()
        assert byte_size(text) - unmeasured(text, message, None) == measure(message, None)

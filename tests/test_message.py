"""SPEC 2: the Message receivers get."""

from __future__ import annotations

import pickle
import types
from collections.abc import Callable

import pytest
from helpers import capture

from berrymq import (
    Bus,
    Message,
    twitter,
)


def test_attributes(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    berrymq_bus.subscribe("job@ops:*", got.append, weak=False)
    berrymq_bus.subscribe("job:*", got.append, weak=False)
    berrymq_bus.twitter("job@ops:done", 1, [2], user="ada", n=3)
    berrymq_bus.twitter("job:done")
    message, plain = got
    assert message.id == "job:done"
    assert (message.name, message.action, message.namespace) == ("job", "done", "ops")
    assert message.args == (1, [2])
    assert type(message.args) is tuple
    assert message.kwargs == {"user": "ada", "n": 3}
    assert type(message.kwargs) is dict
    assert message.user == "ada" and message.n == 3
    # apply() calls with the keyword arguments only (the positional ones are not passed).
    assert message.apply(lambda user, n: user.upper() * n) == "ADAADAADA"
    assert message.apply(lambda **kw: kw) == {"user": "ada", "n": 3}
    assert message.hops == 0
    assert (plain.id, plain.namespace) == ("job:done", None)


def test_id_as_sent_and_namespace(berrymq_bus: Bus) -> None:
    got = capture("*@ops")
    twitter("job@ops:go")
    twitter("job@ops")
    assert [(m.id, m.name, m.action, m.namespace) for m in got] == [
        ("job:go", "job", "go", "ops"),
        ("job:*", "job", "*", "ops"),
    ]


def test_default_namespace_is_none_and_missing_attribute_is_clear() -> None:
    message = Message("a:b", (), {"x": 1})
    assert message.namespace is None
    with pytest.raises(AttributeError, match="no attribute or keyword argument 'nope'"):
        _ = message.nope


def test_kwargs_named_like_tuple_methods(berrymq_bus: Bus) -> None:
    got = capture("a:b")
    twitter("a:b", count=3, index=4)
    assert got[0].count == 3
    assert got[0].index == 4


def test_read_only() -> None:
    message = Message("a:b", (1,), {"k": 2})
    for attr in ("id", "name", "action", "namespace", "args", "kwargs"):
        with pytest.raises(AttributeError):
            setattr(message, attr, "x")
    with pytest.raises(TypeError):
        message[1] = (2,)  # type: ignore[index]


def test_equality_repr_and_pickle() -> None:
    message = Message("a:b", (1,), {"k": "v"})
    assert message == Message("a:b", (1,), {"k": "v"})
    assert message != Message("a:b", (2,), {"k": "v"})
    assert "a:b" in repr(message)
    assert pickle.loads(pickle.dumps(message)) == message


@pytest.mark.parametrize("uid", ["", "order-17", "u" * 129])
def test_a_uid_no_node_would_take_is_refused_where_the_message_is_made(uid: str) -> None:
    """A node takes uids of 16 to 128 characters only: one shorter or longer, published
    to a peer, was refused there with the whole batch it went in, and the link closed."""
    with pytest.raises(ValueError, match="uid of message job:done must be 16 to 128 characters"):
        Message("job:done", (), {}, 0, uid)
    assert Message("job:done", (), {}, 0, "u" * 16).uid == "u" * 16


@pytest.mark.parametrize(("make", "refusal"), [
    (lambda: Message("job:done", "abc"), "args of message job:done must be a tuple of its "
     "positional arguments, got 'abc'"),
    (lambda: Message("job:done", (), [1]), "kwargs of message job:done must be a dict, got \\[1\\]"),
    (lambda: Message("job:done", (), {}, "x"), "hops of message job:done must be an int of 0 "
     "or more, got 'x'"),
    (lambda: Message("job:done", (), {}, -1), "hops of message job:done must be an int"),
    (lambda: Message("job:done", (), {}, 0, 7), "uid of message job:done must be a str or None"),
    (lambda: Bus(name="p").publish("job:done"), "publish\\(\\) takes a berrymq.Message, got "
     "'job:done'; to send by identifier, use twitter\\(\\)"),
])
def test_the_constructor_and_publish_refuse_what_breaks_a_send_later(
        make: Callable[[], object], refusal: str) -> None:
    """``Message("job:done", "abc").args`` was ``('a', 'b', 'c')``; a list for kwargs, hops
    "x" or a string given to ``publish`` failed later, deep inside (an outside audit)."""
    with pytest.raises(TypeError, match=refusal):
        make()
    assert Message("job:done", [1], {"a": 1}, 2, "u" * 16).args == (1,)  # a list is taken
    assert Message("job:done", (), types.MappingProxyType({"a": 1})).a == 1  # any mapping

"""SPEC 2: the Message receivers get."""

from __future__ import annotations

import pickle

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
    berrymq_bus.twitter("job@ops:done", 1, [2], user="ada")
    (message,) = got
    assert message.id == "job:done"
    assert (message.name, message.action, message.namespace) == ("job", "done", "ops")
    assert message.args == (1, [2])
    assert isinstance(message.args, tuple)
    assert message.kwargs == {"user": "ada"}
    assert message.user == "ada"
    assert message.apply(lambda user: user.upper()) == "ADA"
    assert message.hops == 0


def test_default_namespace_is_none_and_missing_attribute_is_clear() -> None:
    message = Message("a:b", (), {"x": 1})
    assert message.namespace is None
    with pytest.raises(AttributeError, match="no attribute or keyword argument 'nope'"):
        _ = message.nope


def test_read_only() -> None:
    message = Message("a:b", (1,))
    with pytest.raises(AttributeError):
        message.args = (2,)  # type: ignore[misc]
    with pytest.raises(TypeError):
        message[1] = (2,)  # type: ignore[index]


def test_equality_repr_and_pickle() -> None:
    message = Message("a:b", (1,), {"k": "v"})
    assert message == Message("a:b", (1,), {"k": "v"})
    assert message != Message("a:b", (2,), {"k": "v"})
    assert "a:b" in repr(message)
    assert pickle.loads(pickle.dumps(message)) == message


# -- SPEC 2, black-box: messages -----------------------------------------------------------

def test_message_attributes(berrymq_bus: Bus) -> None:
    got = capture("*")
    twitter("job:done", 1, [2], user="ada", n=3)
    (message,) = got
    assert message.id == "job:done"
    assert message.name == "job"
    assert message.action == "done"
    assert message.namespace is None
    assert message.args == (1, [2]) and type(message.args) is tuple
    assert message.kwargs == {"user": "ada", "n": 3} and type(message.kwargs) is dict
    assert message.user == "ada" and message.n == 3
    with pytest.raises(AttributeError, match="nope"):
        _ = message.nope


def test_message_id_as_sent_and_namespace(berrymq_bus: Bus) -> None:
    got = capture("*@ops")
    twitter("job@ops:go")
    twitter("job@ops")
    assert [(m.id, m.name, m.action, m.namespace) for m in got] == [
        ("job:go", "job", "go", "ops"),
        ("job:*", "job", "*", "ops"),
    ]


def test_message_attributes_are_read_only(berrymq_bus: Bus) -> None:
    got = capture("a:b")
    twitter("a:b", 1, k=2)
    message = got[0]
    for attr in ("id", "name", "action", "namespace", "args", "kwargs"):
        with pytest.raises(AttributeError):
            setattr(message, attr, "x")


def test_message_apply(berrymq_bus: Bus) -> None:
    got = capture("a:b")
    twitter("a:b", 99, x=1, y=2)

    def add(x: int, y: int) -> int:
        return x * 10 + y

    assert got[0].apply(add) == 12
    assert got[0].apply(lambda **kw: kw) == {"x": 1, "y": 2}


def test_message_kwargs_named_like_tuple_methods(berrymq_bus: Bus) -> None:
    got = capture("a:b")
    twitter("a:b", count=3, index=4)
    assert got[0].count == 3
    assert got[0].index == 4

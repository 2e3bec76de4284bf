"""SPEC 2: the Message receivers get."""

from __future__ import annotations

import pickle

import pytest

from berrymq import Bus, Message


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

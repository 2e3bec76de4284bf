"""berrymq.errors: the exception tree users catch, and what each exception carries."""

from __future__ import annotations

import pickle
import queue

import pytest

import berrymq
from berrymq import (
    BerryMQError,
    ConnectionClosed,
    InvalidIdentifier,
    MessageTooLarge,
    PluginError,
    PluginNotAvailable,
    QueueClosed,
    QueueFull,
    RemoteError,
    ReplyError,
    SettingsError,
    TransportError,
)


@pytest.mark.parametrize(("error", "bases"), [
    (InvalidIdentifier, (BerryMQError, ValueError)),
    (SettingsError, (BerryMQError,)),
    (PluginNotAvailable, (BerryMQError,)),
    (PluginError, (BerryMQError,)),
    (QueueFull, (BerryMQError, queue.Full)),
    (QueueClosed, (BerryMQError, queue.Empty)),
    (ReplyError, (BerryMQError,)),
    (TransportError, (BerryMQError,)),
    (ConnectionClosed, (TransportError,)),
    (MessageTooLarge, (TransportError,)),
    (RemoteError, (TransportError,)),
])
def test_the_tree_lets_callers_catch_by_family(error: type[Exception],
                                               bases: tuple[type[Exception], ...]) -> None:
    """Code written for the standard library keeps working: a full queue is a
    ``queue.Full``, a bad identifier a ``ValueError``, a closed queue a ``queue.Empty``."""
    assert issubclass(error, bases)


def test_empty_is_the_standard_library_empty() -> None:
    assert berrymq.Empty is queue.Empty


def test_invalid_identifier_names_the_text_and_the_reason() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        berrymq.twitter("te*:run")
    error = caught.value
    assert error.text == "te*:run" and error.reason
    assert str(error) == f"invalid identifier 'te*:run': {error.reason}"


@pytest.mark.parametrize(("path", "line", "text"), [
    (None, None, "bad value"),
    ("berrymq.toml", None, "berrymq.toml: bad value"),
    ("berrymq.toml", 3, "berrymq.toml:3: bad value"),
])
def test_a_settings_error_says_where(path: str | None, line: int | None, text: str) -> None:
    error = SettingsError("bad value", path, line)
    assert str(error) == text and (error.path, error.line, error.problem) == (path, line, "bad value")


def test_a_reply_error_goes_through_json_and_pickle_unchanged() -> None:
    error = ReplyError("ValueError", "boom", "calc.add", "node-1")
    assert error.to_json() == {"type": "ValueError", "message": "boom",
                               "receiver": "calc.add", "node": "node-1"}
    assert ReplyError.from_json(error.to_json()) == error
    assert str(error) == "calc.add raised ValueError: boom"
    assert error != ReplyError("ValueError", "boom", "calc.add", "node-2")
    assert pickle.loads(pickle.dumps(error)) == error


def test_a_reply_error_from_incomplete_json_has_defaults() -> None:
    assert ReplyError.from_json({}).to_json() == {"type": "Error", "message": "",
                                                  "receiver": "", "node": ""}


def test_a_remote_error_keeps_the_json_rpc_error_object() -> None:
    error = RemoteError(-32001, "Unknown or expired token", {"token": "x"})
    assert (error.code, error.message, error.data) == (-32001, "Unknown or expired token", {"token": "x"})
    assert str(error) == "remote error -32001: Unknown or expired token"


def test_plugin_not_available_names_the_plugin() -> None:
    error = PluginNotAvailable("scheme 'nats'", "berrymq-nats", "pip install berrymq-nats")
    assert error.plugin == "berrymq-nats" and str(error) == "scheme 'nats': pip install berrymq-nats"


@pytest.mark.parametrize("error", [
    InvalidIdentifier("te*:run", "a wildcard must stand alone"),
    SettingsError("bad value", "berrymq.toml", 3),
    PluginNotAvailable("scheme 'nats'", "berrymq-nats", "pip install berrymq-nats"),
    PluginError("plugin 'x' raised", "x", "berrymq_declare_settings"),
    ReplyError("ValueError", "boom", "calc.add", "node-1"),
    RemoteError(-32602, "Invalid params", {"why": "no token"}),
    QueueFull("the queue of job:* is full"),
    ConnectionClosed("tcp://127.0.0.1:1: the peer closed the connection"),
], ids=lambda e: type(e).__name__)
def test_every_error_survives_pickling(error: BerryMQError) -> None:
    """Replies and errors cross process pools and multiprocessing queues as they are."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert vars(copy) == vars(error)

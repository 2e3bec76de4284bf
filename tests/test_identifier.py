"""SPEC 1: parsing, canonical text, matching, namespaces, local names, bad identifiers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

import berrymq
from berrymq import (
    Bus,
    Identifier,
    InvalidIdentifier,
    Message,
    Queue,
    auto_twitter,
    following,
    following_function,
    regist_function,
    regist_method,
    talk,
    twitter,
    twitter_exception,
)


@pytest.mark.parametrize(
    ("text", "name", "action", "namespace", "canonical"),
    [
        ("test:run", "test", "run", None, "test:run"),
        ("test:*", "test", "*", None, "test:*"),
        ("*:run", "*", "run", None, "*:run"),
        ("*:*", "*", "*", None, "*:*"),
        ("*", "*", "*", None, "*:*"),
        ("test", "test", "*", None, "test:*"),
        ("job@ops:go", "job", "go", "ops", "job@ops:go"),
        ("job@ops", "job", "*", "ops", "job@ops:*"),
        ("ünïcode:ok", "ünïcode", "ok", None, "ünïcode:ok"),
    ],
)
def test_parse(text: str, name: str, action: str, namespace: str | None, canonical: str) -> None:
    ident = Identifier(text)
    assert (ident.name, ident.action, ident.namespace) == (name, action, namespace)
    assert str(ident) == canonical
    assert ident.id == f"{name}:{action}"
    assert ident.is_local is False
    # The canonical text parses back to the same identifier: "test" is "test:*".
    assert Identifier(canonical) == ident


def test_parse_is_cached_and_immutable() -> None:
    assert Identifier("cache:me") is Identifier("cache:me")
    assert Identifier("cache:me") == Identifier("cache:me")
    assert hash(Identifier("test")) == hash(Identifier("test:*"))
    with pytest.raises(AttributeError):
        Identifier("x:y").name = "z"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("test:run", "test:run", True),
        ("task:*", "task:run", True),
        ("task:run", "task:*", True),
        ("*:stop", "a:stop", True),
        ("a:stop", "*:stop", True),
        ("*:stop", "a:*", True),
        ("*", "x:y", True),
        ("test", "test:anything", True),
        ("test", "other:anything", False),
        ("a:run", "b:run", False),
        ("a:run", "a:stop", False),
        ("*:run", "a:stop", False),
        ("job@ops:go", "job@ops:go", True),
        ("job@ops:go", "job:go", False),
        ("job@ops:go", "job@ops:*", True),
        ("job@ops:*", "*@ops:go", True),
        ("job@ops:go", "job@dev:go", False),
        ("*@ops", "x@ops:y", True),
        ("*", "x@ops:y", False),
    ],
)
def test_matches_is_symmetric(a: str, b: str, expected: bool) -> None:
    assert Identifier(a).matches(b) is expected  # a string is accepted too
    assert Identifier(a).matches(Identifier(b)) is expected
    assert Identifier(b).matches(Identifier(a)) is expected


def test_receiver_pattern_and_sender_wildcard(berrymq_bus: Bus) -> None:
    got: list[tuple[str, str]] = []

    @following_function("task:*")
    def task_any(message: Message) -> None:
        got.append(("task:*", message.id))

    @following_function("a:stop")
    def a_stop(message: Message) -> None:
        got.append(("a:stop", message.id))

    @following_function("b:stop")
    def b_stop(message: Message) -> None:
        got.append(("b:stop", message.id))

    @following_function("a:go")
    def a_go(message: Message) -> None:
        got.append(("a:go", message.id))

    twitter("task:run")
    assert got == [("task:*", "task:run")]
    got.clear()
    twitter("*:stop")
    assert got == [("task:*", "*:stop"), ("a:stop", "*:stop"), ("b:stop", "*:stop")]
    got.clear()
    twitter("other:thing")
    assert got == []


def test_namespaces_partition_the_bus(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("job:go", lambda m: got.append("default job:go"), weak=False)
    regist_function("*", lambda m: got.append("default *"), weak=False)
    regist_function("job@ops:go", lambda m: got.append("ops job:go"), weak=False)
    regist_function("*@ops", lambda m: got.append("ops *"), weak=False)
    regist_function("*@dev:*", lambda m: got.append("dev *"), weak=False)

    twitter("job@ops:go")
    assert got == ["ops job:go", "ops *"]
    got.clear()
    twitter("job:go")
    assert got == ["default job:go", "default *"]
    got.clear()
    twitter("*@ops:go")
    assert got == ["ops job:go", "ops *"]


def test_local_names(berrymq_bus: Bus) -> None:
    assert Identifier("_private:x").is_local
    assert Identifier("_private").is_local
    assert Identifier("_x@ns").is_local
    assert not Identifier("public:_x").is_local  # it is the *name* that counts
    assert not Identifier("*:x").is_local
    got: list[str] = []
    regist_function("_private:*", lambda m: got.append(m.id), weak=False)
    twitter("_private:x")
    assert got == ["_private:x"]  # local messages are delivered locally as usual
    with pytest.raises(ValueError, match="_private"):
        berrymq.send_message("_private:x")  # ... and refused by the inter-process API


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (None, "expected a str"),
        (42, "expected a str"),
        (b"a:b", "expected a str"),
        ("", "empty"),
        (":run", "name is empty"),
        ("a:", "action is empty"),
        (":", "is empty"),
        ("a:b:c", "more than one ':'"),
        ("a::b", "more than one ':'"),
        ("a b:c", "whitespace"),
        (" a", "whitespace"),
        ("a:b ", "whitespace"),
        ("a:b\n", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\u00a0b", "whitespace"),
        ("a\x00:b", "control"),
        ("a\x7f", "control"),
        ("\ud800:b", "not valid Unicode text: it holds a lone surrogate (U+D800)"),
        ("a:b\udfff", "lone surrogate (U+DFFF)"),
        ("te*:run", "partial wildcard"),
        ("*t", "partial wildcard"),
        ("t*st:run", "partial wildcard"),
        ("test:r*", "partial wildcard"),
        ("**", "partial wildcard"),
        ("test:**", "partial wildcard"),
        ("a@:b", "namespace after '@' is empty"),
        ("a@b@c:d", "not a plain name"),
        ("a@*:d", "not a plain name"),
        ("a:b@c", "belongs after the name"),
        ("@ns:x", "name is empty"),
    ],
)
def test_invalid_identifiers_name_the_text(bad: object, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        Identifier(bad)  # type: ignore[arg-type]
    assert reason in str(info.value)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_lone_surrogate_is_named_as_such_not_as_whitespace() -> None:
    """A JSON escape of half a UTF-16 pair, as a client may send it, is refused for what
    it is (it was refused as 'whitespace or control characters', which it holds none of)."""
    text = json.loads('"\\ud800:b"')
    with pytest.raises(InvalidIdentifier) as info:
        Identifier(text)
    assert "lone surrogate" in str(info.value)
    assert "whitespace" not in str(info.value) and "control" not in str(info.value)


def test_an_identifier_is_at_most_256_characters_and_a_longer_one_is_shown_cut() -> None:
    longest = "n" * 200 + ":" + "a" * 55
    assert Identifier(longest).text == longest
    with pytest.raises(InvalidIdentifier) as info:
        Identifier(longest + "a")
    assert str(info.value) == (f"invalid identifier {'n' * 64 + '...'!r}: it is 257 "
                               "characters long, over the limit of 256")
    assert info.value.text == longest + "a"  # the whole text, for a program to read
    assert Identifier("n" * 254).text == "n" * 254 + ":*"  # the canonical text counts
    with pytest.raises(InvalidIdentifier) as info:
        Identifier("n" * 255)  # "nnn...:*", which a peer or a pickle could not take back
    assert info.value.reason == ("it is 255 characters long, 257 with the ':*' that a missing "
                                 "action counts as, over the limit of 256")


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: twitter("te*:run"), "'te*:run'"),
        (lambda: twitter(["a:b"]), "['a:b']: expected a str, got list"),  # type: ignore[arg-type]
        (lambda: twitter(":run", 1, x=2), "':run'"),
        (lambda: following_function("a:b:c"), "'a:b:c'"),
        (lambda: regist_function(":x", lambda m: None, weak=False), "':x'"),
        (lambda: regist_method("", object().__str__), "''"),
        (lambda: Queue(""), "''"),
        (lambda: Queue("x*", shared=True), "'x*'"),
        (lambda: talk("ok:x", "bad:"), "'bad:'"),
        (lambda: talk("bad:", "ok:x"), "'bad:'"),
        (lambda: auto_twitter("te*"), "'te*'"),
        (lambda: twitter_exception("a:b:c"), "'a:b:c'"),
        (lambda: following("*x"), "'*x'"),
        (lambda: berrymq.ask("a:b:c"), "'a:b:c'"),
        (lambda: Identifier("a:b").matches("a:b:c"), "'a:b:c'"),
    ],
    ids=["twitter", "twitter-list", "twitter-args", "following_function", "regist_function",
         "regist_method", "Queue", "Queue-shared", "talk-callback", "talk", "auto_twitter",
         "twitter_exception", "following", "ask", "matches"],
)
def test_bad_identifier_raised_at_the_call(berrymq_bus: Bus, call: Callable[[], object],
                                           named: str) -> None:
    with pytest.raises(InvalidIdentifier, match=re.escape(named)):
        call()


def test_invalid_identifier_registers_nothing(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    with pytest.raises(InvalidIdentifier):
        regist_function("bad:", got.append, weak=False)
    twitter("bad:x")
    twitter("*")
    assert got == []

"""SPEC 1: parsing, canonical text, matching, namespaces, local names, bad identifiers."""

from __future__ import annotations

from typing import Any

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


def test_parse_is_cached_and_immutable() -> None:
    assert Identifier("cache:me") is Identifier("cache:me")
    assert Identifier("cache:me") == Identifier("cache:me")
    assert hash(Identifier("test")) == hash(Identifier("test:*"))
    with pytest.raises(AttributeError):
        Identifier("x:y").name = "z"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("task:*", "task:run", True),
        ("task:run", "task:*", True),
        ("*:stop", "a:stop", True),
        ("a:stop", "*:stop", True),
        ("*", "x:y", True),
        ("test", "test:anything", True),
        ("a:run", "b:run", False),
        ("a:run", "a:stop", False),
        ("*:run", "a:stop", False),
        ("job@ops:go", "job:go", False),
        ("job@ops:go", "job@ops:*", True),
        ("job@ops:go", "job@dev:go", False),
        ("*@ops", "x@ops:y", True),
        ("*", "x@ops:y", False),
    ],
)
def test_matches_is_symmetric(a: str, b: str, expected: bool) -> None:
    assert Identifier(a).matches(b) is expected
    assert Identifier(b).matches(Identifier(a)) is expected


def test_local_names() -> None:
    assert Identifier("_private:x").is_local
    assert Identifier("_x@ns").is_local
    assert not Identifier("public:_x").is_local
    assert not Identifier("*:x").is_local


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (None, "expected a str"),
        (42, "expected a str"),
        (b"a:b", "expected a str"),
        ("", "empty"),
        (":run", "name is empty"),
        ("a:", "action is empty"),
        ("a:b:c", "more than one ':'"),
        ("a b:c", "whitespace"),
        ("a:b\n", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\x00:b", "control"),
        ("te*:run", "partial wildcard"),
        ("test:r*", "partial wildcard"),
        ("**", "partial wildcard"),
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


def test_bad_identifier_raised_at_the_call(berrymq_bus: object) -> None:
    with pytest.raises(InvalidIdentifier, match="'te\\*:run'"):
        berrymq.twitter("te*:run")
    with pytest.raises(InvalidIdentifier, match="expected a str, got list"):
        berrymq.twitter(["a:b"])  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifier):
        berrymq.following_function("a:b:c")
    with pytest.raises(InvalidIdentifier):
        berrymq.Queue("")
    with pytest.raises(InvalidIdentifier):
        berrymq.regist_function(":x", lambda m: None, weak=False)


# -- SPEC 1, black-box: identifiers --------------------------------------------------------

TABLE = [
    # written, name, action, namespace, canonical
    ("test:run", "test", "run", None, "test:run"),
    ("test:*", "test", "*", None, "test:*"),
    ("*:run", "*", "run", None, "*:run"),
    ("*:*", "*", "*", None, "*:*"),
    ("*", "*", "*", None, "*:*"),
    ("test", "test", "*", None, "test:*"),
    ("job@ops:go", "job", "go", "ops", "job@ops:go"),
]


@pytest.mark.parametrize(("text", "name", "action", "namespace", "canonical"), TABLE)
def test_identifier_table(text: str, name: str, action: str, namespace: str | None,
                          canonical: str) -> None:
    ident = Identifier(text)
    assert (ident.name, ident.action, ident.namespace) == (name, action, namespace)
    assert str(ident) == canonical
    assert ident.is_local is False
    assert Identifier(str(ident)) == ident  # the canonical text parses back to the same


def test_identifier_missing_action_means_wildcard() -> None:
    assert Identifier("test") == Identifier("test:*")
    assert Identifier("*") == Identifier("*:*")
    assert hash(Identifier("test")) == hash(Identifier("test:*"))


MATCHES = [
    ("test:run", "test:run", True),
    ("test:*", "test:run", True),
    ("test:*", "test:stop", True),
    ("*:run", "test:run", True),
    ("*:run", "test:stop", False),
    ("*:*", "x:y", True),
    ("*", "x:y", True),
    ("test", "test:anything", True),
    ("test", "other:anything", False),
    ("a:stop", "*:stop", True),
    ("a:run", "b:run", False),
    ("a:run", "a:stop", False),
    ("*:stop", "a:*", True),
    ("job@ops:go", "job@ops:go", True),
    ("job@ops:*", "*@ops:go", True),
    ("job@ops:go", "job:go", False),
    ("*", "job@ops:go", False),
    ("job@ops:go", "job@dev:go", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), MATCHES)
def test_matching_is_symmetric(a: str, b: str, expected: bool) -> None:
    assert Identifier(a).matches(Identifier(b)) is expected
    assert Identifier(b).matches(Identifier(a)) is expected
    assert Identifier(a).matches(b) is expected  # a string is accepted too


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


def test_local_names_black_box(berrymq_bus: Bus) -> None:
    assert Identifier("_secret:x").is_local
    assert Identifier("_secret").is_local
    assert Identifier("_x@ops:y").is_local
    assert not Identifier("secret:_x").is_local  # it is the *name* that counts
    got: list[str] = []
    regist_function("_secret:*", lambda m: got.append(m.id), weak=False)
    twitter("_secret:x")
    assert got == ["_secret:x"]  # local messages are delivered locally as usual
    with pytest.raises(ValueError, match="_secret"):
        berrymq.send_message("_secret:x")  # ... and refused by the inter-process API


BAD_IDENTIFIERS = [
    (123, "not a string"),
    (None, "not a string"),
    (b"a:b", "bytes"),
    ("", "empty"),
    (":run", "empty name"),
    ("a:", "empty action"),
    (":", "both empty"),
    ("a:b:c", "more than one colon"),
    ("a::b", "more than one colon"),
    (" a", "leading space"),
    ("a b", "inner space"),
    ("a:b ", "trailing space"),
    ("a\tb", "tab"),
    ("a\n", "newline"),
    ("a\x00", "NUL"),
    ("a\x7f", "DEL"),
    ("a\u00a0b", "no-break space"),
    ("te*", "partial wildcard in name"),
    ("*t", "partial wildcard in name"),
    ("t*st:run", "partial wildcard in name"),
    ("test:r*", "partial wildcard in action"),
    ("test:**", "double wildcard"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_IDENTIFIERS)
def test_invalid_identifier(bad: Any, why: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        Identifier(bad)
    assert isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value), f"the error must name the text: {info.value}"


@pytest.mark.parametrize(
    "call",
    [
        lambda: twitter("te*:run"),
        lambda: twitter(":run", 1, x=2),
        lambda: following_function("a:b:c"),
        lambda: regist_function("a:", print, weak=False),
        lambda: regist_method("", object().__str__),
        lambda: Queue("a b"),
        lambda: Queue("x*", shared=True),
        lambda: talk("ok:x", "bad:"),
        lambda: talk("bad:", "ok:x"),
        lambda: auto_twitter("te*"),
        lambda: twitter_exception("a:b:c"),
        lambda: following("*x"),
        lambda: berrymq.ask("a:b:c"),
        lambda: Identifier("a:b").matches("a:b:c"),
    ],
    ids=["twitter", "twitter-args", "following_function", "regist_function", "regist_method",
         "Queue", "Queue-shared", "talk-callback", "talk", "auto_twitter",
         "twitter_exception", "following", "ask", "matches"],
)
def test_invalid_identifier_raised_at_the_call(berrymq_bus: Bus, call: Any) -> None:
    with pytest.raises(InvalidIdentifier):
        call()


def test_invalid_identifier_registers_nothing(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    with pytest.raises(InvalidIdentifier):
        regist_function("bad:", got.append, weak=False)
    twitter("bad:x")
    twitter("*")
    assert got == []

"""SPEC 1: parsing, canonical text, matching, namespaces, local names, bad identifiers."""

from __future__ import annotations

import pytest

from berrymq import Identifier, InvalidIdentifier


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
    import berrymq

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

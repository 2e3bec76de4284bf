"""The identifier-to-subject mapping, without a server: escaping and symmetric wildcards."""

from __future__ import annotations

import pytest
from berrymq_nats.subjects import SubjectMap, check_prefix, escape_token, minimize, unescape_token
from hypothesis import given
from hypothesis import strategies as st

from berrymq import Identifier


def nats_matches(subscription: str, subject: str) -> bool:
    """NATS's own rule for a subscription subject (``*`` one token, ``>`` the rest)."""
    subs, toks = subscription.split("."), subject.split(".")
    for index, token in enumerate(subs):
        if token == ">":
            return len(toks) > index
        if index >= len(toks) or (token != "*" and token != toks[index]):
            return False
    return len(subs) == len(toks)


def test_publish_subjects() -> None:
    m = SubjectMap()
    assert m.subject(Identifier("job:stop")) == "berrymq.~.job.stop"
    assert m.subject(Identifier("*:stop")) == "berrymq.~.%2A.stop"
    assert m.subject(Identifier("job@ops:go")) == "berrymq.ops.job.go"
    assert SubjectMap("app.prod").subject(Identifier("a:b")) == "app.prod.~.a.b"


def test_reserved_characters_are_escaped() -> None:
    m = SubjectMap()
    subject = m.subject(Identifier("a.b>c@n.s:x%y~"))
    assert subject == "berrymq.n%2Es.a%2Eb%3Ec.x%25y%7E"
    assert m.subject(Identifier("café:ünï")) == "berrymq.~.caf%C3%A9.%C3%BCn%C3%AF"
    for token in subject.split("."):
        assert token and not set(token) & set("*> \t")


@pytest.mark.parametrize("text", ["plain", "a.b", "*", ">", "%41", "~", "ünïcødé", "x y", "日本"])
def test_escape_round_trip(text: str) -> None:
    token = escape_token(text)
    assert token.isascii() and "." not in token and "*" not in token and ">" not in token
    assert unescape_token(token) == text


def test_interest_table() -> None:
    m = SubjectMap()
    assert m.interest(Identifier("job:stop")) == (
        "berrymq.~.job.stop", "berrymq.~.%2A.stop", "berrymq.~.job.%2A", "berrymq.~.%2A.%2A")
    assert m.interest(Identifier("job:*")) == ("berrymq.~.job.*", "berrymq.~.%2A.*")
    assert m.interest(Identifier("*:stop")) == ("berrymq.~.*.stop", "berrymq.~.*.%2A")
    assert m.interest(Identifier("*")) == ("berrymq.~.*.*",)


def test_minimize_drops_covered_subjects() -> None:
    m = SubjectMap()
    subjects = set(m.interest(Identifier("job:stop"))) | set(m.interest(Identifier("job:*")))
    assert minimize(subjects) == {"berrymq.~.job.*", "berrymq.~.%2A.*"}
    assert minimize({"a.*.*", "a.b.c", "a.b.*"}) == {"a.*.*"}


@pytest.mark.parametrize("prefix", ["", "a..b", "a.*", "a.>", "a b", ".a"])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="subject_prefix"):
        check_prefix(prefix)


names = st.one_of(st.just("*"), st.sampled_from(["job", "a.b", "x>y", "ü", "%2A", "~"]))
namespaces = st.one_of(st.none(), st.sampled_from(["ops", "o.p"]))


def ident(name: str, action: str, ns: str | None) -> Identifier:
    return Identifier(f"{name}@{ns}:{action}" if ns else f"{name}:{action}")


@given(names, names, namespaces, names, names, namespaces)
def test_subscriptions_match_exactly_what_berrymq_matches(
    n1: str, a1: str, ns1: str | None, n2: str, a2: str, ns2: str | None
) -> None:
    """A receiver of the pattern gets a message through NATS iff berryMQ says they match."""
    m = SubjectMap()
    message, pattern = ident(n1, a1, ns1), ident(n2, a2, ns2)
    subject = m.subject(message)
    reached = [s for s in m.interest(pattern) if nats_matches(s, subject)]
    assert bool(reached) == pattern.matches(message)
    # A single pattern's subjects never deliver one message twice (queue groups rely on it).
    assert len(reached) <= 1

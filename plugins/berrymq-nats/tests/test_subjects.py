"""The identifier-to-subject mapping, without a server: escaping and symmetric wildcards."""

from __future__ import annotations

import random
import time

import pytest
from berrymq_nats.subjects import (
    MAX_PREFIX,
    MAX_PUBLISH_SUBJECT,
    SubjectMap,
    SubjectTooLong,
    check_prefix,
    escape_token,
    minimize,
    unescape_token,
)
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


def reference_minimize(subjects: set[str]) -> set[str]:
    """The plain definition, all pairs: a subject is dropped when another one of the same
    length has, at every token, either ``*`` or the same token."""
    split = {s: s.split(".") for s in subjects}
    return {
        s for s, tokens in split.items()
        if not any(o != s and len(other) == len(tokens)
                   and all(w in ("*", t) for w, t in zip(other, tokens, strict=True))
                   for o, other in split.items())
    }


def test_minimize_agrees_with_the_plain_definition_on_random_sets() -> None:
    """Random sets of subjects over few tokens (so that covers are frequent), of mixed
    lengths, ``*`` anywhere; a fixed seed keeps the cases the same at every run."""
    rng = random.Random(20261202)
    tokens = ["a", "b", "c", "*"]
    for _ in range(2000):
        subjects = {".".join(rng.choice(tokens) for _ in range(rng.randint(1, 5)))
                    for _ in range(rng.randint(0, 30))}
        assert minimize(subjects) == reference_minimize(subjects), sorted(subjects)


def test_minimize_agrees_on_the_subjects_of_random_patterns() -> None:
    m = SubjectMap()
    rng = random.Random(7)
    names = ["job", "task", "*", "a.b"]
    for _ in range(300):
        subjects: set[str] = set()
        for _ in range(rng.randint(1, 12)):
            ns = rng.choice([None, "ops"])
            subjects.update(m.interest(ident(rng.choice(names), rng.choice(names), ns)))
        assert minimize(subjects) == reference_minimize(subjects), sorted(subjects)


def test_minimize_is_not_quadratic() -> None:
    """5,000 distinct patterns (10,002 subjects) on the I/O thread: all pairs took minutes
    (1,000 patterns took 12 s); a few steps per subject take well under a second, and
    the deadline is generous for a loaded machine."""
    m = SubjectMap()
    subjects: set[str] = set()
    for i in range(5000):
        subjects.update(m.interest(Identifier(f"job{i}:done")))
    subjects.update(m.interest(Identifier(f"job{4999}:*")))
    started = time.perf_counter()
    kept = minimize(subjects)
    assert time.perf_counter() - started < 5.0
    # job<i>.done and job<i>.%2A for each i but 4999, whose job4999.* covers both;
    # %2A.* covers the shared %2A.done and %2A.%2A.
    assert len(kept) == 2 * 4999 + 2
    assert {"berrymq.~.job4999.*", "berrymq.~.%2A.*", "berrymq.~.job0.%2A"} <= kept
    assert not {"berrymq.~.job4999.done", "berrymq.~.%2A.done"} & kept


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


def test_subjects_that_would_not_fit_the_servers_control_line_are_refused() -> None:
    """``PUB <subject> <reply> <size>`` and ``SUB <subject> <group> <sid>`` must fit the
    server's 4096-byte control line: a shared queue's subscription carries its subject
    twice (the subject and the queue group)."""
    m = SubjectMap()
    long_pattern = Identifier("€" * 120 + ":" + "€" * 120)  # each € is %E2%82%AC
    assert m.subscribe_problem(long_pattern, shared=False) is None
    problem = m.subscribe_problem(long_pattern, shared=True)
    assert problem is not None and "subject and queue group" in problem
    assert len(m.subject(long_pattern)) < MAX_PUBLISH_SUBJECT  # published, it fits
    too_long = Identifier("\U0001F600" * 250 + ":a")  # 3,000 bytes escaped: fits alone
    assert m.subject(too_long)
    m = SubjectMap("p" * 1000)  # not with a long prefix
    with pytest.raises(SubjectTooLong, match=r"its NATS subject would be \d+ bytes, over the "
                                             rf"{MAX_PUBLISH_SUBJECT} that fit"):
        m.subject(too_long)
    assert m.subscribe_problem(too_long, shared=True) is not None
    near = SubjectMap("p" * MAX_PREFIX)  # the longest prefix still leaves room
    assert near.subscribe_problem(Identifier("job:run"), shared=True) is None
    with pytest.raises(ValueError, match=rf"subject_prefix is {MAX_PREFIX + 1} bytes long, "
                                         rf"over {MAX_PREFIX}"):
        check_prefix("p" * (MAX_PREFIX + 1))
    with pytest.raises(ValueError, match="subject_prefix is 1026 bytes long"):
        check_prefix("é" * 513)  # bytes, not characters

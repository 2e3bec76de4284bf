"""http11.py: requests read into events and answers gathered, however the bytes are cut
into reads."""

from __future__ import annotations

import itertools
import json

import pytest
from berrymq_jsonrpc_http.http11 import (
    END,
    MAX_HEAD,
    Answer,
    AnswerTooLarge,
    Head,
    Malformed,
    NotHttp,
    RequestEvents,
    post,
    response,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def chunked_post(body: bytes, size: int) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n")


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(marks)]


def requests_of(events: list[object]) -> list[tuple[Head, bytes]]:
    """The (head, body) of each request in a run of events."""
    out: list[tuple[Head, bytes]] = []
    head: Head | None = None
    body = b""
    for event in events:
        if isinstance(event, Head):
            head, body = event, b""
        elif isinstance(event, bytes):
            body += event
        else:
            assert event is END and head is not None
            out.append((head, body))
            head = None
    return out


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=4),
       chunk=st.integers(min_value=1, max_value=50),
       chunked=st.lists(st.booleans(), min_size=4, max_size=4),
       points=st.lists(st.integers(min_value=0), max_size=30))
def test_pipelined_requests_read_in_any_cuts_give_the_same_events(
        bodies: list[bytes], chunk: int, chunked: list[bool], points: list[int]) -> None:
    data = b"".join(chunked_post(body, chunk) if chunked[i] else post(b"/", b"h", body)
                    for i, body in enumerate(bodies))
    reader = RequestEvents()
    for piece in cut(data, points):
        reader.feed(piece)
    got = requests_of(list(reader.events))
    assert [body for _, body in got] == bodies
    for head, _ in got:
        assert (head.method, head.target, head.keep_alive) == (b"POST", "/", True)
        assert head.headers[b"content-type"] == b"application/json"
        assert not head.http10 and not head.expects_continue


def test_http10_expect_and_close_are_read_from_the_head() -> None:
    heads = []
    for data in (b"POST /JSON HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
                 b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                 b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nConnection: close\r\n"
                 b"Content-Length: 2\r\n\r\n"):
        reader = RequestEvents()
        reader.feed(data)
        heads.append(reader.events[0])
    first, second, third = heads
    assert isinstance(first, Head) and isinstance(second, Head) and isinstance(third, Head)
    assert (first.target, first.http10, first.keep_alive) == ("/JSON", True, False)
    assert (second.http10, second.keep_alive) == (True, True)
    assert (third.http10, third.keep_alive, third.expects_continue) == (False, False, True)


def test_what_follows_whole_requests_unparsed_waits_until_they_are_served() -> None:
    # stray bytes after an HTTP/1.0 request (llhttp: "Data after `Connection: close`"),
    # or garbage after pipelined requests: the requests before them are still served
    for data in (b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}junk",
                 post(b"/", b"h", b"{}") + b"GARBAGE / HTTP/1.1\r\n\r\n"):
        reader = RequestEvents()
        reader.feed(data)
        assert [body for _, body in requests_of(list(reader.events))] == [b"{}"]
        assert reader.error is not None and reader.error.status == 400


@pytest.mark.parametrize(("data", "status", "reason"), [
    (b"GARBAGE / HTTP/1.1\r\n\r\n", 400, "Invalid method"),
    (b'{"jsonrpc": "2.0"}\n', 400, "Invalid method"),
    (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "Content-Length"),
    (b"POST / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 1) + b"\r\n\r\n", 431, "over 16384"),
    (b"POST / HTTP/2.0\r\nContent-Length: 2\r\n\r\n{}", 400, "HTTP/2.0 is not served"),
    # HTTP/2's connection preface (curl --http2-prior-knowledge): llhttp's words were
    # "Pause on PRI/Upgrade"
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP/2.0 is not served: this node speaks"),
    (b"POST / HTTP/0.9\r\nContent-Length: 2\r\n\r\n{}", 400, "HTTP/0.9 is not served"),
])
def test_what_cannot_be_served_is_named(data: bytes, status: int, reason: str) -> None:
    with pytest.raises(Malformed, match=reason) as info:
        RequestEvents().feed(data)
    assert info.value.status == status


def test_a_head_that_never_ends_is_refused_once_over_the_limit() -> None:
    reader = RequestEvents()
    reader.feed(b"POST / HTTP/1.1\r\nX: ")
    with pytest.raises(Malformed, match="over 16384"):
        for _ in range(MAX_HEAD // 1000 + 1):
            reader.feed(b"a" * 1000)  # one header, never ended


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=500), points=st.lists(st.integers(min_value=0), max_size=20),
       close=st.booleans())
def test_an_answer_read_in_any_cuts(body: bytes, points: list[int], close: bool) -> None:
    headers = [(b"Content-Type", b"application/json"),
               (b"Content-Length", str(len(body)).encode())]
    if close:
        headers.append((b"Connection", b"close"))
    answer = Answer(1 << 20)
    for piece in cut(response(200, headers, body), points):
        answer.feed(piece)
    assert answer.done and answer.status == 200
    assert (answer.content_type, b"".join(answer.chunks)) == (b"application/json", body)
    assert answer.keep_alive() is not close


def test_an_answer_without_length_ends_with_the_connection() -> None:
    answer = Answer(1 << 20)
    answer.feed(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + json.dumps(1).encode())
    assert answer.head and answer.until_close and not answer.done
    assert not answer.keep_alive()


def test_json_lines_are_no_answer() -> None:
    with pytest.raises(NotHttp, match="does not speak HTTP"):
        Answer(1 << 20).feed(b'{"jsonrpc":"2.0","error":{"code":-32700},"id":null}\n')


def test_an_answer_over_the_limit_is_refused() -> None:
    answer = Answer(100)
    answer.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"x" * 50)
    with pytest.raises(AnswerTooLarge):
        answer.feed(b"x" * 50)  # 151 bytes in all


@settings(max_examples=100, deadline=None)
@given(points=st.lists(st.integers(min_value=0), max_size=6))
def test_a_request_asking_to_upgrade_gives_its_whole_body_in_any_cuts(points: list[int]) -> None:
    """llhttp ends a request that asks for an Upgrade at its head and hands the rest back
    as the new protocol's bytes: the body was lost. It is the request's body, read up to
    its Content-Length over as many reads as it takes; nothing after it is read."""
    body = b'{"jsonrpc":"2.0","method":"connect_oneway","id":1}'
    request = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body + b"PRI * HTTP/2.0\r\n\r\n")
    events = RequestEvents()
    for part in cut(request, points):
        if events.ended:
            break
        events.feed(part)
    assert events.ended and events.error is None
    ((head, got),) = requests_of(list(events.events))
    assert head.headers[b"upgrade"] == b"h2c" and got == body


@pytest.mark.parametrize("interim", [b"HTTP/1.1 100 Continue\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                     b"HTTP/1.1 100 Continue\r\n\r\n"])
def test_an_interim_answer_is_read_past(interim: bytes) -> None:
    """A 1xx answer, unasked for, was taken as the answer: its final one was then read
    as the next request's, a message a get took given to nobody (RFC 9110, 15.2: a client
    reads past them)."""
    answer = Answer(1 << 20)
    final = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
             b"\r\n{}")
    answer.feed(interim)
    assert not answer.done and not answer.head
    answer.feed(final)
    assert answer.done and answer.status == 200 and b"".join(answer.chunks) == b"{}"
    assert answer.content_type == b"application/json" and answer.keep_alive()

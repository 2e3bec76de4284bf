"""HTTP/1.1 on httptools (the Python binding of llhttp): requests read into events for the
server, answers gathered for the client, and what each side writes.

httptools parses and calls back; these classes turn its callbacks into what the server and
the client read in turn. The one place that imports httptools.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from http import HTTPStatus

import httptools

__all__ = ["CONTINUE", "END", "MAX_HEAD", "Answer", "AnswerTooLarge", "Head", "Malformed",
           "NotHttp", "RequestEvents", "origin_form", "post", "response"]

#: The longest request line plus headers accepted (431 beyond it).
MAX_HEAD = 16 * 1024


@dataclass(slots=True)
class Head:
    """A request's line and headers (names lower-cased; the last of a repeated name)."""

    method: bytes
    target: str
    headers: dict[bytes, bytes]
    #: whether the connection may serve another request after this one (HTTP/1.1 without
    #: ``Connection: close``, or HTTP/1.0 with ``Connection: keep-alive``)
    keep_alive: bool
    #: whether the request is HTTP/1.0 (whose keep-alive the answer must confirm)
    http10: bool
    #: whether an HTTP/1.1 client sent ``Expect: 100-continue`` (it may wait for a 100
    #: before sending the body)
    expects_continue: bool


def origin_form(target: bytes) -> tuple[bytes, bytes | None]:
    """A request target as a path (and query), and the authority it names: the absolute
    form that HTTP/1.1 servers must accept (``http://host:port/path``, as a proxy-minded
    client sends) made into ``/path`` and ``host:port``; any other form as it is, and None.

    The authority of an absolute-form target stands for the Host header (RFC 9112, 3.2.2:
    the server ignores the header then), so the Host check sees the name the client used.
    """
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return target, None
    slash = rest.find(b"/")
    query = rest.find(b"?")
    if slash < 0 or 0 <= query < slash:
        end = len(rest) if query < 0 else query
        return (b"/" + rest[query:] if query >= 0 else b"/"), rest[:end].rpartition(b"@")[2]
    return rest[slash:], rest[:slash].rpartition(b"@")[2]  # without any user info


#: The event after a request's last body bytes.
END = object()


class Malformed(Exception):
    """The bytes read are not an HTTP/1.x request that can be served (``status``; the
    message says what is wrong, as llhttp found it)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _not_http1(version: str) -> Malformed:
    """The refusal of a request of another version than 1.0 and 1.1."""
    return Malformed(400, f"HTTP/{version} is not served: this node speaks HTTP/1.0 and "
                          "HTTP/1.1")


#: What llhttp stops with at HTTP/2's connection preface (``PRI * HTTP/2.0``): its own
#: words, which say nothing to a client that spoke HTTP/2 to this node.
_H2_PREFACE = ("Pause on PRI/Upgrade",)


class _Refused(Exception):
    """Raised in a callback to stop the parser at a head it must not serve (over
    :data:`MAX_HEAD`, or not HTTP/1.x): the refusal is kept as ``RequestEvents._refusal``."""


class RequestEvents:
    """httptools' callbacks made into a queue of events, read one at a time: a
    :class:`Head`, body ``bytes``, then :data:`END`, for each request in turn.

    What cannot be parsed is :class:`Malformed`: raised by :meth:`feed`, or, when whole
    requests came before it in the same read, kept in :attr:`error` to be raised once
    they are served (an HTTP/1.0 client's stray bytes after its request, or garbage after
    pipelined requests, do not cost the requests before them their answers).
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.events: deque[Head | bytes | object] = deque()
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        #: bytes read since the request being read began (None once its head is complete):
        #: what httptools holds of a head still coming
        self._head_bytes: int | None = 0
        #: the size of the request line and headers parsed so far
        self._head_size = 0
        self._hosts = 0  # Host headers after the first (a request with more is refused)
        #: why a callback stopped the parser (:class:`_Refused`)
        self._refusal: Malformed | None = None
        #: whether nothing more is to be read (after a request asking for an Upgrade)
        self.ended = False
        #: whether a request has begun and not ended (its bytes are still coming)
        self.open = False
        #: what could not be parsed after the whole requests in :attr:`events`
        self.error: Malformed | None = None
        #: the bytes of the body still to come of a request that asked for an Upgrade
        #: (llhttp passes them on unparsed): None when no such request is being read
        self._upgrade_body_left: int | None = None
        #: how many of :attr:`events` stand whatever the rest of this read turns out to
        #: be: those of whole requests, and those queued by earlier reads
        self._sound = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data``, the next bytes read (not after :attr:`error`)."""
        if self._upgrade_body_left is not None:
            self._take_upgrade_body(data)
            return
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        self._sound = len(self.events)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # e.g. "Upgrade: h2c" (curl --http2 on http://): llhttp ends the request at
            # its head and hands what follows back as the new protocol's bytes. The
            # request is served as a plain one, its body (Content-Length) taken from
            # them, and nothing after it is read (the connection closes after its answer)
            if self.events and self.events[-1] is END:
                self.events.pop()
            length = self._headers.get(b"content-length", b"0").strip()
            self._upgrade_body_left = int(length) if length.isdigit() else 0
            self.open = True
            self._take_upgrade_body(data[upgrade.args[0]:])
            return
        except httptools.HttpParserError as exc:  # the callbacks' _Refused among them
            if self._refusal is None and exc.args == _H2_PREFACE:
                self._refusal = _not_http1("2.0")
            self._fail(self._refusal or Malformed(400, str(exc)))
            return
        if (self._head_bytes or 0) > MAX_HEAD:
            self._fail(self._too_large_error())

    def _take_upgrade_body(self, data: bytes) -> None:
        """Body bytes of a request that asked for an Upgrade, until its Content-Length."""
        left = self._upgrade_body_left or 0
        body = data[:left]
        if body:
            self.events.append(body)
        left -= len(body)
        if left:
            self._upgrade_body_left = left
            return
        self._upgrade_body_left = None
        self.open = False
        self.ended = True
        self.events.append(END)

    @staticmethod
    def _too_large_error() -> Malformed:
        return Malformed(431, f"the request line and headers are over {MAX_HEAD} bytes")

    def _fail(self, error: Malformed) -> None:
        events = self.events
        while len(events) > self._sound:  # the failing request's own: never served
            events.pop()
        if not events:
            raise error
        self.error = error

    def on_message_begin(self) -> None:
        self.open = True
        self._url, self._headers, self._head_bytes, self._head_size = b"", {}, 0, 0
        self._hosts = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"host" and name in self._headers:  # which one a check read would vary
            self._hosts += 1
        self._headers[name] = value
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        parser, headers = self.parser, self._headers
        self._head_bytes = None
        if self._head_size > MAX_HEAD:
            self._refusal = self._too_large_error()
            raise _Refused  # stops the parser: the request is refused, nothing after it read
        version = parser.get_http_version()
        if version not in ("1.0", "1.1"):  # llhttp takes any digit.digit (HTTP/2.0, HTTP/0.9)
            self._refusal = _not_http1(version)
            raise _Refused
        coding = headers.get(b"transfer-encoding")
        if coding is not None and coding.strip().lower() != b"chunked":
            # llhttp decodes the chunks of "gzip, chunked" and passes the gzip on unsaid
            self._refusal = Malformed(501, "only the chunked transfer coding is served, not "
                                           + repr(coding.decode("latin-1")))
            raise _Refused
        if self._hosts:  # RFC 9112, 3.2: a request with more than one Host is refused
            self._refusal = Malformed(400, "more than one Host header")
            raise _Refused
        http11 = version == "1.1"
        path, authority = origin_form(self._url)
        if authority is not None:
            headers[b"host"] = authority
        self.events.append(Head(
            parser.get_method(), path.decode("latin-1"), headers,
            parser.should_keep_alive(), not http11,
            http11 and headers.get(b"expect", b"").lower() == b"100-continue"))

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self.open = False
        self._head_bytes = 0
        self.events.append(END)
        self._sound = len(self.events)


#: The interim answer to a request that asked ``Expect: 100-continue``.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def post(path: bytes, host: bytes, body: bytes) -> bytes:
    """A JSON POST request, whole."""
    return (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path, host, len(body)) + body)


def response(status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """An HTTP/1.1 response, whole."""
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class NotHttp(Exception):
    """What the server sent is not an HTTP/1.x answer (e.g. a berryMQ TCP port's JSON
    lines)."""


class AnswerTooLarge(Exception):
    """An answer went over the most bytes its reader takes."""


class Answer:
    """One answer, gathered from httptools' callbacks as its bytes are fed, at most
    ``limit`` bytes of it (head and body)."""

    def __init__(self, limit: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._left = limit
        self.content_type = b""
        #: whether the answer's end is its connection's end (no length, no chunks)
        self.until_close = True
        self.head = False
        self.done = False
        self._keep_alive = False
        self.chunks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        """Parse ``data``, the next bytes read; :class:`NotHttp` if they cannot be,
        :class:`AnswerTooLarge` if they go over the limit."""
        self._left -= len(data)
        if self._left < 0:
            raise AnswerTooLarge()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            raise NotHttp("the server does not speak HTTP") from None

    @property
    def status(self) -> int:
        return self._parser.get_status_code()

    def keep_alive(self) -> bool:
        """Whether the connection may carry another request (the answer was read whole,
        and neither side asked to close)."""
        return self.done and self._keep_alive

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value
        elif name in (b"content-length", b"transfer-encoding"):
            self.until_close = False

    def on_headers_complete(self) -> None:
        self.head = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:
            # an interim answer (100 Continue, 102, 103), which a client must read past
            # even unasked for (RFC 9110, 15.2): the final one follows on this connection
            # (taken as the answer, it left the final one to be read as the next request's)
            self.head, self.content_type, self.until_close = False, b"", True
            self.chunks.clear()
            return
        self.done = True
        # asked here: once the message is over, llhttp's flags are the next message's
        self._keep_alive = self._parser.should_keep_alive()

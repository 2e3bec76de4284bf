"""``berrymq send [URL] ID [ARG...]`` and ``berrymq send [URL] -``: send messages to a node.

One message from the command line, or with ``-`` one message per line of stdin (the
identifier and its arguments as on the command line, or with ``--json`` a JSON array
``[id, args, kwargs]``), all over one connection; the command ends once the node has
acknowledged every message. A line that is not a message is reported with its number and
skipped, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from berrymq.api import DEFAULT_TTL
from berrymq.cli import UsageError, node_url, print_json
from berrymq.default import get_bus
from berrymq.errors import ConnectionClosed, MessageTooLarge, TransportError
from berrymq.identifier import parse
from berrymq.message import Message
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.cli_session import StoppableSession
from berrymq_jsonrpc.cli_support import (
    decode_json,
    keyword,
    parse_value,
    quiet_remote_logs,
    run_until_stopped,
)

__all__ = ["check_utf8", "message_from_json", "message_from_words", "run_send", "split_words"]

#: A first word such as 127.0.0.1:7000, localhost:7000 or [::1]:7000 is taken for an
#: address without its scheme, not for an identifier (after a URL, it is an identifier).
_HOST_PORT = re.compile(r"^(localhost|[\w\-]*\.[\w.\-]*|\[[0-9a-fA-F:.]+\]):\d+$")


def _identifier(text: str) -> Any:
    ident = parse(text)
    if ident.is_local:
        raise ValueError(f"{text!r} is local (its name starts with '_'); local messages "
                         "never leave their process")
    return ident


def check_utf8(text: str, what: str) -> None:
    """Raise ValueError naming ``what`` when ``text`` came from bytes that are not UTF-8
    (Python decodes the command line and stdin so that such bytes survive as lone
    surrogates, which would cross the wire as invalid Unicode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise ValueError(f"{what} is not UTF-8 text ({byte} at character {exc.start + 1})"
                         ) from None


def message_from_words(words: list[str]) -> Message:
    """A message from ``ID [ARG...] [--kw KEY=VALUE...]`` (as on the command line).

    :raises ValueError: a bad identifier, a local one, a bad ``--kw``, or a word that is
        not UTF-8 text.
    """
    if not words:
        raise ValueError("no identifier")
    for number, word in enumerate(words):
        check_utf8(word, "the identifier" if number == 0 else f"word {number + 1} ({word!r})")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    rest = iter(words[1:])
    for word in rest:
        if word == "--kw" or word.startswith("--kw="):
            text = word[5:] if word.startswith("--kw=") else next(rest, "")
            try:
                key, value = keyword(text)
            except argparse.ArgumentTypeError as exc:
                raise ValueError(str(exc)) from None
            kwargs[key] = value
        else:
            args.append(parse_value(word))
    return Message(_identifier(words[0]), tuple(args), kwargs)


def message_from_json(text: str) -> Message:
    """A message from a JSON array ``[id, args, kwargs]`` (args and kwargs optional).

    :raises ValueError: not such an array, or a bad identifier.
    """
    check_utf8(text, "the line")
    value = decode_json(text, "the line")
    if not (isinstance(value, list) and 1 <= len(value) <= 3 and isinstance(value[0], str)
            and (len(value) < 2 or isinstance(value[1], list))
            and (len(value) < 3 or isinstance(value[2], dict))):
        raise ValueError('expected a JSON array ["id", [args...], {kwargs...}]')
    args = value[1] if len(value) > 1 else []
    kwargs = value[2] if len(value) > 2 else {}
    return Message(_identifier(value[0]), tuple(args), kwargs)


def split_words(args: argparse.Namespace, command: str = "send") -> tuple[str, list[str]]:
    """The node's URL and the words after it (``url``, ``identifier`` and ``args`` of
    ``command``'s line): a first word without ``://`` is the ID and the node comes from
    ``BERRYMQ_URL``."""
    words = [w for w in (args.url, args.identifier) if w is not None] + list(args.args)
    given = words.pop(0) if words and "://" in words[0] else None
    if given is None and words and _HOST_PORT.match(words[0]):
        raise UsageError(f"{words[0]!r} has no scheme: write tcp://{words[0]} or "
                         f"http://{words[0]}")
    if not words:
        more = ", or - to read messages from stdin" if command == "send" else ""
        raise UsageError(f"{command} needs an ID (and its ARGs){more}", show_usage=True)
    return node_url(given), words


def _stdin_lines(longest: int) -> Iterable[str | None]:
    """stdin's lines, bytes that are not UTF-8 kept as lone surrogates (whatever the
    locale), for :func:`check_utf8` to name, rather than a decoding error ending the run;
    None for a line of more than ``longest`` bytes, which no message fits: read to its end
    and let go of as it comes (one line of 100 MB took 331 MB and 51 s, its pieces joined
    again and again; parsed as words, a 3 MB line took 83 s more).

    Read from the file descriptor, not through ``sys.stdin.buffer``: the sending thread
    may still wait for a line when a signal ends the command, and a thread waiting
    inside the buffered reader holds its lock, which aborts the interpreter at exit."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # a stream put in its place
        yield from (None if len(line) > longest else line for line in sys.stdin)
        return
    pieces: list[bytes] = []  # of the line being read, while it is not too long
    size = 0
    too_long = False
    while chunk := os.read(fd, 65536):
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            size += end - start
            if too_long or size > longest:
                yield None
            else:
                pieces.append(chunk[start:end])
                yield b"".join(pieces).decode("utf-8", "surrogateescape") + "\n"
            pieces, size, too_long, start = [], 0, False, end + 1
        size += len(chunk) - start
        if too_long or size > longest:
            pieces, too_long = [], True
        else:
            pieces.append(chunk[start:])
    if too_long or size > longest:
        yield None
    elif size:
        yield b"".join(pieces).decode("utf-8", "surrogateescape")


class _StdinMessages:
    """The messages of stdin's lines; :attr:`number` is the line the last one came from,
    so that a message the connection refuses (too large once encoded) is named by it."""

    def __init__(self, as_json: bool, errors: list[str], longest: int) -> None:
        self.as_json, self.errors, self.longest = as_json, errors, longest
        self.number = 0

    def __iter__(self) -> Iterator[Message]:
        errors, longest = self.errors, self.longest
        for number, line in enumerate(_stdin_lines(longest), 1):
            self.number = number
            if line is None:
                errors.append(f"stdin line {number}: over {longest} bytes, twice the largest "
                              "request (setting max_size): no message fits it")
                print(f"berrymq: error: {errors[-1]}; not sent", file=sys.stderr, flush=True)
                continue
            if not line.strip():
                continue
            try:
                yield (message_from_json(line) if self.as_json
                       else message_from_words(shlex.split(line)))
            except ValueError as exc:
                errors.append(f"stdin line {number}: {exc}")
                print(f"berrymq: error: {errors[-1]}; not sent", file=sys.stderr, flush=True)


def _longest_line(url: str) -> int:
    """The longest stdin line ``send -`` reads for a message to ``url``: twice the
    transport's ``max_size`` (a message's words or JSON are about its size on the wire)."""
    scheme = url.partition("://")[0].lower()
    try:
        max_size = int(getattr(get_bus().transport(scheme), "max_size", p.DEFAULT_MAX_SIZE))
    except Exception:  # noqa: BLE001 - an unknown scheme is named when it connects
        max_size = p.DEFAULT_MAX_SIZE
    return 2 * max_size


class _Sending:
    """The sending of ``berrymq send`` (on a thread of its own: see
    :func:`run_until_stopped`), and what it had done when a signal stopped it."""

    def __init__(self, url: str, args: argparse.Namespace, messages: Iterable[Message],
                 *, from_stdin: bool, errors: list[str]) -> None:
        self.url, self.args, self.messages = url, args, messages
        self.from_stdin, self.errors = from_stdin, errors
        self.sent = 0
        self.session = StoppableSession()

    def run(self, stopping: threading.Event) -> int:
        """Send every message, then wait until the node acknowledged them all."""
        url, args = self.url, self.args
        ttl = DEFAULT_TTL if self.from_stdin else max(args.timeout, 1.0)
        connection = self.session.open(url, args.timeout, ttl)
        try:
            for message in self.messages:
                if stopping.is_set():
                    break
                try:
                    connection.send(message)
                except (TypeError, ValueError, MessageTooLarge) as exc:
                    # (too large: a line under twice max_size whose message is over it)
                    if not isinstance(self.messages, _StdinMessages):
                        if isinstance(exc, MessageTooLarge):
                            raise
                        raise UsageError(str(exc)) from None
                    self.errors.append(f"stdin line {self.messages.number}: {exc}")
                    print(f"berrymq: error: {self.errors[-1]}; not sent", file=sys.stderr,
                          flush=True)
                    continue
                except ConnectionClosed as exc:
                    raise ConnectionClosed(f"the node at {url} went away after {self.sent} "
                                           f"message(s): {exc}") from None
                self.sent += 1
            if not connection.flush(args.timeout):
                raise TransportError(f"{url} did not acknowledge the message(s) within "
                                     f"{args.timeout:g}s")
        finally:
            connection.close()
        return 0

    def give_up(self) -> None:
        """A signal stopped the command: end its session (:meth:`StoppableSession.give_up`)."""
        self.session.give_up()

    @property
    def not_acknowledged(self) -> int:
        connection = self.session.connection
        return 0 if connection is None else sum(connection.losses.values())


def run_send(args: argparse.Namespace) -> int:
    """``berrymq send``: 0 once the node acknowledged every message; stopped by SIGINT or
    SIGTERM, 128 + the signal's number, after saying how many messages it had sent and
    how many of them the node had not acknowledged."""
    url, words = split_words(args)
    from_stdin = words == ["-"]
    if from_stdin and args.kw:
        raise UsageError("--kw goes on each line of stdin, not beside -")
    if not from_stdin:
        try:
            one = message_from_words(words)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        messages: Iterable[Message] = [
            Message(one.identifier, one.args, {**one.kwargs, **dict(args.kw or [])})]
    errors: list[str] = []
    if from_stdin:
        messages = _StdinMessages(args.json, errors, _longest_line(url))
    sending = _Sending(url, args, messages, from_stdin=from_stdin, errors=errors)
    with quiet_remote_logs():
        _status, signum = run_until_stopped(sending.run, sending.give_up)
    if signum is not None:
        name = signal.Signals(signum).name
        if sending.sent:
            print(f"berrymq: stopped by {name} after sending {sending.sent} message(s) to "
                  f"{url}: {sending.not_acknowledged} of them not acknowledged by the node "
                  "(given up; it may have received some of them)", file=sys.stderr, flush=True)
        else:
            print(f"berrymq: stopped by {name} before sending any message to {url}",
                  file=sys.stderr, flush=True)
        return 128 + signum
    if args.json:
        print_json({"url": url, "sent": sending.sent, "not_sent": len(errors)})
    if errors:
        raise TransportError(f"{len(errors)} line(s) of stdin were not sent")
    return 0

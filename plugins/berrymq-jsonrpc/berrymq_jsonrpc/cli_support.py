"""What the node commands (``serve``, ``send``, ``listen``, ``graph URL``) share: values
and messages as text, connecting with a deadline, failures as one line with the right
exit status, and stopping on SIGINT/SIGTERM without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from berrymq.cli import UsageError
from berrymq.default import get_bus
from berrymq.errors import BerryMQError, ConnectionClosed, RemoteError, TransportError
from berrymq.identifier import parse
from berrymq.timeouts import too_long
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.channel import NoAnswer
from berrymq_jsonrpc.jsonrpc_client import secret_refusal
from berrymq_jsonrpc.limits import ttl_limit

__all__ = ["URL_HELP", "UnsendableJson", "add_message_arguments", "connect", "decode_json",
           "format_message", "is_broker", "keyword", "node_failure", "open_session", "parse_value",
           "pattern_argument", "port_speaks", "quiet_remote_logs", "run_until_stopped", "scheme_hint",
           "seconds_argument", "secret_hint", "went_away"]

#: The help of a command's URL argument.
URL_HELP = ("the node, e.g. tcp://127.0.0.1:7000 or http://127.0.0.1:8000 (default: the "
            "environment variable BERRYMQ_URL)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _TooLarge(Exception):
    """A JSON number past what a double holds (``1e400``)."""


class UnsendableJson(ValueError):
    """JSON that no message can carry: a number too large for a double, or nesting past
    what Python's decoder goes."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _TooLarge(text)
    return value


_strict = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_lenient = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(text: str, what: str) -> Any:
    """``text`` as JSON that berryMQ can send (``what`` names it in errors): ValueError for
    text that is no JSON and for ``NaN``/``Infinity`` (no JSON either, though Python reads
    them); :class:`UnsendableJson` for a number too large for a double (``1e400``: Python
    reads it as infinity, which no JSON encoder writes) and for nesting past what the
    decoder goes."""
    try:
        try:
            return _strict.decode(text)
        except _TooLarge as exc:
            _lenient.decode(text)  # (the ValueError of text that is no JSON beyond the number)
            raise UnsendableJson(f"{what} holds the number {str(exc)[:40]}, too large for "
                                 "JSON (a double): it cannot be sent") from None
    except RecursionError:  # JSON, but nested past what Python's decoder goes (about 1000)
        raise UnsendableJson(f"{what} nests arrays and objects too deeply to be sent") from None


def parse_value(text: str) -> Any:
    """A command-line value: its JSON value when ``text`` is JSON, else the text itself.

    ``42`` is a number, ``true`` a boolean, ``'"42"'`` the string ``42``, ``[1,2]`` an
    array, ``hello`` the string ``hello``. ``NaN``/``Infinity`` are not JSON and stay
    strings (berryMQ never sends them); JSON that cannot be sent (``1e400``, too deep a
    nesting) is an :class:`UnsendableJson` naming it.
    """
    try:
        return decode_json(text, f"the value {text[:40]}{'...' if len(text) > 40 else ''}")
    except UnsendableJson:
        raise
    except ValueError:
        return text


def keyword(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--kw``: VALUE parsed like an argument (:func:`parse_value`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"--kw takes KEY=VALUE with KEY a Python identifier, got {text!r}")
    try:
        return key, parse_value(value)
    except UnsendableJson as exc:  # (argparse would say only "invalid keyword value")
        raise argparse.ArgumentTypeError(f"--kw {key}: {exc}") from None


def pattern_argument(text: str) -> str:
    """An identifier pattern given on the command line, checked before anything runs
    (a bad one is a usage error, exit status 2)."""
    if "://" in text:  # `listen URL` with its pattern forgotten: not "more than one ':'"
        raise argparse.ArgumentTypeError(
            f"{text!r} is a node's address, not a pattern such as 'job:*' (listen takes "
            "the URL first, then the PATTERN)")
    try:
        ident = parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ident.is_local:
        raise argparse.ArgumentTypeError(
            f"{text!r} is local (its name starts with '_'); local messages never leave "
            "their process")
    return text


def add_message_arguments(parser: argparse.ArgumentParser, identifier_help: str) -> None:
    """``[URL] ID [ARG ...] [--kw KEY=VALUE]...``: the node and one message, as ``send``
    and ``ask`` take them (see :func:`berrymq_jsonrpc.cli_send.split_words`)."""
    parser.add_argument("url", nargs="?", metavar="URL", help=URL_HELP)
    parser.add_argument("identifier", nargs="?", metavar="ID", help=identifier_help)
    parser.add_argument("args", nargs="*", metavar="ARG", help="positional arguments (optional)")
    parser.add_argument("--kw", action="append", type=keyword, metavar="KEY=VALUE",
                        help="a keyword argument (VALUE parsed like ARG); repeatable")


def seconds_argument(text: str) -> float:
    """A ``--timeout``-like option: a finite number of seconds above 0, checked before
    anything runs (0, a negative number, ``nan`` or ``inf`` is a usage error, exit
    status 2: no wait can be bounded by them)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    bound = too_long(value)  # no wait of the platform lasts that long (OverflowError)
    if bound is not None:
        raise argparse.ArgumentTypeError(f"expected {bound}, got {text!r}")
    return value


def timestamp(when: float | None = None) -> str:
    """``when`` (default: now) as ISO 8601 UTC with milliseconds, e.g.
    ``2026-12-01T15:50:02.123Z``."""
    moment = datetime.fromtimestamp(time.time() if when is None else when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def shown(text: str) -> str:
    """``text`` from the network as a terminal may show it: every character that is not
    printable (an escape sequence, which may retitle or clear the terminal, a NUL, a
    lone surrogate, which cannot be written at all) as its Python escape, ``\\x1b``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def format_message(message: Any, as_json: bool = False, received: str | None = None) -> str:
    """One line for a message: ``[TIME ]ID ARGS [KWARGS]`` (args and kwargs as JSON), or
    with ``as_json`` a JSON object ``{"identifier", "args", "kwargs"[, "time"]}``;
    ``received`` is the time it arrived (:func:`timestamp`), shown when given."""
    ident = str(message.identifier)
    if as_json:
        record: dict[str, Any] = {"identifier": ident, "args": list(message.args),
                                  "kwargs": message.kwargs}
        if received is not None:
            record["time"] = received
        return json.dumps(record, ensure_ascii=False)
    line = f"{ident} {json.dumps(list(message.args), ensure_ascii=False)}"
    if message.kwargs:
        line += " " + json.dumps(message.kwargs, ensure_ascii=False)
    return line if received is None else f"{received} {line}"


@contextmanager
def quiet_remote_logs() -> Iterator[None]:
    """The outbox logs a failed send on ``berrymq.remote``; the command reports it itself
    as its one error line, so such records are not printed twice."""
    logger = logging.getLogger("berrymq.remote")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- connecting ------------------------------------------------------------------------------


def port_speaks(url: str, timeout: float = 1.0) -> str:
    """Which protocol the port of ``url`` speaks: ``"http"``, ``"tcp"`` (berryMQ's line
    protocol), or ``""`` when it cannot be told (no answer, something else).

    It sends ``GET / HTTP/1.0``: an HTTP server answers ``HTTP/...``, a berryMQ TCP node a
    JSON-RPC error line (``{...``)."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if not host or port is None:
        return ""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: berrymq\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return ""
    return "http" if head.startswith(b"HTTP/") else "tcp" if head.startswith(b"{") else ""


def scheme_hint(url: str, timeout: float = 1.0) -> str:
    """When the port of ``url`` speaks the other protocol (HTTP behind ``tcp://``, the
    line protocol behind ``http://``), a sentence naming the URL that fits; else ``""``
    (:func:`port_speaks`)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    actual = port_speaks(url, timeout)
    if not actual or actual == scheme:
        return ""
    return (f": that port speaks {actual.upper()}, not {scheme.upper()}: did you mean "
            f"{actual}://{parts.netloc}?")


def secret_hint(*, given: bool, option: str = "") -> str:
    """What to do about a node that refused a request as unauthorised: when a secret was
    sent, that it is not the node's (a wrong secret); else where to give one (``option``:
    the command's own option for it, e.g. ``--secret``)."""
    where = f"give {option} or set {p.SECRET_ENV_VAR}" if option else f"set {p.SECRET_ENV_VAR}"
    return ": " + secret_refusal(given=given, where=where)


def node_failure(url: str, exc: BaseException, *, probe: bool = True) -> Exception:
    """The error a command reports when the node at ``url`` failed it: a usage error for
    a URL that cannot work, else a runtime failure (with a hint when the scheme does not
    match the port; ``probe=False`` skips that look, e.g. when no time is left)."""
    if isinstance(exc, (ValueError, TypeError)):
        return UsageError(str(exc))
    text = " ".join((str(exc) or type(exc).__name__).split())  # one line, whatever came back
    if isinstance(exc, RemoteError):  # (an Unauthorised one says whether a secret was sent)
        return TransportError(text)
    hint = scheme_hint(url) if probe else ""
    if hint:
        return ConnectionClosed(f"cannot reach {url}{hint}")
    return ConnectionClosed(text)


def is_broker(url: str) -> bool:
    """Whether ``url``'s scheme names a broker's transport (``nats://``): one that joins
    this process's bus to the broker rather than opening a session on one node."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    try:
        return bool(scheme) and hasattr(get_bus().transport(scheme), "connect_broker")
    except BerryMQError:
        return False  # connecting names the missing plugin


def connect(url: str, timeout: float, opener: Callable[[str], Any]) -> Any:
    """``opener(url)`` (e.g. ``connect_oneway``), with every wait of the transport (the
    TCP connect, the first request) bounded by ``timeout`` seconds. Failures are raised
    as :func:`node_failure` says."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    started = time.monotonic()
    try:
        if scheme:
            transport = get_bus().transport(scheme)
            if isinstance(getattr(transport, "timeout", None), float):
                # the connect wait and each request honour the command's --timeout
                transport.timeout = min(transport.timeout, timeout)  # type: ignore[attr-defined]
        return opener(url)
    except (ValueError, TypeError, TransportError, OSError) as exc:
        left = timeout - (time.monotonic() - started)
        raise node_failure(url, exc, probe=left > 0.1) from None


def open_session(url: str, timeout: float, opener: Callable[[str, float], Any],
                 ttl: float) -> Any:
    """:func:`connect` with ``opener(url, ttl)`` (e.g. ``connect_oneway(url, ttl=ttl)``).

    A node may cap a session's ttl lower (its ``max_ttl`` setting) than a command asks
    for; it then refuses the session and names its limit, and the session is asked for
    again with that limit, so that ``send`` and ``listen`` work with any such node."""

    def open_it(target: str) -> Any:
        try:
            return opener(target, ttl)
        except RemoteError as exc:
            limit = ttl_limit(exc, ttl)
            if limit is None:
                raise
            return opener(target, limit)

    return connect(url, timeout, open_it)


_UNKNOWN_TOKEN_TEXT = "the peer no longer knows this connection"
_FORGOTTEN = "it stopped or restarted, and no longer knows this listener"


def went_away(exc: BaseException) -> str | None:
    """Why a failure of a running connection means the node went away (it closed the
    connection, cannot be reached, gave no answer in time, or restarted and no longer knows
    the session: its "unknown or expired token" says so), or None when it does not.

    An answer that came and is malformed (a ``get`` result that is no message, a reply that
    is not JSON-RPC, one over the size limit) is not the node going away: the node is
    there and answers so again, and a listener that reconnected for it turned round
    thousands of times a second (found by an outside probe).
    """
    if isinstance(exc, RemoteError):
        return _FORGOTTEN if exc.code == p.UNKNOWN_TOKEN else None
    text = str(exc)
    if _UNKNOWN_TOKEN_TEXT in text:  # UNKNOWN_TOKEN, as jsonrpc_client.error_for raises it
        return _FORGOTTEN
    if isinstance(exc, (ConnectionClosed, NoAnswer, OSError)):
        return text or type(exc).__name__
    return None


# -- stopping ---------------------------------------------------------------------------------


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_until_stopped(body: Callable[[threading.Event], int],
                      cleanup: Callable[[], None]) -> tuple[int | None, int | None]:
    """Run ``body(stopping)`` on a thread of its own until it returns or SIGINT/SIGTERM
    comes, then ``cleanup()`` (which closes what the body may still wait on); returns
    ``(its exit status or None, the signal or None)``.

    A signal only sets ``stopping`` (so no exception ever lands in the middle of a
    connect or a print: no traceback). The kernel gives a process-directed signal to any
    thread that does not block it, and Python handles it in the main thread only; so the
    body's thread, and every thread it starts, block the two signals, and the main thread
    alone takes them and wakes up. A failure of the body is raised here.
    """
    stopping = threading.Event()
    done = threading.Event()
    result: list[int] = []
    failure: list[BaseException] = []
    caught: list[int] = []

    def run() -> None:
        try:
            result.append(body(stopping))
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            failure.append(exc)
        finally:
            done.set()

    def on_signal(signum: int, frame: object) -> None:
        caught.append(signum)
        stopping.set()
        done.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    masked = hasattr(signal, "pthread_sigmask")
    try:
        if masked:
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            thread = threading.Thread(target=run, name="berrymq-command", daemon=True)
            thread.start()
        finally:
            if masked:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        done.wait()
    finally:
        stopping.set()
        try:
            cleanup()  # a second signal meanwhile only sets the events again
        finally:
            thread.join(1.0)  # it ends once what it waited on is closed
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:
        return None, caught[0]
    if failure:
        raise failure[0]
    return result[0], None

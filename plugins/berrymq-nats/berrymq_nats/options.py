"""The bridge's options (the keys of ``[berrymq.nats]``) and the error a full buffer raises."""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from berrymq.errors import QueueFull, TransportError
from berrymq.timeouts import too_long
from berrymq_nats.subjects import DEFAULT_PREFIX, check_prefix

__all__ = ["NUMBER_OPTIONS", "BrokerBufferFull", "BrokerOptions", "check_credentials",
           "credentials_problem", "option_problem", "servers_problem", "without_credentials"]

#: what may be a user name and password after the scheme, up to the last "@" of the URL
_USER_INFO = re.compile(r"://[^\s]*@")

_STRINGS = frozenset({"token", "user", "password", "credentials", "name", "subject_prefix"})
_SECONDS = frozenset({"connect_timeout", "reconnect_wait", "ask_gather", "send_timeout"})
_INTEGERS = frozenset({"buffer_limit", "buffer_bytes", "max_reconnect_attempts"})


class BrokerBufferFull(TransportError, QueueFull):
    """The bridge cannot take this message now: NATS is unreachable and the disconnect
    buffer is full (``buffer_limit`` messages or ``buffer_bytes`` bytes), or the I/O
    thread did not take messages for ``send_timeout`` seconds. The message was refused
    (not sent, not stored). Also a :class:`berrymq.QueueFull`, so the bus raises it from
    the sending call instead of only logging it."""


@dataclass(frozen=True)
class BrokerOptions:
    """How to reach NATS and how the bridge behaves; the keys of ``[berrymq.nats]``.

    :param servers: NATS URLs (``nats://host:port``); several for a cluster.
    :param token: an authentication token.
    :param user: a user name (with ``password``).
    :param password: the user's password.
    :param credentials: the path of a NATS ``.creds`` file (a user's JWT and NKey seed, for
        a server in operator mode); needs the ``nkeys`` package (``pip install nkeys``,
        the plugin's ``[credentials]`` extra). Checked when the plugins load (a relative
        path in the settings file is relative to that file's folder) and when the bridge
        is made.
    :param subject_prefix: the first token(s) of every subject (see ``subjects``).
    :param connect_timeout: seconds to wait for a connection to one server.
    :param reconnect_wait: seconds between reconnection attempts to one server.
    :param max_reconnect_attempts: how many times a server is tried again after a failed
        attempt, when connecting first and after a lost connection: a server is given up
        after ``max_reconnect_attempts + 1`` failed attempts in a row, and the bridge when
        every server is (its state says so). -1 (the default) never gives up; 0 is refused,
        as ``nats-py`` would read it as never giving up.
    :param buffer_limit: how many messages may wait while NATS is unreachable (and, while
        it is reachable, for the I/O thread to publish them); 1 or more.
    :param buffer_bytes: how many bytes of encoded messages may wait while NATS is
        unreachable (and, while it is reachable, for the I/O thread); one message always
        may.
    :param send_timeout: seconds a sending call waits for room when the I/O thread is
        behind, before it raises :class:`BrokerBufferFull`.
    :param ask_gather: seconds to wait, after a process that was not known to listen
        acknowledged an ``ask``, for more such processes (see ``docs/scaling.md``).
    :param name: the client name shown by the NATS server's monitoring.
    """

    servers: tuple[str, ...]
    token: str | None = None
    user: str | None = None
    password: str | None = None
    credentials: str | None = None
    subject_prefix: str = DEFAULT_PREFIX
    connect_timeout: float = 2.0
    reconnect_wait: float = 0.5
    max_reconnect_attempts: int = -1
    buffer_limit: int = 10_000
    buffer_bytes: int = 64 * 1024 * 1024
    send_timeout: float = 5.0
    ask_gather: float = 0.1
    name: str | None = None

    @property
    def gave_up(self) -> str:
        """Why the client stopped trying, for the state line."""
        attempts = self.max_reconnect_attempts
        if attempts < 0:  # nats-py closed it for a reason of its own: the last error says
            return "closed the connection"
        return (f"gave up after {attempts + 1} attempts in a row at each server "
                f"(max_reconnect_attempts = {attempts})")

    @classmethod
    def build(cls, servers: str | list[str] | tuple[str, ...], options: Mapping[str, Any]) -> BrokerOptions:
        """Check and convert ``servers`` and ``options``; errors name the bad option."""
        known = {f.name for f in fields(cls)} - {"servers"}
        for key in options:
            if key not in known:
                raise TypeError(
                    f"unknown NATS option {key!r}; known options: {', '.join(sorted(known))}"
                )
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        urls = tuple(servers)
        if not urls:
            raise ValueError("give at least one NATS server URL, e.g. 'nats://127.0.0.1:4222'")
        problem = servers_problem(urls)
        if problem is not None:
            raise ValueError(f"NATS server {problem}")
        values = {key: _check(key, value) for key, value in options.items()}
        check_prefix(values.get("subject_prefix", DEFAULT_PREFIX))
        return cls(servers=urls, **values)


def servers_problem(servers: Any) -> str | None:
    """The first server URL of ``servers`` (a sequence) that NATS cannot use, and why
    (``"'nats://' names no host: ..."``), or None. The URL is quoted without the user
    name and password it may hold."""
    for url in servers:
        if not isinstance(url, str) or "://" not in url or url.split("://", 1)[0] not in (
            "nats", "tls", "ws", "wss"
        ):
            shown = without_credentials(url) if isinstance(url, str) else url
            return f"{shown!r} is not a URL like 'nats://host:4222'"
        problem = _url_problem(url)
        if problem is not None:
            return f"{without_credentials(url)!r} {problem}: not a URL like 'nats://host:4222'"
    return None


def _url_problem(url: str) -> str | None:
    """What is wrong with the server URL ``url``, in words, or None. nats-py took a port
    out of range and said "invalid connect url option" at each attempt, for good; a URL
    without a host retried for ever ("invalid hostname"); a path or query on a ``nats://``
    or ``tls://`` URL was dropped without a word (a ``ws://`` URL is an HTTP address:
    its path and query go to the server)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "cannot be read"
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    if port is not None and not 0 <= port <= 65535:
        return "has an invalid port (0 to 65535)"
    if not parts.hostname:
        return "names no host"
    if parts.scheme in ("nats", "tls") and (
            parts.query or parts.fragment or parts.path not in ("", "/")):
        return "has a path, a query or a fragment, which NATS takes none of"
    return None


def without_credentials(url: str) -> str:
    """``url`` as it is shown (``/status``, logs, errors): a user name and password in it
    become ``***`` (``nats://***@host:4222``), as the node's own secret is never shown.
    The bridge connects with the URL as given."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unreadable (an unclosed IPv6 bracket): what looks like user info
        return _USER_INFO.sub("://***@", url)
    if "@" not in parts.netloc:
        return _USER_INFO.sub("://***@", url)  # (a "/" in a password ends netloc early)
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def _check(key: str, value: Any) -> Any:
    if key in _STRINGS:
        if not isinstance(value, str):
            raise TypeError(f"NATS option {key} must be a string, got {value!r}")
        if key == "credentials":
            check_credentials(value)
        return value
    if key in _INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"NATS option {key} must be an integer, got {value!r}")
    problem = option_problem(key, value)
    if problem is not None:
        raise ValueError(f"NATS option {key} {problem}")
    return float(value) if key in _SECONDS else value


def option_problem(key: str, value: Any) -> str | None:
    """The problem with the value of a number option ``key`` (an integer option's value
    is an int), or None: also the settings file's check of ``[berrymq.nats]``."""
    if key in _SECONDS:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not 0 < value < math.inf):  # NaN and infinity too: nats-py overflows
            return f"must be a positive, finite number of seconds, got {value!r}"
        bound = too_long(value)  # no wait of the platform lasts that long (OverflowError)
        if bound is not None:
            return f"must be {bound}, got {value!r}"
    elif key == "max_reconnect_attempts":
        if value == 0 or value < -1:
            return (f"must be -1 (never give up) or 1 or more, got {value}"
                    + (" (nats-py would read 0 as never giving up)" if value == 0 else ""))
    elif key == "buffer_limit" and value < 1:  # 0 would refuse every message
        return (f"must be 1 or more, got {value}"
                + (" (no message could ever wait to be sent: every one would be refused)"
                   if value == 0 else ""))
    elif key in _INTEGERS and value < 0:
        return f"must be 0 or more, got {value}"
    return None


#: The options whose values :func:`option_problem` checks.
NUMBER_OPTIONS = _SECONDS | _INTEGERS


def credentials_problem(path: str) -> str | None:
    """What makes the ``credentials`` file ``path`` unusable to ``nats-py`` (read after
    the option's name), or None: a file that cannot be read or lacks a section
    (``nats-py`` would fail obscurely, or loop, on the first connection to a server that
    asks for it), or a missing ``nkeys`` package. Also the settings file's check of
    ``[berrymq.nats]`` (with a relative path taken relative to that file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return f"file {path} cannot be read ({exc.strerror or exc})"
    except UnicodeDecodeError as exc:
        return f"file {path} cannot be read (not UTF-8 text: {exc})"
    for section in ("BEGIN NATS USER JWT", "BEGIN USER NKEY SEED"):
        _, found, rest = text.partition(section)
        value = rest.partition("\n")[2].partition("\n")[0].strip()  # the line below
        if not found or not value or value.startswith("-"):
            return (f"file {path} is not a NATS credentials file (no {section!r} section "
                    "with a value)")
    if importlib.util.find_spec("nkeys") is None:
        return (f"file {path} needs the nkeys package: "
                "pip install nkeys (the plugin's [credentials] extra; in a berryMQ "
                "checkout: pip install './plugins/berrymq-nats[credentials]')")
    return None


def check_credentials(path: str) -> None:
    """Refuse a ``credentials`` file that ``nats-py`` could not use, naming the option
    and the file (see :func:`credentials_problem`)."""
    problem = credentials_problem(path)
    if problem is not None:
        raise ValueError(f"NATS option credentials {problem}")

"""Addresses of the JSON-RPC transports: ``scheme://host:port`` URLs, loopback hosts, and
what a server binds for a host."""

from __future__ import annotations

import collections
import ipaddress
import socket
from urllib.parse import SplitResult

from berrymq.fork_safe import ForkSafeLock
from berrymq.transports.base import url_parts

__all__ = ["bind_family", "host_and_port", "is_loopback", "netloc", "note_served",
           "served_here", "split_url", "unresolved"]

#: The addresses this process's JSON-RPC servers listen on (how many servers each), so
#: that a JSON-RPC 1.0 ``interconnect`` can tell a callback address of the process's own.
_SERVED: collections.Counter[tuple[str, int]] = collections.Counter()
_SERVED_LOCK = ForkSafeLock()


def netloc(host: str, port: int | str) -> str:
    """``host:port`` as it stands in a URL or a ``Host`` header: an IPv6 address in
    brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def split_url(url: str, scheme: str) -> tuple[str, int]:
    """``(host, port)`` of ``scheme://host:port``; ValueError naming what is wrong."""
    parts = url_parts(url)
    if parts.scheme.lower() != scheme:
        raise ValueError(f"{url!r} is not a {scheme}:// address")
    if "@" in parts.netloc:  # shown, stored and logged as given: never a password
        shown = f"{parts.scheme}://...@{parts.netloc.rpartition('@')[2]}"
        raise ValueError(f"{shown!r}: a {scheme}:// address holds no user name or password "
                         f"({scheme}://host:port; a node's secret is the secret setting)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a {scheme}:// address is {scheme}://host:port, nothing after")
    return host_and_port(url, parts, f"{scheme}://127.0.0.1:7000")


def host_and_port(url: str, parts: SplitResult, example: str) -> tuple[str, int]:
    """The host and port of ``url`` (split as ``parts``); ValueError naming what is wrong
    or missing, with ``example`` of a good address."""
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    if not parts.hostname or port is None:
        raise ValueError(f"{url!r} needs a host and a port, e.g. {example}")
    return parts.hostname, port


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def unresolved(host: str) -> str | None:
    """Why ``host``, a name, names no address (the resolver's words), or None when it
    is an address or resolves."""
    if host == "localhost":
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            socket.getaddrinfo(host, None)
        except OSError as exc:
            return str(exc.strerror or exc)
    return None


def bind_family(host: str) -> tuple[socket.AddressFamily, str]:
    """The address family and the host to bind for ``host`` (``localhost`` is 127.0.0.1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, "127.0.0.1" if host == "localhost" else host


def note_served(host: str, port: int, serving: bool) -> None:
    """A server of this process began (``serving``) or stopped listening on ``host:port``."""
    with _SERVED_LOCK:
        _SERVED[(host, port)] += 1 if serving else -1
        if _SERVED[(host, port)] <= 0:
            del _SERVED[(host, port)]


def served_here(port: int) -> bool:
    """Whether a loopback address with ``port`` reaches a server of this process (one
    listening there on a loopback or wildcard address)."""
    with _SERVED_LOCK:
        hosts = [host for host, served in _SERVED if served == port]
    return any(host in ("", "0.0.0.0", "::") or is_loopback(host) for host in hosts)

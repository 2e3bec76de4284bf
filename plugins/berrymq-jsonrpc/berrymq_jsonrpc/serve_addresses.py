"""The addresses ``berrymq serve`` binds (its ``--tcp``, ``--http`` and the options of
plugins, as ``--monitor``), every one checked before any is bound, so that a usage error
(exit status 2) leaves nothing served."""

from __future__ import annotations

from typing import Any

from berrymq.cli import UsageError
from berrymq_jsonrpc.addresses import bind_family, is_loopback, netloc, split_url
from berrymq_jsonrpc.protocol import SECRET_ENV_VAR

__all__ = ["checked_addresses", "refuse_duplicates", "server_url"]

#: An address an option of ``serve`` binds: the option as given (``--tcp :7000``), the
#: host and the port.
Named = tuple[str, str, int]


def server_url(scheme: str, addr: str, default_host: str = "127.0.0.1",
               option: str | None = None) -> str:
    """``scheme://host:port`` from ``HOST:PORT``, ``:PORT``, ``PORT`` or a full URL; a
    missing host is ``default_host``. Errors name the option ``--OPTION`` (by default
    ``--SCHEME``)."""
    option = option or scheme
    if "://" in addr:
        given = addr.split("://", 1)[0].lower()
        if given != scheme:
            raise UsageError(f"--{option} takes a {scheme}:// address, got {addr!r}")
        try:
            split_url(addr, scheme)  # a host and a port in range, nothing after
        except ValueError as exc:
            raise UsageError(f"--{option} {exc}") from None
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = "", addr
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--{option} {addr!r}: expected HOST:PORT, :PORT or PORT "
                         "(e.g. 127.0.0.1:7000)")
    return f"{scheme}://{netloc(host or default_host, port)}"


def _default_host(bus: Any, scheme: str) -> str:
    """The host ``serve`` binds for an address without one: the transport plugin's
    ``host`` setting (127.0.0.1 by default)."""
    return str(getattr(bus.transport(scheme), "default_host", "127.0.0.1"))


def checked_addresses(bus: Any, given: dict[str, list[str]]) -> tuple[list[str], list[Named]]:
    """The URLs ``serve`` is to bind, every one checked before any is bound (a usage
    error means nothing was done): its form, its port, and a secret for an address
    others can reach (the rule the transports apply when they bind); and each as the
    option that names it, its host and port, for :func:`refuse_duplicates`."""
    urls = []
    named = []
    for scheme, addrs in given.items():
        for addr in addrs:
            url = server_url(scheme, addr, _default_host(bus, scheme))
            try:
                host, port = split_url(url, scheme)
            except ValueError as exc:  # e.g. a host setting given in code, not checked
                raise UsageError(f"--{scheme} {addr!r}: {exc}") from None
            if not is_loopback(host) and not getattr(bus.transport(scheme), "secret", None):
                raise UsageError(f"refusing to serve {url}: it is not a loopback address, and "
                                 "a server others can reach needs a shared secret: set "
                                 f"'secret' in the settings file or {SECRET_ENV_VAR}")
            urls.append(url)
            named.append((f"--{scheme} {addr}", host, port))
    return urls, named


def refuse_duplicates(named: list[Named]) -> None:
    """A :class:`UsageError` for two options that name one address (one host, where
    ``localhost`` is 127.0.0.1, and one port): the second bind would fail once the first
    was serving. Port 0 is a free port of its own each time."""
    seen: dict[tuple[str, int], str] = {}
    for option, host, port in named:
        if port == 0:
            continue
        key = (bind_family(host)[1], port)
        if key in seen:
            raise UsageError(f"{seen[key]} and {option} are the same address "
                             f"{netloc(key[0], port)}: serve binds each address once")
        seen[key] = option

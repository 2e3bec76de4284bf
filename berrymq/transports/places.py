"""Where a connection leads, so that ``close_connection`` finds it however its address
is written."""

from __future__ import annotations

from berrymq.transports.base import url_parts

__all__ = ["place_of", "same_place"]


def place_of(url: str) -> tuple[str, str | None, int | None] | str:
    """Where ``url`` leads (scheme, host, port), so that two spellings of one address
    (``TCP://``, a trailing ``/``, spaces around) are found alike (``close_connection``);
    the URL itself when its port cannot be read (e.g. a list of servers)."""
    try:
        parts = url_parts(url.strip())
        return parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return url


def same_place(wanted: tuple[str, str | None, int | None] | str,
               place: tuple[str, str | None, int | None] | str) -> bool:
    """Whether ``place`` is ``wanted`` (both from :func:`place_of`); ``localhost`` stands
    for either loopback address, 127.0.0.1 and ::1 (two servers can listen on one port
    of each: they stay two places)."""
    if wanted == place:
        return True
    if isinstance(wanted, str) or isinstance(place, str):
        return False
    hosts = {wanted[1], place[1]}
    return (wanted[0] == place[0] and wanted[2] == place[2] and "localhost" in hosts
            and hosts <= _LOOPBACK_NAMES)


#: the names of this machine's loopback addresses (see :func:`same_place`)
_LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1", "::1"))

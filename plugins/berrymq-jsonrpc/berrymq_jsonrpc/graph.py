"""``berrymq graph URL``: a running node's picture, asked for with the method ``network``.

The request goes through the transport's own client, as every other request does; the
answer renders like a local description (:func:`berrymq.network.render`).
"""

from __future__ import annotations

from typing import Any

from berrymq.default import get_bus
from berrymq.errors import RemoteError, TransportError
from berrymq.network import check_description
from berrymq.transports.base import url_parts
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.status_cli import get_json
from berrymq_jsonrpc.transport import RemoteTransport

__all__ = ["ask_network", "checked_description", "fetch"]


#: How the HTTP client reports a POST refused by an address that serves GET only (the
#: status routes of ``serve --monitor``).
_GET_ONLY = "answered HTTP 405"


def _get_network(netloc: str, timeout: float, secret: str | None) -> tuple[str, object]:
    url = f"http://{netloc}/network"
    return url, get_json(url, secret=secret, timeout=timeout)


def checked_description(url: str, result: object) -> dict[str, Any]:
    """``result`` if it is a description the renderers can draw, else the TransportError
    naming ``url`` and the first field that is wrong (a traceback from the renderers
    before)."""
    if not isinstance(result, dict):
        raise TransportError(f"{url} answered the network request with {result!r:.80}")
    try:
        check_description(result)
    except ValueError as exc:
        raise TransportError(f"{url} answered the network request with a malformed "
                             f"description: {exc}") from None
    return result


def fetch(url: str, timeout: float = 10.0, secret: str | None = None) -> dict[str, Any]:
    """Ask the node at ``url`` (``http://host:port`` or ``tcp://host:port``) for its
    description with the JSON-RPC method ``network``; an ``http://`` address that serves
    GET only (``serve --monitor``) is asked with ``GET /network`` instead.

    ``secret`` (default: the transport's ``secret`` setting, else the ``BERRYMQ_SECRET``
    environment variable) is sent when given.

    :raises ValueError: ``url`` is not a node address.
    :raises berrymq.TransportError: the node cannot be reached or answered nonsense.
    :raises berrymq.RemoteError: the node answered with a JSON-RPC error.
    """
    return checked_description(*ask_network(url, timeout, secret))


def ask_network(url: str, timeout: float = 10.0, secret: str | None = None
                ) -> tuple[str, object]:
    """The answer of the node at ``url`` to the ``network`` request, unchecked, and the
    address that gave it (``/network`` of a ``--monitor`` address): :func:`fetch` without
    the check, for a caller that tells a node it cannot reach from one that answered
    nonsense (``berrymq graph`` probes the port only for the first).

    :raises ValueError: ``url`` is not a node address.
    :raises berrymq.TransportError: the node cannot be reached.
    :raises berrymq.RemoteError: the node answered with a JSON-RPC error.
    """
    parts = url_parts(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if scheme not in ("http", "tcp") or not parts.hostname or port is None:
        raise ValueError(
            f"berrymq graph needs a node address such as 'tcp://127.0.0.1:7000' or "
            f"'http://127.0.0.1:8000', got {url!r}"
        )
    transport = get_bus().transport(scheme)
    if not isinstance(transport, RemoteTransport):
        raise ValueError(f"the {scheme}:// transport does not speak JSON-RPC")
    if secret is None:
        secret = transport.secret  # the transport's secret setting, else BERRYMQ_SECRET
    try:
        result = transport.call_once(url, p.METHOD_NETWORK, {}, timeout=timeout, secret=secret)
    except RemoteError:
        raise
    except (TransportError, OSError) as exc:
        if scheme == "http" and _GET_ONLY in str(exc):
            # a --monitor address: no JSON-RPC there, but the same picture at GET /network
            return _get_network(parts.netloc, timeout, secret)
        raise TransportError(f"cannot ask {url} for its network: {exc}") from exc
    return url, result

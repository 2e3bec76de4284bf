"""berryMQ between processes over JSON-RPC 2.0 on HTTP (``http://host:port``).

Installed, it claims the URL scheme ``http`` (and ``(host, port)`` tuples) for
:func:`berrymq.init_connection`, :func:`berrymq.interconnect`,
:func:`berrymq.connect_oneway` and :func:`berrymq.connect_via_queue`. The protocol is
:mod:`berrymq_jsonrpc.protocol`; this package only adds the HTTP server and client.
"""

from __future__ import annotations

from berrymq_jsonrpc_http.plugin import HttpChannel, HttpTransport

__all__ = ["HttpChannel", "HttpTransport"]

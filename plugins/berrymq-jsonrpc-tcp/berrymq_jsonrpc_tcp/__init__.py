"""berryMQ between processes over JSON-RPC 2.0 on a TCP stream (``tcp://host:port``).

Each request and each response is one line of UTF-8 JSON. One connection carries both
directions of an interconnection. The protocol is :mod:`berrymq_jsonrpc.protocol`; this
package only adds the TCP server and client.
"""

from __future__ import annotations

from berrymq_jsonrpc_tcp.plugin import LineChannel, TcpTransport

__all__ = ["LineChannel", "TcpTransport"]

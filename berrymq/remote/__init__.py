"""The transport-neutral JSON-RPC layer that the ``jsonrpc-http`` and ``jsonrpc-tcp``
plugins share.

- :mod:`berrymq.remote.protocol`: method names, error codes, limits and framing rules;
- :mod:`berrymq.remote.jsonrpc`: encoding, decoding and dispatch (the only module that
  imports ``jsonrpcserver`` and ``jsonrpcclient``, whose known defects it neutralises);
- :mod:`berrymq.remote.service`: the server side: sessions (tokens), queues, TTL expiry;
- :mod:`berrymq.remote.client`: channels, the coalescing outbox and outgoing links;
- :mod:`berrymq.remote.transport`: :class:`RemoteTransport`, the
  :class:`~berrymq.transports.base.Transport` both plugins subclass with their sockets.
"""

from __future__ import annotations

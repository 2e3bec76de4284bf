"""The transport-neutral JSON-RPC layer that the ``jsonrpc-http`` and ``jsonrpc-tcp``
plugins share.

- :mod:`berrymq_jsonrpc.protocol`: method names, error codes, limits and framing rules;
- :mod:`berrymq_jsonrpc.jsonrpc`: encoding, decoding and dispatch (the only module that
  imports ``jsonrpcserver``); :mod:`berrymq_jsonrpc.jsonrpc_client`: requests built and
  replies read (the only one that imports ``jsonrpcclient``); the two neutralise the
  libraries' known defects;
- :mod:`berrymq_jsonrpc.service`: the server side: the methods;
  :mod:`berrymq_jsonrpc.queue_methods`: those of style 03, on the sessions' queues;
  :mod:`berrymq_jsonrpc.session_table`: the sessions they open, found by token and
  expired; :mod:`berrymq_jsonrpc.sessions`: what a session keeps (its bounded queue) and
  the threads for what may wait; :mod:`berrymq_jsonrpc.params`: params checked, messages
  read from the wire;
- :mod:`berrymq_jsonrpc.channel`: requests to one peer and their replies, on the I/O loop;
- :mod:`berrymq_jsonrpc.client`: the coalescing outbox and outgoing links;
- :mod:`berrymq_jsonrpc.transport`: :class:`RemoteTransport`, the
  :class:`~berrymq.transports.base.Transport` both plugins subclass with their sockets;
  :mod:`berrymq_jsonrpc.connection`: its connections, in the core's three styles;
  :mod:`berrymq_jsonrpc.settings`: the settings every transport plugin takes;
  :mod:`berrymq_jsonrpc.addresses`: URLs, loopback hosts and what a server binds;
- the node's counters are the core's (:mod:`berrymq.stats`); :mod:`berrymq_jsonrpc.status`: them as
  ``/status`` and ``/metrics``; :mod:`berrymq_jsonrpc.monitor`: the status routes and the
  access rule (served by the ``jsonrpc-http`` plugin, on its port and on ``serve
  --monitor``'s); :mod:`berrymq_jsonrpc.status_cli`: ``berrymq status`` (docs/status.md).
"""

from __future__ import annotations

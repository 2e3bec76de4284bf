"""What transport plugins take from the core beyond the transport contract.

A plugin distribution is released apart from the core (``berrymq>=0.4``), so it imports
the core's helpers from here, never from its private modules (``berrymq._...``), which
may change shape in any release:

- :func:`ask_local`, :class:`Refused` and :func:`replies_so_far`: ``ask`` answered by
  this process's receivers, for a node answering an ``ask`` from a peer;
- :func:`waits_for_room`: whether the calling thread may wait for room in an outgoing
  buffer (a thread delivering a peer's messages may not: it would stall that peer);
- :func:`drop_tracebacks`: let go of the tracebacks of failures that are counted or
  answered rather than raised, so that the messages they hold are freed at once;
- :data:`LOSSES`: the bus's count of messages accepted and then not delivered
  (``bus.extensions[LOSSES]``), which ``berrymq status`` and ``flush`` report;
- :class:`SeenUids`: the uids of messages already received, for a transport that may
  get the same message twice (a broker with several paths to a node).
"""

from __future__ import annotations

from berrymq._ask_local import Refused, ask_local, replies_so_far
from berrymq._backlog import waits_for_room
from berrymq._delivery import drop_tracebacks
from berrymq._losses import LOSSES
from berrymq._uids import SeenUids

__all__ = ["LOSSES", "Refused", "SeenUids", "ask_local", "drop_tracebacks", "replies_so_far",
           "waits_for_room"]

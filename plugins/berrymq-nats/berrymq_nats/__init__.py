"""berryMQ's NATS bridge: processes on many hosts share one bus through NATS.

Activate it with ``servers`` in the ``[berrymq.nats]`` table of the settings file, or with
:func:`berrymq.connect_broker` in code. See ``docs/scaling.md`` of berryMQ.
"""

from __future__ import annotations

from berrymq_nats.bridge import NatsBridge
from berrymq_nats.losses import Losses
from berrymq_nats.options import BrokerBufferFull, BrokerOptions
from berrymq_nats.shared import from_broker
from berrymq_nats.subjects import SubjectMap, escape_token, unescape_token
from berrymq_nats.transport import NatsTransport, transport_of

__version__ = "0.4.0"

__all__ = [
    "BrokerBufferFull",
    "BrokerOptions",
    "Losses",
    "NatsBridge",
    "NatsTransport",
    "SubjectMap",
    "__version__",
    "escape_token",
    "from_broker",
    "transport_of",
    "unescape_token",
]

"""The NATS link: what every connection style of the bridge sends and asks through.

The styles themselves are the core's (:class:`berrymq.transports.styles.LinkConnection`):
``interconnect`` adds this link to the bus as a forwarder, so every non-local message is
published; ``oneway`` adds only its asker, so the link publishes what ``send`` sends and
carries ``ask``. ``connect_via_queue`` has no NATS form (the broker keeps no queue per
client) and is refused at connect time (:meth:`NatsTransport.connect_via_queue
<berrymq_nats.transport.NatsTransport.connect_via_queue>`).

The link owns no connection: the bridge keeps the ``nats-py`` client, its reconnections
and subscriptions; the link encodes each message in berryMQ's wire form
(:func:`berrymq.wire.encode_message`) and hands it to the bridge's outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from berrymq.identifier import Identifier
from berrymq.transports.base import Link
from berrymq.wire import encode_message
from berrymq_nats.client import check_payload

if TYPE_CHECKING:
    from berrymq.message import Message
    from berrymq_nats.bridge import NatsBridge

__all__ = ["NatsLink"]


class NatsLink(Link):
    """Publishes messages to NATS and asks through it, for one :class:`NatsBridge`."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self.address = bridge.address

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        """Publish ``message`` on its subject: the bus calls this for every non-local
        message, which its own receivers have too, so the groups of this process's shared
        queues that took it go along (``taken``: their members elsewhere skip it)."""
        self._publish(message, reply_to, self.bridge.shared.taken(message[0]))

    def send(self, message: Message) -> None:
        """Publish one message of ``send``, which no queue of this process took."""
        self._publish(message, None, ())

    def send_batch(self, messages: Sequence[Message], reply_to: Identifier | None = None) -> None:
        """Publish ``messages`` in order (NATS keeps the order of one connection); none
        was delivered here, so no queue of this process took them."""
        for message in messages:
            self._publish(message, reply_to, ())

    def _publish(self, message: Message, reply_to: Identifier | None,
                 taken: tuple[str, ...]) -> None:
        """A message without a uid gets one here: a process may receive a message through
        two of its subscriptions and delivers it once, by its uid."""
        bridge = self.bridge
        if message[4] is None:
            message = bridge.bus.stamp(message)
        ident = message[0]
        payload = encode_message(message, reply_to, taken=taken).encode()
        check_payload(bridge.client, ident, payload)
        bridge.outbox.put((bridge.subjects.subject(ident), payload, ""), ident)
        bridge.stats.message_out(ident, self.address, len(payload))  # stats: accepted

    #: :meth:`request` returns within its timeout, with the replies that came by then (see
    #: :class:`berrymq.node.Requester`): the core waits for them rather than cutting it off
    keeps_deadline = True

    def request(self, message: Message, timeout: float) -> list[Any]:
        """Publish ``message`` as a NATS request and gather every process's replies
        (:meth:`berrymq_nats.asking.Asking.request`)."""
        return self.bridge.asking.request(message, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """:meth:`NatsBridge.flush`."""
        return self.bridge.flush(timeout)

    def close(self) -> None:
        """Nothing of its own: the bridge has sent what waited and disconnected by then
        (:func:`berrymq_nats.closing.close_bridge`), and its closed outbox refuses what
        comes later with :class:`berrymq.ConnectionClosed`."""

    def __repr__(self) -> str:
        return f"<NatsLink {self.address} bus={self.bridge.bus.name} {self.bridge.state}>"

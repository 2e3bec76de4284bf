"""What a node's counters (``berrymq.stats``) cost on the way of a message.

Run it as a script (it is not a test)::

    python bench/status_counters.py

A node's :class:`~berrymq_jsonrpc.service.Service` takes ``send_messages`` requests of 100
small messages (no receiver: the counting is as large a share as it can be) with the real
counters, and twice with counters that do nothing (the second is the control: how much two
equal runs differ on a shared machine), taken in turn for several rounds so that load from
elsewhere weighs on all alike. It prints messages per second of each, the ratios, and the
cost of one counted message in nanoseconds.
"""

from __future__ import annotations

import json
import statistics
import time

from berrymq_jsonrpc.service import Service

from berrymq.bus import Bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings
from berrymq.stats import NodeStats

BATCH = 100
ROUNDS = 9
BUDGET = 0.5  # seconds per round and side


class _NoStats(NodeStats):
    """Counters that count nothing: the baseline."""

    def message_in(self, identifier: object, peer: object) -> None:
        pass

    def messages_in(self, identifiers: list[object], peer: object) -> None:
        pass

    def exchanged(self, received: int, sent: int) -> None:
        pass


def _rate(service: Service, body: bytes) -> float:
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < BUDGET:
        service.handle(body)
        count += BATCH
    return count / elapsed


def main() -> None:
    bus = Bus(plugins=PluginHost(Settings(), entry_points=False), name="bench")
    service = Service(bus)
    token = service.open_session("oneway", 86_400.0).token
    messages = [["bench:tick", [i], {}] for i in range(BATCH)]
    body = json.dumps({"jsonrpc": "2.0", "method": "send_messages",
                       "params": {"token": token, "messages": messages}}).encode()
    sides = {"without counters": _NoStats(), "with counters": NodeStats(),
             "without, again": _NoStats()}  # the control: how far two equal runs differ
    rates: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for round_ in range(ROUNDS):
        for name in order if round_ % 2 == 0 else reversed(order):  # ABC CBA ...
            service.stats = sides[name]
            rates[name].append(_rate(service, body))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["without counters"]
    print(f"send_messages x{BATCH}, no receiver, {ROUNDS} rounds of {BUDGET}s per side, medians:")
    for name, value in medians.items():
        print(f"  {name:17} {value:12,.0f} messages/s   ratio {value / base:.3f}")
    cost = (1 / medians["with counters"] - 1 / base) * 1e9
    print(f"  cost per counted message: {cost:,.0f} ns (compare the control's ratio)")
    service.close()
    bus.close()


if __name__ == "__main__":
    main()

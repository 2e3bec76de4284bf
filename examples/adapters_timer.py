"""Adapters: ``IntervalTimer(id_name, interval)`` sends ``id_name:tick`` every
``interval`` seconds until stopped (here by leaving the ``with`` block).

Expected output:
    tick 1
    tick 2
    tick 3
    stopped after 3 ticks
"""

from __future__ import annotations

import berrymq

ticks = berrymq.Queue("heartbeat:tick")

with berrymq.IntervalTimer("heartbeat", 0.1) as timer:
    for _ in range(3):
        message = ticks.get(timeout=5)
        print("tick", message.tick)  # keyword arguments are attributes too

print(f"stopped after {timer.count} ticks")

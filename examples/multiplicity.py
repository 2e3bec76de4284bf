"""``set_multiplicity(n)``: receivers run on a pool of n worker threads, so ``twitter``
returns at once and slow receivers overlap. ``set_multiplicity(0)`` goes back to calling
receivers in the sender's thread; ``berrymq.join()`` waits for the pool.

Expected output:
    sent 4 slow messages without waiting for the receivers
    all 4 done in parallel: True
    synchronous again: received in the sender's thread: True
    set_multiplicity(-1): ValueError
"""

from __future__ import annotations

import threading

import berrymq

all_running = threading.Barrier(4)      # passes only when 4 receivers run at the same time
threads = []


@berrymq.following_function("slow:*")
def slow(message):
    threads.append(threading.current_thread())
    if message.action == "work":
        all_running.wait(10)            # would time out if the receivers ran one by one


berrymq.set_multiplicity(4)
for _ in range(4):
    berrymq.twitter("slow:work")
print("sent 4 slow messages without waiting for the receivers")
berrymq.join(10)
print("all 4 done in parallel:", not all_running.broken and len(threads) == 4)

berrymq.set_multiplicity(0)
berrymq.twitter("slow:quick")
print("synchronous again: received in the sender's thread:",
      threads[-1] is threading.current_thread())

try:
    berrymq.set_multiplicity(-1)
except ValueError:
    print("set_multiplicity(-1): ValueError")

"""Pull API: a ``Queue`` stores every message matching its pattern, to take later.

Expected output:
    stored: 3
    get: task:run (1,)
    get: task:stop (2,)
    get_nowait: task:run (3,)
    empty: nothing more
"""

from __future__ import annotations

import berrymq

queue = berrymq.Queue("task:*")

berrymq.twitter("task:run", 1)
berrymq.twitter("other:run", 0)        # does not match task:*: not stored
berrymq.twitter("task:stop", 2)
berrymq.twitter("task:run", 3)
print("stored:", queue.qsize())

message = queue.get()                  # would block until a message arrives
print("get:", message.id, message.args)
message = queue.get(timeout=1.0)       # waits at most one second
print("get:", message.id, message.args)
message = queue.get_nowait()           # the same as get(block=False)
print("get_nowait:", message.id, message.args)

try:
    queue.get_nowait()
except berrymq.Empty:
    print("empty: nothing more")
queue.close()

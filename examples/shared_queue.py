"""Shared queues: competing consumers. Queues created with ``shared=True`` and the same
pattern share one store; each message is taken by exactly one of them, so a few worker
threads can split the work. A standalone queue of the same pattern still gets a copy of
everything.

Expected output:
    jobs done: 100, each exactly once: True
    both workers took part: True
    the standalone queue saw all 100: True
"""

from __future__ import annotations

import threading

import berrymq

audit = berrymq.Queue("job:*")                       # standalone: a copy of every job
queues = [berrymq.Queue("job:*", shared=True) for _ in range(2)]
done: dict[str, list[int]] = {"worker-0": [], "worker-1": []}
first_jobs_taken = threading.Barrier(2)
all_done = threading.Event()


def work(name, queue):
    for message in queue:                            # until this queue is closed
        done[name].append(message.args[0])
        if len(done[name]) == 1:
            first_jobs_taken.wait(10)                # each worker takes at least one job
        if len(done["worker-0"]) + len(done["worker-1"]) >= 100:
            all_done.set()


workers = [
    threading.Thread(target=work, args=(f"worker-{i}", q)) for i, q in enumerate(queues)
]
for worker in workers:
    worker.start()
for n in range(100):
    berrymq.twitter("job:run", n)
all_done.wait(10)
for queue in queues:
    queue.close()                                    # ends each worker's loop
for worker in workers:
    worker.join()

taken = sorted(done["worker-0"] + done["worker-1"])
print(f"jobs done: {len(taken)}, each exactly once: {taken == list(range(100))}")
print("both workers took part:", all(done.values()))
print("the standalone queue saw all 100:", audit.qsize() == 100)

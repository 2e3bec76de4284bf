"""Style 01, interconnect: two processes forward every non-local message to each other.

Run ``python ipc_style01_interconnect.py``: this process (*main*) serves its bus at
tcp://127.0.0.1:<free port> and starts its *peer* (the same file with the arguments
``peer URL``). The peer calls ``interconnect(URL)``; from then on ``twitter`` in either
process also reaches the receivers of the other, over that one TCP connection in both
directions. Neither side cares where a message comes from. Names starting with ``_`` are
local: the peer's ``_peer:log`` never leaves it (messages on a connection keep their
order, so had it crossed, it would have arrived before ``peer:log``).

Needs the ``jsonrpc-tcp`` plugin; in a checkout of berryMQ:
``pip install ./plugins/berrymq-jsonrpc ./plugins/berrymq-jsonrpc-tcp``.

Expected output:
    main: serving, starting the peer
    peer: interconnected
    main: got peer:log ('hello from the peer',)
    peer: got main:log ('hello from main',)
    main: the peer is done
"""

from __future__ import annotations

import queue
import subprocess
import sys

import berrymq
from berrymq import Message


def peer(url: str) -> None:
    """The second process: interconnect, send, and wait for the answer."""
    answers: queue.SimpleQueue[Message] = queue.SimpleQueue()
    berrymq.regist_function("main:*", answers.put, weak=False)
    berrymq.interconnect(url, ttl=60)
    print("interconnected", flush=True)
    berrymq.twitter("_peer:log", "local: stays in this process")
    berrymq.twitter("peer:log", "hello from the peer")
    message = answers.get(timeout=30)
    print(f"got {message.id} {message.args}", flush=True)
    berrymq.close_connection()


def main() -> None:
    """The first process: serve, start the peer, answer it."""
    from_peer: queue.SimpleQueue[Message] = queue.SimpleQueue()
    berrymq.regist_function("*:log", from_peer.put, weak=False)
    url = berrymq.init_connection("tcp://127.0.0.1:0")
    print("main: serving, starting the peer")
    with subprocess.Popen([sys.executable, __file__, "peer", str(url)],
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        print("peer:", child.stdout.readline().strip())  # interconnected
        message = from_peer.get(timeout=30)
        print(f"main: got {message.id} {message.args}")
        berrymq.twitter("main:log", "hello from main")  # goes to the peer, too
        print("peer:", child.stdout.readline().strip())  # got main:log
        if child.wait(timeout=30) == 0:
            print("main: the peer is done")
    berrymq.get_bus().close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["peer"]:
        peer(sys.argv[2])
    else:
        main()

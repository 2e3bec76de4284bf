"""Style 02, one way: a client process only sends; the server's receivers get the messages.

Suited to logging. Run ``python ipc_style02_oneway.py``: this process is the log server.
It serves its bus over JSON-RPC on HTTP at a ``(host, port)`` tuple (port 0: a free
one), as in berryMQ 0.2, and starts a *client* (the same file with the arguments
``client HOST PORT``) that calls ``connect_oneway((host, port))`` and sends three log
messages with ``send_message``. ``close_connection()`` sends whatever is still queued
before it returns, so nothing is lost when the client exits right after.

Needs the ``jsonrpc-http`` plugin; in a checkout of berryMQ:
``pip install ./plugins/berrymq-jsonrpc ./plugins/berrymq-jsonrpc-http``.

Expected output:
    server: listening over HTTP, starting a client
    server: worker:log ('step 1 of 3',) {'pid': 'client'}
    server: worker:log ('step 2 of 3',) {'pid': 'client'}
    server: worker:log ('step 3 of 3',) {'pid': 'client'}
    server: the client sent 3 messages and exited
"""

from __future__ import annotations

import queue
import subprocess
import sys

import berrymq
from berrymq import Message


def client(host: str, port: int) -> None:
    """The sending process."""
    berrymq.connect_oneway((host, port), ttl=60)
    for step in range(1, 4):
        berrymq.send_message("worker:log", f"step {step} of 3", pid="client")
    berrymq.close_connection()  # waits until the server has every message


def server() -> None:
    """The receiving process: serve, start the client, print what it logs."""
    received: queue.SimpleQueue[Message] = queue.SimpleQueue()

    @berrymq.following_function("*:log")
    def log(message: Message) -> None:
        received.put(message)

    address = berrymq.init_connection(("127.0.0.1", 0))  # a tuple in, a tuple out
    assert isinstance(address, tuple)
    host, port = address
    print("server: listening over HTTP, starting a client")
    child = subprocess.run([sys.executable, __file__, "client", host, str(port)],
                           check=False, timeout=60)
    count = 0
    while not received.empty():
        message = received.get()
        print(f"server: {message.id} {message.args} {message.kwargs}")
        count += 1
    if child.returncode == 0:
        print(f"server: the client sent {count} messages and exited")
    berrymq.get_bus().close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client(sys.argv[2], int(sys.argv[3]))
    else:
        server()

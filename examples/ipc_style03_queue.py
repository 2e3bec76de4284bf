"""Style 03, via a queue: the server keeps a queue for the client, which pulls from it.

The usual message-queue style. Run ``python ipc_style03_queue.py``: this process (the
*server*) serves its bus at tcp://127.0.0.1:<free port> and starts a *client* (the same
file with the arguments ``client URL``). The client calls
``connect_via_queue(URL, "task:*")``: from then on the server stores every ``task:*``
message for it (and nothing else), and the client pulls them with ``berrymq.get()`` and
``berrymq.get_nowait()``, which raises ``berrymq.Empty`` when nothing is stored. The
client may also send with ``send_message``: here it reports how many tasks it ran.

Needs the ``jsonrpc-tcp`` plugin; in a checkout of berryMQ:
``pip install ./plugins/berrymq-jsonrpc ./plugins/berrymq-jsonrpc-tcp``.

Expected output:
    server: serving, starting a client
    client: queue of task:* ready
    client: got task:run ('a',)
    client: got task:run ('b',)
    client: got task:stop ()
    client: nothing more (Empty)
    server: the client reports result:done (2,)
"""

from __future__ import annotations

import queue
import subprocess
import sys

import berrymq
from berrymq import Message


def client(url: str) -> None:
    """The pulling process."""
    berrymq.connect_via_queue(url, "task:*", ttl=60)
    print("queue of task:* ready", flush=True)
    ran = 0
    while True:
        message = berrymq.get(timeout=30)
        print(f"got {message.id} {message.args}", flush=True)
        if message.action == "stop":
            break
        ran += 1
    try:
        berrymq.get_nowait()
    except berrymq.Empty:
        print("nothing more (Empty)", flush=True)
    berrymq.send_message("result:done", ran)
    berrymq.close_connection()


def server() -> None:
    """The serving process: the queue lives here; the tasks are sent here."""
    results: queue.SimpleQueue[Message] = queue.SimpleQueue()
    berrymq.regist_function("result:*", results.put, weak=False)
    url = berrymq.init_connection("tcp://127.0.0.1:0")
    print("server: serving, starting a client")
    with subprocess.Popen([sys.executable, __file__, "client", str(url)],
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        print("client:", child.stdout.readline().strip())  # the queue exists now
        berrymq.twitter("task:run", "a")
        berrymq.twitter("log:info", "not a task: the client's queue does not take it")
        berrymq.twitter("task:run", "b")
        berrymq.twitter("task:stop")
        for line in child.stdout:
            print("client:", line.strip())
        child.wait(timeout=30)
    message = results.get(timeout=30)
    print(f"server: the client reports {message.id} {message.args}")
    berrymq.get_bus().close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client(sys.argv[2])
    else:
        server()

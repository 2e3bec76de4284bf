"""The network picture of a running node, over JSON-RPC: what ``berrymq graph URL`` does.

This process serves its bus at tcp://127.0.0.1:<free port> (needs the ``jsonrpc-tcp``
plugin; in a checkout of berryMQ:
``pip install ./plugins/berrymq-jsonrpc ./plugins/berrymq-jsonrpc-tcp``), then asks that
address for its description with the JSON-RPC method ``network`` and prints it as Mermaid.
From a shell, ``berrymq graph tcp://127.0.0.1:PORT --format mermaid`` prints the same.

Expected output (the port and node id differ):
    serving at tcp://127.0.0.1:PORT
    flowchart LR
      p0(["order:*"])
      r0("function<br/>__main__.on_order")
      ...
"""

from __future__ import annotations

from berrymq_jsonrpc.graph import fetch

import berrymq
from berrymq import Message, network


@berrymq.following_function("order:*")
def on_order(message: Message) -> None:
    pass


if __name__ == "__main__":
    address = berrymq.init_connection("tcp://127.0.0.1:0")
    print("serving at", address)
    description = fetch(str(address))  # one JSON-RPC request: method "network"
    print(network.render(description, "mermaid"), end="")
    berrymq.close_connection()
    berrymq.get_bus().close()

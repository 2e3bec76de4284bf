"""The network picture: ``berrymq.show_network()`` draws the receivers, the patterns they
follow and the adapters that send, as Graphviz DOT (or Mermaid with ``format="mermaid"``).

Run it and render the output:

    python examples/network_picture.py | dot -Tpng -o network.png
    python examples/network_picture.py mermaid

docs/network.png was made this way.
"""

from __future__ import annotations

import sys

import berrymq
from berrymq import Follower, Message, following


@berrymq.following_function("*:log")
def write_log(message: Message) -> None:
    pass


def only_urgent(message: Message) -> bool:
    return bool(message.kwargs.get("urgent"))


@berrymq.following_function("job:*", guard_condition=only_urgent)
def page_someone(message: Message) -> None:
    pass


class Dashboard(metaclass=Follower):
    @following("job:done")
    def show_done(self, message: Message) -> None:
        pass

    @following("heartbeat:tick")
    def refresh(self, message: Message) -> None:
        pass


def main(format: str) -> None:
    dashboard = Dashboard()
    tasks = berrymq.Queue("job:start")
    workers = berrymq.Queue("job:*", shared=True)
    berrymq.twitter("job:start", "build")
    # Another node (here a bus in this process, linked like a remote one would be).
    peer = berrymq.Bus(name="peer")
    peer.transport("local").listen("local://peer")
    berrymq.interconnect("local://peer")
    with berrymq.IntervalTimer("heartbeat", 60), \
            berrymq.FileObserver("/var/log/*.log", "logfile", interval=5):
        sys.stdout.write(berrymq.show_network(format=format))
    berrymq.close_connection()
    peer.close()
    del dashboard, tasks, workers


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dot")

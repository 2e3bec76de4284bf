"""A berryMQ process for the NATS tests: joins NATS, then obeys one command per stdin line.

Run as ``python worker.py NATS_URL[,URL...] [reconnect_wait]``, or ``python worker.py
settings`` to join NATS as the settings file named by ``BERRYMQ_CONFIG`` says (the bus is
the default bus, started as an application's would be). Each command gets one
answer line on stdout (``error ...`` when it failed). Commands:

    ping                       -> pong
    follow PATTERN             record every message the pattern gets
    reply PATTERN VALUE        a receiver that returns VALUE (JSON) to ask
    hold PATTERN               a receiver that returns only once released (or after 30 s)
    release                    let the held receivers return
    node                       this process's node id
    queue PATTERN shared|own   make a Queue
    take PATTERN SECONDS       every message of the queue until SECONDS of silence
    wait N SECONDS             wait until N messages were recorded
    received                   the recorded messages as JSON [[id, args, kwargs], ...]
    send ID ARGS_JSON          twitter(ID, *args)
    many ID N                  twitter(ID, i) for i in range(N)
    ask ID SECONDS             ask(ID, timeout=SECONDS) as JSON
    flush                      wait until NATS has every subscription and message
    leave                      end the program without closing anything
    status                     the bridge's status line
    peers                      the node ids the bridge knows, as JSON
    exit
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from berrymq_nats import plugin as nats_plugin
from berrymq_nats import transport_of

import berrymq
from berrymq.plugins import PluginHost
from berrymq.settings import Settings, load_settings


def main() -> None:
    url = sys.argv[1]
    reconnect_wait = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    settings = load_settings() if url == "settings" else Settings()
    host = PluginHost(settings, entry_points=False, extra_plugins=[("nats", nats_plugin)])
    bus = berrymq.Bus(plugins=host, name="worker")
    berrymq.set_bus(bus)
    bridge: Any
    if url == "settings":
        bus.start()  # the plugin joins NATS as the settings say
        transport = transport_of(bus)
        assert transport is not None and transport.bridge is not None
        bridge = transport.bridge
        bridge.wait_connected(5)
    else:
        bridge = berrymq.connect_broker(url.split(","), reconnect_wait=reconnect_wait,
                                        connect_timeout=5)
    got: list[list[Any]] = []
    cond = threading.Condition()
    queues: dict[str, berrymq.Queue] = {}
    keep: list[Any] = []
    released = threading.Event()

    def record(message: berrymq.Message) -> None:
        with cond:
            got.append([str(message.identifier), list(message.args), message.kwargs])
            cond.notify_all()

    for line in sys.stdin:
        words = line.split(" ", 2)
        command = words[0].strip()
        try:
            if command == "ping":
                answer = "pong"
            elif command == "follow":
                keep.append(berrymq.regist_function(words[1].strip(), record, weak=False))
                answer = "ok"
            elif command == "reply":
                value = json.loads(words[2])
                keep.append(berrymq.regist_function(words[1], lambda m, v=value: v, weak=False))
                answer = "ok"
            elif command == "hold":
                keep.append(berrymq.regist_function(words[1].strip(),
                                                    lambda m: released.wait(30), weak=False))
                answer = "ok"
            elif command == "release":
                released.set()
                answer = "ok"
            elif command == "node":
                answer = bus.node_id
            elif command == "queue":
                queues[words[1]] = berrymq.Queue(words[1], shared=words[2].strip() == "shared")
                answer = "ok"
            elif command == "take":
                queue = queues[words[1]]
                taken = []
                while True:
                    try:
                        message = queue.get(timeout=float(words[2]))
                    except berrymq.Empty:
                        break
                    taken.append([str(message.identifier), list(message.args)])
                answer = json.dumps(taken)
            elif command == "wait":
                wanted, seconds = int(words[1]), float(words[2])
                deadline = time.monotonic() + seconds
                with cond:
                    while len(got) < wanted and time.monotonic() < deadline:
                        cond.wait(deadline - time.monotonic())
                    answer = str(len(got))
            elif command == "received":
                with cond:
                    answer = json.dumps(got)
            elif command == "send":
                berrymq.twitter(words[1], *json.loads(words[2]))
                answer = "ok"
            elif command == "many":
                for i in range(int(words[2])):
                    berrymq.twitter(words[1], i)
                answer = "ok"
            elif command == "ask":
                replies = berrymq.ask(words[1], timeout=float(words[2]))
                answer = json.dumps([r if not isinstance(r, berrymq.ReplyError) else
                                     {"error": r.to_json()} for r in replies])
            elif command == "flush":
                answer = "ok" if bridge.flush(10.0) else "error flush timed out"
            elif command == "status":
                answer = bridge.status()
            elif command == "peers":
                answer = json.dumps(sorted(bridge.asking.peers))
            elif command == "leave":  # end without closing: the atexit hook sends the rest
                print("bye", flush=True)
                return
            elif command == "exit":
                released.set()
                bus.close()
                print("bye", flush=True)
                return
            else:
                answer = f"error unknown command {command!r}"
        except Exception as exc:
            answer = f"error {type(exc).__name__}: {exc}"
        print(answer.replace("\n", " "), flush=True)


if __name__ == "__main__":
    main()

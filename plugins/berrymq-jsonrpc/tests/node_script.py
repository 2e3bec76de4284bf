"""A berryMQ node in its own process, driven by JSON commands on stdin (one per line).

Waiting times in commands are called ``wait`` (seconds).

Each command answers one line on stdout: ``{"ok": value}`` or ``{"error": "Type: text"}``.
Run by the tests in ``tests/remote`` and the plugins' tests; not a test module itself.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import berrymq

queues: dict[str, berrymq.Queue] = {}
keep: list[Any] = []
counted: dict[str, int] = {}


def encode(message: berrymq.Message) -> list[Any]:
    return [str(message.identifier), list(message.args), message.kwargs]


def run(command: dict[str, Any]) -> Any:
    op = command["op"]
    bus = berrymq.get_bus()
    if op == "serve":
        addr = command["addr"]
        return berrymq.init_connection(tuple(addr) if isinstance(addr, list) else addr)
    if op == "interconnect":
        berrymq.interconnect(command["addr"], command.get("ttl", 1000))
        return None
    if op == "oneway":
        berrymq.connect_oneway(command["addr"], command.get("ttl", 1000))
        return None
    if op == "via_queue":
        berrymq.connect_via_queue(command["addr"], command["pattern"], command.get("ttl", 1000))
        return None
    if op == "collect":
        queues[command["pattern"]] = berrymq.Queue(command["pattern"])
        return None
    if op == "drain":
        queue = queues[command["pattern"]]
        got = []
        while True:
            try:
                got.append(encode(queue.get(timeout=command["wait"])
                                  if command.get("wait") else queue.get_nowait()))
            except berrymq.Empty:
                return got
            if command.get("until") and got[-1][0] == command["until"]:
                return got
    if op == "echo":  # a receiver that sends its message on under another identifier
        reply = command["reply"]

        def echo(message: berrymq.Message) -> None:
            berrymq.twitter(reply, *message.args, **message.kwargs)

        keep.append(echo)
        berrymq.regist_function(command["pattern"], echo)
        return None
    if op == "answer":  # a receiver that returns twice its argument, or raises on "boom"
        def answer(message: berrymq.Message) -> Any:
            if message.args and message.args[0] == "boom":
                raise RuntimeError("boom on purpose")
            return message.args[0] * 2

        keep.append(answer)
        berrymq.regist_function(command["pattern"], answer)
        return None
    if op == "slow":  # a receiver that takes ``delay`` seconds of CPU per message, counted
        delay = command["delay"]

        def slow(message: berrymq.Message) -> None:
            until = time.perf_counter() + delay
            while time.perf_counter() < until:
                pass
            counted[command["pattern"]] = counted.get(command["pattern"], 0) + 1

        keep.append(slow)
        berrymq.regist_function(command["pattern"], slow)
        return None
    if op == "sleepy":  # a receiver that sleeps ``delay`` seconds, then answers its arg's length
        delay = command["delay"]

        def sleepy(message: berrymq.Message) -> int:
            time.sleep(delay)
            return len(message.args[0])

        keep.append(sleepy)
        berrymq.regist_function(command["pattern"], sleepy)
        return None
    if op == "count":
        return counted.get(command["pattern"], 0)
    if op == "twitter":
        berrymq.twitter(command["id"], *command.get("args", []), **command.get("kwargs", {}))
        return None
    if op == "send":
        berrymq.send_message(command["id"], *command.get("args", []), **command.get("kwargs", {}))
        return None
    if op == "get":
        try:
            return encode(berrymq.get(timeout=command.get("wait")))
        except berrymq.Empty:
            return "empty"
    if op == "get_nowait":
        try:
            return encode(berrymq.get_nowait())
        except berrymq.Empty:
            return "empty"
    if op == "ask":
        replies = berrymq.ask(command["id"], *command.get("args", []),
                              timeout=command.get("wait", 5))
        return [r.to_json() if isinstance(r, berrymq.ReplyError) else r for r in replies]
    if op == "talk":
        berrymq.talk(command["id"], command["cb"], *command.get("args", []))
        return None
    if op == "flush":
        ok = True
        for transport in list(bus.transports().values()):
            flush = getattr(transport, "flush", None)
            if flush is not None:
                ok = flush(command.get("wait", 10)) and ok
        return ok
    if op == "stream":  # send forever on a thread (until the process is killed)
        def stream() -> None:
            i = 0
            while True:
                berrymq.send_message(command["id"], i)
                i += 1

        threading.Thread(target=stream, daemon=True).start()
        return None
    if op == "close":
        berrymq.close_connection(command.get("addr"))
        return None
    if op == "connections":
        return [[c.style, c.address, bool(getattr(c, "closed", False))]
                for c in bus.connections()]
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    print(json.dumps({"ok": "ready"}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            berrymq.get_bus().close()
            print(json.dumps({"ok": None}), flush=True)
            return
        try:
            answer = {"ok": run(command)}
        except Exception as exc:  # reported to the test
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()

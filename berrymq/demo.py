"""``berrymq demo``: the main features, one after another, printing what happens."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import berrymq
from berrymq import Follower, Message, Queue, following, following_function, talk, twitter

__all__ = ["run_demo"]


def _section(title: str) -> None:
    print(f"\n== {title}")


def run_demo() -> None:
    """Run every part of the demo on a fresh bus of its own."""
    with berrymq.Bus(name="demo") as bus, berrymq.use_bus(bus):
        _section("push: functions follow patterns with wildcards")

        @following_function("*:log")
        def receive_log(message: Message) -> None:
            print(f"receive_log: {message.id} @ {message.args[0]}")

        twitter("do_something:log", time.ctime())
        twitter("start:command")  # nobody follows *:command: nothing happens

        _section("push: methods of Follower classes")

        class Logger(metaclass=Follower):
            def __init__(self, prefix: str) -> None:
                self.prefix = prefix

            @following("job:*")
            def receive(self, message: Message) -> None:
                print(f"{self.prefix} got {message.id} user={message.kwargs.get('user')}")

        logger = Logger("Logger")
        twitter("job:done", user="ada")
        twitter("*:done", user="everyone")  # a wildcard sender reaches job:* too

        _section("pull: a queue stores what matches")
        queue = Queue("task:*")
        for n in range(3):
            twitter("task:run", n)
        print("queued:", queue.qsize(), "first:", queue.get().args, "then:", queue.get_nowait().args)

        _section("talk: replies come back as messages")

        @following_function("*:process")
        def do_process(message: Message) -> str:
            return f"processed {message.args[0]}"

        @following_function("*:log_result")
        def receive_result(message: Message) -> None:
            print("receive_result:", message.args[0])

        talk("test:process", "test:log_result", "report.txt")

        _section("ask: request/reply returns every receiver's answer")

        @following_function("price:quote")
        def quote(message: Message) -> float:
            return 9.5 * float(message.args[0])

        print("ask('price:quote', 2) ->", berrymq.ask("price:quote", 2, timeout=1.0))

        _section("between processes: JSON-RPC over TCP")
        _between_processes()
        del logger, receive_log, do_process, receive_result, quote
        print("\ndone: see examples/ for more, `berrymq plugins` for installed plugins")


_CHILD = """
import sys, berrymq
berrymq.interconnect(sys.argv[1])
berrymq.twitter("child:hello", "from process", sys.argv[2])
berrymq.twitter("_secret:x")  # a local name: never leaves the child
berrymq.twitter("child:bye")
berrymq.close_connection()
"""


def _between_processes() -> None:
    try:
        address = berrymq.init_connection("tcp://127.0.0.1:0")
    except berrymq.PluginNotAvailable as exc:
        print(f"skipped: {exc}")
        return
    inbox = Queue("*:*")
    print("serving", address, "; a child process interconnects and sends")
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(address), str(os.getpid())], check=True, timeout=60
    )
    got = [inbox.get(timeout=30)]
    while got[-1].id != "child:bye":
        got.append(inbox.get(timeout=30))
    print(f"got {got[0].id} {got[0].args} from the child, then {got[-1].id};")
    print("its _secret:x never left it:", all(m.name != "_secret" for m in got))

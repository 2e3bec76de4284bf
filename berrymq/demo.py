"""``berrymq demo``: the main features one after another, each shown as its code and then
what that code printed, so the output reads like a short tutorial.

Each section is a function of this module: the demo prints its body (from the source
file) and runs it, capturing what it prints. Every section runs on a fresh bus of the
demo's own, so nothing is left behind in the process.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import berrymq
from berrymq import Follower, Message, Queue, following, following_function, talk, twitter

__all__ = ["SECTIONS", "run_demo"]


def push_functions() -> None:
    @following_function("*:log")
    def receive_log(message: Message) -> None:
        print(f"receive_log: {message.id} @ {message.args[0]}")

    twitter("do_something:log", time.strftime("%H:%M:%S"))
    twitter("start:command")  # nobody follows *:command: nothing happens


def push_methods() -> None:
    class Logger(metaclass=Follower):
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix

        @following("job:*")
        def receive(self, message: Message) -> None:
            print(f"{self.prefix} got {message.id} user={message.user}")

    logger = Logger("Logger")
    twitter("job:done", user="ada")
    twitter("*:done", user="everyone")  # a wildcard sender reaches job:* too
    del logger  # held weakly: once gone, it stops receiving
    twitter("job:done", user="nobody")


def pull_queue() -> None:
    queue = Queue("task:*")
    for n in range(3):
        twitter("task:run", n)
    print("queued:", queue.qsize(), "first:", queue.get().args, "then:", queue.get_nowait().args)


def talk_replies() -> None:
    @following_function("*:process")
    def do_process(message: Message) -> str:
        return f"processed {message.args[0]}"

    @following_function("*:log_result")
    def receive_result(message: Message) -> None:
        print("receive_result:", message.args[0])

    talk("test:process", "test:log_result", "report.txt")


def ask_replies() -> None:
    @following_function("price:quote")
    def quote(message: Message) -> float:
        return 9.5 * float(message.args[0])

    print("ask('price:quote', 2) ->", berrymq.ask("price:quote", 2, timeout=1.0))


_CHILD = """
import sys, berrymq
berrymq.interconnect(sys.argv[1])
berrymq.twitter("child:hello", "from process", sys.argv[2])
berrymq.twitter("_secret:x")  # a local name: never leaves the child
berrymq.twitter("child:bye")
berrymq.close_connection()
"""


def between_processes() -> None:
    address = berrymq.init_connection("tcp://127.0.0.1:0")
    inbox = Queue("*:*")
    print("serving", address, "; a child process interconnects and sends")
    # The child runs _CHILD: interconnect(address), then twitter child:hello,
    # _secret:x (a local name) and child:bye.
    subprocess.run([sys.executable, "-c", _CHILD, str(address), str(os.getpid())],
                   check=True, timeout=60)
    got = [inbox.get(timeout=30)]
    while got[-1].id != "child:bye":
        got.append(inbox.get(timeout=30))
    print(f"got {got[0].id} {got[0].args} from the child, then {got[-1].id};")
    print("its _secret:x never left it:", all(m.name != "_secret" for m in got))


#: (title, section) in the order the demo shows them.
SECTIONS: list[tuple[str, Callable[[], None]]] = [
    ("push: functions follow patterns with wildcards", push_functions),
    ("push: methods of Follower classes", push_methods),
    ("pull: a queue stores what matches", pull_queue),
    ("talk: replies come back as messages", talk_replies),
    ("ask: request/reply returns every receiver's answer", ask_replies),
    ("between processes: JSON-RPC over TCP", between_processes),
]


def body_of(section: Callable[[], None]) -> str:
    """The source of ``section`` without its ``def`` line, dedented."""
    lines = inspect.getsource(section).splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith(":")) + 1
    return textwrap.dedent("\n".join(lines[start:])).strip("\n")


def _run(section: Callable[[], None]) -> str:
    """Run ``section`` on a fresh bus; what it printed."""
    out = io.StringIO()
    with berrymq.Bus(name="demo") as bus, berrymq.use_bus(bus), contextlib.redirect_stdout(out):
        try:
            section()
        except berrymq.PluginNotAvailable as exc:
            print(f"skipped: {exc}")
    return out.getvalue().rstrip("\n")


def run_demo(as_json: bool = False) -> None:
    """Show and run every section of the demo; ``as_json``: one JSON object per section,
    ``{"title", "code", "printed"}``, on a line of its own, as it is done."""
    if not as_json:
        print("berryMQ", berrymq.__version__, "demo: each feature's code, then what it printed")
    for title, section in SECTIONS:
        code = body_of(section)
        if not as_json:
            print(f"\n== {title}\n")
            print(textwrap.indent(code, "    "), flush=True)
        printed = _run(section)
        if as_json:
            print(json.dumps({"title": title, "code": code, "printed": printed}), flush=True)
        else:
            print("\n  printed:")
            print(textwrap.indent(printed or "(nothing)", "    > ", lambda line: True))
    if not as_json:
        # examples/ and docs/ are in neither the wheel nor the sdist: say where they are
        print("\ndone: examples/ and docs/ in berryMQ's source repository show more; "
              "`berrymq plugins` lists the installed plugins")

"""Local dispatch cost of berryMQ against its peers, measured in one process run.

Run it as a script (it is not a test), with the peers installed::

    pip install blinker pyee psygnal pypubsub
    python bench/local_dispatch.py            # the full run, well under a minute
    python bench/local_dispatch.py --quick    # a rough run in a few seconds

Every case sends one message with one positional argument to one receiver that does
nothing, so what is measured is the library's own cost per send. Each case runs a tight
loop of ``--number`` operations, ``--repeat`` times; the table shows the best and the
median ns per operation (loop overhead included: see the ``empty loop`` row), and the
ratio of berryMQ's best to each peer's best. Absolute times drift on a shared machine;
the ratios, measured in the same run, are what the targets are about:

- ``twitter`` to one receiver costs at most 0.7 times pyee's ``EventEmitter.emit``;
- with 10,000 non-matching subscriptions it costs at most 1.1 times what it costs with none.

The script exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import queue
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on sys.path, where bench/nats.py would shadow
# the nats package that the berrymq-nats plugin imports when plugins load.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import berrymq  # noqa: E402

OTHER = 10_000  # non-matching subscriptions / topics / handlers in the "crowded" cases

Loop = Callable[[int], None]


@dataclass
class Case:
    key: str
    name: str
    loop: Loop
    before: Callable[[], object] | None = None  # run before each timed repeat
    samples: list[float] = field(default_factory=list)  # ns per operation

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def measure(cases: list[Case], number: int, repeat: int) -> None:
    """Time ``case.loop(number)`` ``repeat`` times for every case, after one warm-up.

    The repeats are interleaved (every case once, then every case again, ...) so that
    the load of a shared machine, which drifts, weighs on all cases alike.
    """
    for case in cases:
        if case.before is not None:
            case.before()
        case.loop(min(number, 1000))  # warm up caches (route cache, identifiers, ...)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for case in cases:
                if case.before is not None:
                    case.before()
                start = time.perf_counter_ns()
                case.loop(number)
                case.samples.append((time.perf_counter_ns() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()


# -- the cases: each returns a loop function doing one operation per iteration ------------


def case_empty() -> Loop:
    def loop(n: int) -> None:
        for _ in itertools.repeat(None, n):
            pass

    return loop


def case_direct() -> Loop:
    def receiver(value: object) -> None:
        pass

    def loop(n: int) -> None:
        for _ in itertools.repeat(None, n):
            receiver(1)

    return loop


def _crowd(bus: berrymq.Bus, keep: list[Any], numbers: range) -> None:
    """Subscribe receivers that never match ``bench:run``: a third exact names, a third
    ``name:*`` patterns, a third ``*:action`` patterns."""
    for i in numbers:
        def other(message: berrymq.Message) -> None:
            raise AssertionError("a non-matching receiver was called")

        keep.append(other)
        kind = i % 3
        if kind == 0:
            pattern = f"other{i}:run"
        elif kind == 1:
            pattern = f"other{i}:*"
        else:
            pattern = f"*:act{i}"
        bus.subscribe(pattern, other)


class BerryCase:
    """A bus of its own with one receiver of ``bench:run`` (and maybe a crowd)."""

    def __init__(self, crowded: bool = False, queue: bool = False) -> None:
        self.bus = berrymq.Bus(name="bench")
        self.keep: list[Any] = []
        self.old = berrymq.set_bus(self.bus)
        try:
            # Half of the crowd subscribes before the receiver, half after it.
            if crowded:
                _crowd(self.bus, self.keep, range(OTHER // 2))
            if queue:
                self.queue: berrymq.Queue | None = berrymq.Queue("bench:run")
            else:
                self.queue = None
                berrymq.regist_function("bench:run", self.receiver)
            if crowded:
                _crowd(self.bus, self.keep, range(OTHER // 2, OTHER))
                assert len(self.bus.subscriptions()) == OTHER + 1
        finally:
            berrymq.set_bus(self.old)

    @staticmethod
    def receiver(message: berrymq.Message) -> None:
        pass

    def before(self) -> None:
        """Make this case's bus the default bus, as a program would have it."""
        berrymq.set_bus(self.bus)

    def loop(self, n: int) -> None:
        twitter = berrymq.twitter
        if self.queue is None:
            for _ in itertools.repeat(None, n):
                twitter("bench:run", 1)
        else:
            get_nowait = self.queue.get_nowait
            for _ in itertools.repeat(None, n):
                twitter("bench:run", 1)
                get_nowait()

    def check(self) -> None:
        """The measured path really delivered (and only to the receiver)."""
        berrymq.set_bus(self.bus)
        try:
            calls: list[berrymq.Message] = []
            with self.bus.subscribe("bench:run", calls.append, weak=False):
                berrymq.twitter("bench:run", 1)
            assert len(calls) == 1, "the benchmark receiver path is broken"
            if self.queue is not None:
                assert self.queue.qsize() == 1
                self.queue.get_nowait()
        finally:
            berrymq.set_bus(self.old)
        self.bus.close()


def case_stdlib_queue(kind: type[Any]) -> Loop:
    q = kind()
    put, get_nowait = q.put, q.get_nowait

    def loop(n: int) -> None:
        for _ in itertools.repeat(None, n):
            put(1)
            get_nowait()

    return loop


def case_blinker(crowded: bool) -> tuple[Loop, list[Any]]:
    import blinker

    signal = blinker.Signal()
    keep: list[Any] = []

    def receiver(sender: object) -> None:
        pass

    signal.connect(receiver)
    if crowded:
        # Receivers connected for other senders: send() has to skip them.
        for i in range(OTHER):
            def other(sender: object) -> None:
                raise AssertionError("a non-matching receiver was called")

            keep.append(other)
            signal.connect(other, sender=f"sender{i}")
    send = signal.send

    def loop(n: int) -> None:
        for _ in itertools.repeat(None, n):
            send(1)

    return loop, [signal, receiver, keep]


def case_pyee(crowded: bool) -> tuple[Loop, list[Any]]:
    from pyee import EventEmitter

    emitter = EventEmitter()

    def receiver(value: object) -> None:
        pass

    emitter.on("bench", receiver)
    if crowded:
        for i in range(OTHER):
            emitter.on(f"other{i}", receiver)
    emit = emitter.emit

    def loop(n: int) -> None:
        for _ in itertools.repeat(None, n):
            emit("bench", 1)

    return loop, [emitter]


def case_psygnal() -> tuple[Loop, list[Any]]:
    from psygnal import Signal

    class Emitter:
        changed = Signal(int)

    emitter = Emitter()

    def receiver(value: int) -> None:
        pass

    emitter.changed.connect(receiver)
    emit = emitter.changed.emit

    def loop(n: int) -> None:
        for _ in itertools.repeat(None, n):
            emit(1)

    return loop, [emitter, receiver]


def case_pypubsub(crowded: bool) -> tuple[Loop, list[Any]]:
    from pubsub import pub

    prefix = "crowded" if crowded else "alone"

    def receiver(value: int) -> None:
        pass

    keep: list[Any] = [receiver]
    pub.subscribe(receiver, f"{prefix}bench.run")
    if crowded:
        for i in range(OTHER):
            def other(value: int) -> None:
                raise AssertionError("a non-matching receiver was called")

            keep.append(other)
            pub.subscribe(other, f"{prefix}other{i}.run")
    send = pub.sendMessage
    topic = f"{prefix}bench.run"

    def loop(n: int) -> None:
        for _ in itertools.repeat(None, n):
            send(topic, value=1)

    return loop, keep


# -- the run ---------------------------------------------------------------------------------


def run(number: int, repeat: int) -> int:
    alone = BerryCase()
    crowded = BerryCase(crowded=True)
    queued = BerryCase(queue=True)
    keep: list[Any] = []
    peers: dict[str, tuple[str, Loop]] = {}
    for key, label, (loop, kept) in [
        ("blinker", "blinker Signal.send", case_blinker(crowded=False)),
        ("blinker_crowded", f"blinker Signal.send + {OTHER:,} other-sender receivers",
         case_blinker(crowded=True)),
        ("pyee", "pyee EventEmitter.emit", case_pyee(crowded=False)),
        ("pyee_crowded", f"pyee EventEmitter.emit + {OTHER:,} other events",
         case_pyee(crowded=True)),
        ("psygnal", "psygnal Signal.emit", case_psygnal()),
        ("pypubsub", "pypubsub pub.sendMessage", case_pypubsub(crowded=False)),
        ("pypubsub_crowded", f"pypubsub pub.sendMessage + {OTHER:,} other topics",
         case_pypubsub(crowded=True)),
    ]:
        peers[key] = (label, loop)
        keep.append(kept)
    cases = [
        Case("empty", "empty loop (overhead in every row)", case_empty()),
        Case("direct", "direct function call", case_direct()),
        Case("twitter", "berrymq twitter, 1 receiver", alone.loop, alone.before),
        Case("twitter_crowded", f"berrymq twitter, 1 receiver + {OTHER:,} non-matching",
             crowded.loop, crowded.before),
        *(Case(key, label, loop) for key, (label, loop) in peers.items()),
        Case("queue", "berrymq Queue: twitter + get_nowait", queued.loop, queued.before),
        Case("simplequeue", "queue.SimpleQueue put + get_nowait",
             case_stdlib_queue(queue.SimpleQueue)),
        Case("stdqueue", "queue.Queue put + get_nowait", case_stdlib_queue(queue.Queue)),
    ]
    old = berrymq.get_bus()
    try:
        measure(cases, number, repeat)
    finally:
        berrymq.set_bus(old)
    for berry in (alone, crowded, queued):
        berry.check()
    results = {case.key: case for case in cases}

    # Which berryMQ row each peer is compared with.
    compare = {
        "direct": "twitter",
        "blinker": "twitter",
        "pyee": "twitter",
        "psygnal": "twitter",
        "pypubsub": "twitter",
        "blinker_crowded": "twitter_crowded",
        "pyee_crowded": "twitter_crowded",
        "pypubsub_crowded": "twitter_crowded",
        "simplequeue": "queue",
        "stdqueue": "queue",
    }
    width = max(len(case.name) for case in cases)
    print(f"Python {sys.version.split()[0]}, berryMQ {berrymq.__version__}; "
          f"{repeat} interleaved repeats of {number:,} operations per case")
    print()
    print(f"| {'case'.ljust(width)} | best ns/op | median ns/op | berryMQ / this |")
    print(f"|{'-' * (width + 2)}|-----------:|-------------:|---------------:|")
    for key, case in results.items():
        ratio = ""
        if key in compare:
            ratio = f"{results[compare[key]].best / case.best:.2f}x"
        print(f"| {case.name.ljust(width)} | {case.best:10.0f} | {case.median:12.0f} "
              f"| {ratio:>14} |")

    pyee_ratio = results["twitter"].best / results["pyee"].best
    crowd_ratio = results["twitter_crowded"].best / results["twitter"].best
    ok_pyee = pyee_ratio <= 0.7
    ok_crowd = crowd_ratio <= 1.1
    print()
    print(f"target: twitter / pyee emit <= 0.70x: {pyee_ratio:.2f}x "
          f"{'met' if ok_pyee else 'MISSED'}")
    print(f"target: twitter with {OTHER:,} non-matching / with none <= 1.10x: "
          f"{crowd_ratio:.2f}x {'met' if ok_crowd else 'MISSED'}")
    return 0 if ok_pyee and ok_crowd else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--number", type=int, default=200_000, help="operations per repeat")
    parser.add_argument("--repeat", type=int, default=7, help="repeats per case")
    parser.add_argument("--quick", action="store_true", help="20,000 operations, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.number, args.repeat = 20_000, 3
    if args.number < 1 or args.repeat < 1:
        parser.error("--number and --repeat must be at least 1")
    return run(args.number, args.repeat)


if __name__ == "__main__":
    sys.exit(main())

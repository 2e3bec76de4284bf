"""Local dispatch cost of berryMQ against its peers, measured in one process run.

Run it as a script (it is not a test), with the peers installed::

    pip install blinker pyee psygnal pypubsub
    python bench/local_dispatch.py            # the full run, 1 to 2 minutes
    python bench/local_dispatch.py --quick    # a rough run in a few seconds

Every case sends one message with one positional argument to one receiver that does
nothing, so what is measured is the library's own cost per send. Each case runs a tight
loop of ``--number`` operations, ``--repeat`` times; the table shows the best and the
median ns per operation (loop overhead included: see the ``empty loop`` row), and the
ratio of berryMQ's best to each peer's best. Times are the measuring thread's CPU time.
Absolute times drift on a shared machine; the ratios, measured in the same run, are what
the targets are about:

- ``twitter`` to one receiver costs at most 0.5 times pyee's ``EventEmitter.emit``;
- with 10,000 non-matching subscriptions it costs at most 1.1 times what it costs with none;
- with an interconnected ``local://`` peer bus that follows nothing matching, at most 1.5
  times what it costs with no peer;
- the first send of an identifier (a route miss), with 10,000 subscriptions of the three
  shapes ``n:x``, ``n:*`` and ``*:x`` present (none matching), at most 20 times a cached send;
- cancelling 100,000 receivers of one pattern at most 2 times cancelling 100,000 receivers
  of distinct patterns (per cancel);
- cycling through 20,000 identifiers at most 2 times the per-send cost of cycling through
  1,000 (the route cache holds them all by default);
- an ``async def`` receiver, from the send inside the running loop to the coroutine's
  completion, at most 1.0 times pyee's ``AsyncIOEventEmitter``.

The script exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import queue
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import blinker  # the peers: pip install blinker pyee psygnal pypubsub
from psygnal import Signal
from pubsub import pub
from pyee import EventEmitter
from pyee.asyncio import AsyncIOEventEmitter

import berrymq

OTHER = 10_000  # non-matching subscriptions / topics / handlers in the "crowded" cases

# The CPU time of the measuring thread (every case runs in one thread): time the machine
# spent on other processes does not count, so the ratios hold on a loaded machine too.
clock = time.thread_time_ns

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


def measure(cases: list[Case], number: int, repeat: int, numbers: dict[str, int]) -> None:
    """Time ``case.loop(number)`` ``repeat`` times for every case, after one warm-up
    (``numbers`` gives some cases a count of their own).

    The repeats are interleaved (every case once, then every case again, ...) so that
    the load of a shared machine, which drifts, weighs on all cases alike.
    """
    for case in cases:
        if case.before is not None:
            case.before()
        case.loop(min(numbers.get(case.key, number), 1000))  # warm up caches
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for case in cases:
                if case.before is not None:
                    case.before()
                count = numbers.get(case.key, number)
                start = clock()
                case.loop(count)
                case.samples.append((clock() - start) / count)
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


class PeerCase(BerryCase):
    """``twitter`` to one receiver on a bus interconnected (``local://``) with a peer bus
    that follows nothing matching: the price of cycle detection and forwarding."""

    def __init__(self) -> None:
        super().__init__()
        self.peer = berrymq.Bus(name="bench-peer")
        address = self.peer.transport("local").listen("local://0")
        self.peer.subscribe("elsewhere:*", self.receiver)
        self.connection = self.bus.transport("local").interconnect(address, 60)
        self.bus.track_connection(self.connection)

    def check(self) -> None:
        seen: list[berrymq.Message] = []
        with self.peer.subscribe("bench:run", seen.append, weak=False):
            berrymq.set_bus(self.bus)
            try:
                berrymq.twitter("bench:run", 1)
            finally:
                berrymq.set_bus(self.old)
        assert len(seen) == 1, "the peer did not get the message: no forwarding measured"
        super().check()
        self.peer.close()


class MissCase:
    """The first send of each identifier (a route miss, parsing included), with
    ``OTHER`` subscriptions of the three shapes present and none matching."""

    def __init__(self) -> None:
        self.bus = berrymq.Bus(name="bench-miss")
        self.keep: list[Any] = []
        _crowd(self.bus, self.keep, range(OTHER))
        self.bus.subscribe("*:run", BerryCase.receiver)
        self.round = itertools.count()
        self.names: list[str] = []

    def before(self, number: int) -> None:
        r = next(self.round)
        self.names = [f"fresh{r}x{i}:run" for i in range(number)]

    def loop(self, n: int) -> None:
        twitter = self.bus.twitter
        for name in self.names[:n]:
            twitter(name, 1)


class CycleCase:
    """Sending to ``count`` identifiers in turn, one receiver (``*:run``) for all."""

    def __init__(self, count: int) -> None:
        self.bus = berrymq.Bus(name=f"bench-cycle-{count}")
        self.bus.subscribe("*:run", BerryCase.receiver)
        self.names = [f"id{i}:run" for i in range(count)]
        for name in self.names:
            self.bus.twitter(name, 1)  # every route cached, as after a while in a program

    def loop(self, n: int) -> None:
        twitter = self.bus.twitter
        for name in itertools.islice(itertools.cycle(self.names), n):
            twitter(name, 1)


def cancel_cost(count: int, same_pattern: bool) -> float:
    """ns per cancel of ``count`` subscriptions (of one pattern, or each its own)."""
    bus = berrymq.Bus(name="bench-cancel")
    subscriptions = [
        bus.subscribe("bench:run" if same_pattern else f"p{i}:run", BerryCase.receiver)
        for i in range(count)
    ]
    bus.twitter("bench:run", 1)  # a cached route to keep up to date
    start = clock()
    for subscription in subscriptions:
        subscription.cancel()
    elapsed = clock() - start
    assert not bus.subscriptions()
    bus.close()
    return elapsed / count


def async_cost(number: int, use_pyee: bool) -> float:
    """ns per message from a send inside the running loop to the end of an ``async def``
    receiver's coroutine (all ``number`` of them)."""

    async def main() -> float:
        done = asyncio.get_running_loop().create_future()
        left = [number]

        async def receiver(*_: object) -> None:
            left[0] -= 1
            if not left[0]:
                done.set_result(None)

        if use_pyee:
            emitter = AsyncIOEventEmitter()
            emitter.on("bench", receiver)
            send: Callable[[], object] = lambda: emitter.emit("bench", 1)  # noqa: E731
        else:
            # all ``number`` are sent before the first is awaited: a bound to fit them
            # (the default, 10,000, would refuse the rest; the check costs the same)
            bus = berrymq.Bus(name="bench-async", async_pending_limit=number)
            bus.subscribe("bench:async", receiver, weak=False)
            twitter = bus.twitter
            send = lambda: twitter("bench:async", 1)  # noqa: E731
        start = clock()
        for _ in itertools.repeat(None, number):
            send()
        await done
        elapsed = clock() - start
        if not use_pyee:
            bus.close()
        return elapsed / number

    return asyncio.run(main())


def best_of_rounds(measures: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run each measure once per round, interleaved, and keep the best of each (with the
    garbage collector off, as in :func:`measure`)."""
    best: dict[str, float] = {}
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(rounds):
            for key, measure_once in measures.items():
                gc.collect()
                gc.disable()
                value = measure_once()
                gc.enable()
                best[key] = min(best.get(key, value), value)
    finally:
        if gc_was_enabled:
            gc.enable()
        else:
            gc.disable()
    return best


# -- the run ---------------------------------------------------------------------------------


def run(number: int, repeat: int) -> int:
    alone = BerryCase()
    crowded = BerryCase(crowded=True)
    queued = BerryCase(queue=True)
    peered = PeerCase()
    miss = MissCase()
    cycle_small, cycle_large = CycleCase(1_000), CycleCase(20_000)
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
    miss_number = max(1, number // 10)  # each op makes a new route: keep the cache sane
    cases = [
        Case("empty", "empty loop (overhead in every row)", case_empty()),
        Case("direct", "direct function call", case_direct()),
        Case("twitter", "berrymq twitter, 1 receiver", alone.loop, alone.before),
        Case("twitter_crowded", f"berrymq twitter, 1 receiver + {OTHER:,} non-matching",
             crowded.loop, crowded.before),
        Case("twitter_peer", "berrymq twitter, 1 receiver + a local:// peer bus",
             peered.loop, peered.before),
        Case("twitter_miss", f"berrymq first send of an identifier, {OTHER:,} others",
             miss.loop, lambda: miss.before(miss_number)),
        Case("cycle_small", "berrymq twitter cycling through 1,000 identifiers",
             cycle_small.loop),
        Case("cycle_large", "berrymq twitter cycling through 20,000 identifiers",
             cycle_large.loop),
        *(Case(key, label, loop) for key, (label, loop) in peers.items()),
        Case("queue", "berrymq Queue: twitter + get_nowait", queued.loop, queued.before),
        Case("simplequeue", "queue.SimpleQueue put + get_nowait",
             case_stdlib_queue(queue.SimpleQueue)),
        Case("stdqueue", "queue.Queue put + get_nowait", case_stdlib_queue(queue.Queue)),
    ]
    old = berrymq.get_bus()
    try:
        measure(cases, number, repeat, {"twitter_miss": miss_number})
    finally:
        berrymq.set_bus(old)
    for berry in (alone, crowded, queued, peered):
        berry.check()
    results = {case.key: case.best for case in cases}
    medians = {case.key: case.median for case in cases}
    names = {case.key: case.name for case in cases}

    cancels = max(1000, min(100_000, number // 2))
    async_number = max(1000, number // 10)
    once = best_of_rounds({
        "cancel_same": lambda: cancel_cost(cancels, same_pattern=True),
        "cancel_distinct": lambda: cancel_cost(cancels, same_pattern=False),
        "async_berrymq": lambda: async_cost(async_number, use_pyee=False),
        "async_pyee": lambda: async_cost(async_number, use_pyee=True),
    }, rounds=max(3, repeat))
    for key, label in [
        ("cancel_same", f"berrymq cancel, {cancels:,} receivers of one pattern"),
        ("cancel_distinct", f"berrymq cancel, {cancels:,} receivers of distinct patterns"),
        ("async_berrymq", "berrymq twitter to an async def receiver, to completion"),
        ("async_pyee", "pyee AsyncIOEventEmitter.emit to an async handler, to completion"),
    ]:
        results[key] = medians[key] = once[key]
        names[key] = label

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
        "async_pyee": "async_berrymq",
    }
    width = max(len(name) for name in names.values())
    print(f"Python {sys.version.split()[0]}, berryMQ {berrymq.__version__}; "
          f"{repeat} interleaved repeats of {number:,} operations per case")
    print()
    print(f"| {'case'.ljust(width)} | best ns/op | median ns/op | berryMQ / this |")
    print(f"|{'-' * (width + 2)}|-----------:|-------------:|---------------:|")
    for key, best in results.items():
        ratio = f"{results[compare[key]] / best:.2f}x" if key in compare else ""
        print(f"| {names[key].ljust(width)} | {best:10.0f} | {medians[key]:12.0f} | {ratio:>14} |")

    targets = [
        ("twitter / pyee emit", "twitter", "pyee", 0.5),
        (f"twitter with {OTHER:,} non-matching / with none", "twitter_crowded", "twitter", 1.1),
        ("twitter with a local:// peer / with none", "twitter_peer", "twitter", 1.5),
        ("first send of an identifier / a cached send", "twitter_miss", "twitter", 20.0),
        ("cancel of one pattern / of distinct patterns", "cancel_same", "cancel_distinct", 2.0),
        ("cycling 20,000 identifiers / 1,000", "cycle_large", "cycle_small", 2.0),
        ("async receiver / pyee AsyncIOEventEmitter", "async_berrymq", "async_pyee", 1.0),
    ]
    print()
    missed = 0
    for label, this, that, limit in targets:
        ratio = results[this] / results[that]
        ok = ratio <= limit
        missed += not ok
        print(f"target: {label} <= {limit:.2f}x: {ratio:.2f}x {'met' if ok else 'MISSED'}")
    return 1 if missed else 0


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

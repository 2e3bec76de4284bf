"""Messages per second between two processes through one NATS server: berryMQ's NATS
bridge beside raw nats-py doing the same, in one run; prints the ratio.

    python bench/nats_bridge.py [--url nats://127.0.0.1:4222] [-n 50000] [--rounds 5] [--asks 500]

Without ``--url`` it uses the server on 127.0.0.1:4222 if one answers, else starts a
``nats-server`` on a free port. Each round starts a receiver process (ready once its
subscription reached the server), then a sender process that sends ``n`` messages as
fast as it can. The rate is ``n`` divided by the time from the sender's first send to
the receiver's ``n``-th message (both read the machine's monotonic clock). Modes
alternate round by round so that drift on a shared machine hits both alike; the best
round of each is reported.

- raw: nats-py publishes ``n`` payloads of the same size as berryMQ's (JSON encoded
  before the clock starts) with ``await nc.publish`` in a loop; the receiver's callback
  counts them without decoding: raw nats-py's best case, while berryMQ encodes and
  decodes every message inside the measurement.
- berrymq: ``bus.twitter("bench:msg", i)`` in a loop through the bridge; a receiver
  function registered for ``bench:*`` on the other process counts them.

Then the round trip of ``ask``: a responder process with one receiver, and an asking
process that asks ``--asks`` times, one at a time (raw: ``nc.request`` answered by a
callback that publishes a reply of the same shape). p50 and p99 are printed for both.

Every process imports nats-py and berryMQ, the raw ones too: importing berryMQ starts no
thread, reads no settings file and loads no plugin (only the bus of a berryMQ role loads
the NATS plugin), and the clocks start after the imports; a process that has loaded
berryMQ beside nats-py takes no measurably longer to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import nats
from berrymq_nats import plugin as nats_plugin

from berrymq import Bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings

SUBJECT = "bench.raw"


# -- the two sides, run as subprocesses --------------------------------------------------------


def raw_receiver(url: str, n: int) -> None:
    async def main() -> None:
        nc = await nats.connect(url)
        done = asyncio.Event()
        count = 0

        async def on_msg(msg: object) -> None:
            nonlocal count
            count += 1
            if count == n:
                print(f"end {time.monotonic()!r}", flush=True)
                done.set()

        await nc.subscribe(SUBJECT, cb=on_msg)
        await nc.flush()
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), 300)
        await nc.close()

    asyncio.run(main())


def raw_sender(url: str, n: int) -> None:
    async def main() -> None:
        nc = await nats.connect(url)
        # berryMQ's wire form of the same message (berrymq.wire), with a uid of its length
        payloads = [json.dumps(["bench:msg", [i], {}, {"uid": f"{i:020d}"}],
                               separators=(",", ":")).encode() for i in range(n)]
        start = time.monotonic()
        for payload in payloads:
            await nc.publish(SUBJECT, payload)
        await nc.flush(60)
        print(f"start {start!r}", flush=True)
        await nc.close()

    asyncio.run(main())


def _bus(url: str) -> tuple[object, object]:
    host = PluginHost(Settings(), entry_points=False, extra_plugins=[("nats", nats_plugin)])
    bus = Bus(plugins=host, name="bench")
    bridge = bus.transport("nats").connect_broker(url)  # type: ignore[attr-defined]
    return bus, bridge


def berrymq_receiver(url: str, n: int) -> None:
    bus, bridge = _bus(url)
    done = threading.Event()
    count = 0

    def on_msg(message: object) -> None:
        nonlocal count
        count += 1
        if count == n:
            print(f"end {time.monotonic()!r}", flush=True)
            done.set()

    bus.subscribe("bench:*", on_msg, weak=False)  # type: ignore[attr-defined]
    bridge.flush()  # type: ignore[attr-defined]
    print("ready", flush=True)
    done.wait(300)
    bus.close()  # type: ignore[attr-defined]


def berrymq_sender(url: str, n: int) -> None:
    bus, bridge = _bus(url)
    twitter = bus.twitter  # type: ignore[attr-defined]
    start = time.monotonic()
    for i in range(n):
        twitter("bench:msg", i)
    sent = time.monotonic()
    bridge.flush(60)  # type: ignore[attr-defined]
    flushed = time.monotonic()
    print(f"start {start!r}", flush=True)
    if os.environ.get("BENCH_DEBUG"):
        print(f"twitter loop {sent - start:.3f}s, flushed at {flushed - start:.3f}s", file=sys.stderr)
    bus.close()  # type: ignore[attr-defined]


def raw_responder(url: str, n: int) -> None:
    async def main() -> None:
        nc = await nats.connect(url)

        async def on_msg(msg: object) -> None:
            await nc.publish(msg.reply, b'{"k":"r","r":[{"v":1}]}')  # type: ignore[attr-defined]

        await nc.subscribe("bench.ask", cb=on_msg)
        await nc.flush()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await nc.close()

    asyncio.run(main())


def raw_asker(url: str, n: int) -> None:
    async def main() -> None:
        nc = await nats.connect(url)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            await nc.request("bench.ask", b"[]", timeout=5)
            times.append(time.perf_counter() - start)
        print("times " + json.dumps(times), flush=True)
        await nc.close()

    asyncio.run(main())


def berrymq_responder(url: str, n: int) -> None:
    bus, bridge = _bus(url)
    bus.subscribe("bench:ask", lambda message: 1, weak=False)  # type: ignore[attr-defined]
    bridge.flush()  # type: ignore[attr-defined]
    print("ready", flush=True)
    sys.stdin.read()
    bus.close()  # type: ignore[attr-defined]


def berrymq_asker(url: str, n: int) -> None:
    bus, bridge = _bus(url)
    ask = bus.ask  # type: ignore[attr-defined]
    bridge.flush()  # type: ignore[attr-defined]
    assert ask("bench:ask", timeout=5) == [1]  # the responder is known: no warm-up effects
    times = []
    for _ in range(n):
        start = time.perf_counter()
        replies = ask("bench:ask", timeout=5)
        times.append(time.perf_counter() - start)
        assert replies == [1], replies
    print("times " + json.dumps(times), flush=True)
    bus.close()  # type: ignore[attr-defined]


ROLES = {
    "raw-responder": raw_responder,
    "raw-asker": raw_asker,
    "berrymq-responder": berrymq_responder,
    "berrymq-asker": berrymq_asker,
    "raw-receiver": raw_receiver,
    "raw-sender": raw_sender,
    "berrymq-receiver": berrymq_receiver,
    "berrymq-sender": berrymq_sender,
}


# -- the driver ----------------------------------------------------------------------------------


def _spawn(role: str, url: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--role", role, "--url", url, "-n", str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _line(process: subprocess.Popen[str], word: str) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(word):
        raise RuntimeError(f"expected {word!r} from a benchmark process, got {line!r}")
    return line.split(" ", 1)[-1].strip()


def one_round(mode: str, url: str, n: int) -> float:
    receiver = _spawn(f"{mode}-receiver", url, n)
    try:
        _line(receiver, "ready")
        sender = _spawn(f"{mode}-sender", url, n)
        start = float(_line(sender, "start"))
        end = float(_line(receiver, "end"))
        sender.wait(60)
        receiver.wait(60)
    finally:
        for process in (receiver,):
            if process.poll() is None:
                process.kill()
                process.wait()
    return n / (end - start)


def ask_round(mode: str, url: str, n: int) -> list[float]:
    """Round-trip times of ``n`` asks, one at a time, from one process to another."""
    responder = _spawn(f"{mode}-responder", url, n)
    try:
        _line(responder, "ready")
        asker = _spawn(f"{mode}-asker", url, n)
        times: list[float] = json.loads(_line(asker, "times"))
        asker.wait(60)
    finally:
        assert responder.stdin is not None
        responder.stdin.close()
        responder.wait(60)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), 1.0):
            return True
    except OSError:
        return False


def _start_server() -> tuple[subprocess.Popen[bytes], str]:
    program = shutil.which("nats-server")
    if program is None:
        raise SystemExit("no NATS server on 127.0.0.1:4222 and no nats-server program to start")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([program, "-a", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not _reachable(url):
        if time.monotonic() > deadline:
            server.kill()
            raise SystemExit("nats-server did not start")
        time.sleep(0.05)
    return server, url


def server_or_start(url: str | None = None) -> tuple[subprocess.Popen[bytes] | None, str]:
    """A NATS server to use: ``url``; else the one on 127.0.0.1:4222 if it answers; else a
    ``nats-server`` started on a free port (returned, for the caller to kill)."""
    if url is not None:
        return None, url
    url = "nats://127.0.0.1:4222"
    if _reachable(url):
        return None, url
    return _start_server()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("-n", type=int, default=50_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--asks", type=int, default=500, help="asks per round (0: none)")
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        ROLES[args.role](args.url, args.n)
        return
    server, url = server_or_start(args.url)
    try:
        rates: dict[str, list[float]] = {"raw": [], "berrymq": []}
        asks: dict[str, list[float]] = {"raw": [], "berrymq": []}
        for _ in range(args.rounds):
            for mode in ("raw", "berrymq"):
                rates[mode].append(one_round(mode, url, args.n))
        if args.asks:
            for _ in range(2):
                for mode in ("raw", "berrymq"):
                    asks[mode] += ask_round(mode, url, args.asks)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    raw, berry = max(rates["raw"]), max(rates["berrymq"])
    print(f"NATS at {url}, {args.n} messages per round, best of {args.rounds} rounds, "
          "two processes (sender -> receiver)")
    print(f"{'raw nats-py':<22}{raw:>12,.0f} msg/s   rounds: "
          + ", ".join(f"{r:,.0f}" for r in rates["raw"]))
    print(f"{'berryMQ + berrymq-nats':<22}{berry:>12,.0f} msg/s   rounds: "
          + ", ".join(f"{r:,.0f}" for r in rates["berrymq"]))
    print(f"ratio berryMQ / raw nats-py: {berry / raw:.2f}x (target >= 0.60x)")
    if args.asks:
        print(f"ask round trip between two processes, {len(asks['raw'])} asks one at a time:")
        for mode, label in (("raw", "raw nats-py request"), ("berrymq", "berryMQ ask")):
            p50, p99 = _percentile(asks[mode], 0.5), _percentile(asks[mode], 0.99)
            print(f"{label:<22} p50 {p50 * 1e6:>9,.0f} us   p99 {p99 * 1e6:>9,.0f} us")
        ratio = _percentile(asks["berrymq"], 0.5) / _percentile(asks["raw"], 0.5)
        print(f"ratio berryMQ / raw nats-py at p50: {ratio:.1f}x")


if __name__ == "__main__":
    main()

"""Several berryMQ processes share one bus through a real nats-server (or a two-node
cluster) that the tests start on free loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from berrymq_nats.testing import Recorder, bridge_of

import berrymq
from berrymq import Bus, ReplyError

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MakeBus = Callable[..., Bus]


def received(worker: Any) -> list[list[Any]]:
    return json.loads(worker.call("received"))  # type: ignore[no-any-return]


def test_several_processes_share_a_bus(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any], tmp_path: Path,
) -> None:
    settings = tmp_path / "berrymq.toml"
    settings.write_text(f'[berrymq.nats]\nservers = ["{nats_server.url}"]\n', encoding="utf-8")
    by_name = workers(nats_server.url)
    by_action = workers("settings", config=settings)  # joined by its settings file alone
    assert by_action.call("status").startswith("connected")
    sender = workers(nats_server.url)
    by_name.call("follow", "job:*")
    by_action.call("follow", "*:stop")
    sender.call("follow", "*:*")  # sees its own messages locally, exactly once
    here = make_bus("here")
    bridge = bridge_of(here, nats_server.url)
    mine = Recorder()
    here.subscribe("job:stop", mine, weak=False)
    queue = berrymq.Queue("job:*", bus=here)  # a local queue stores what other processes send
    assert bridge.flush()
    for worker in (by_name, by_action, sender):
        worker.call("flush")
    sender.call("send", "job:stop", json.dumps(["exact"]))
    sender.call("send", "*:stop", json.dumps(["wild action"]))
    sender.call("send", "job:*", json.dumps(["wild name"]))
    sender.call("send", "other:go", json.dumps(["nobody remote"]))
    here.twitter("job:stop", "from the test")
    sender.call("flush")
    assert by_name.call("wait", 4, 20) == "4"
    assert by_action.call("wait", 4, 20) == "4"
    assert sender.call("wait", 5, 20) == "5"
    from_sender = ["exact", "wild action", "wild name"]  # in the order sent
    for got in ([m.args[0] for m in mine.wait(4)],
                [r[1][0] for r in received(by_name)],
                [r[1][0] for r in received(by_action)]):
        assert sorted(got) == sorted([*from_sender, "from the test"])
        assert [x for x in got if x in from_sender] == from_sender
    assert sorted(r[1][0] for r in received(sender)) == sorted(
        ["exact", "wild action", "wild name", "nobody remote", "from the test"])
    stored = [queue.get(timeout=10).args[0] for _ in range(4)]
    assert sorted(stored) == sorted(["from the test", *from_sender])
    assert [x for x in stored if x in from_sender] == from_sender
    # Nothing more arrives: a settle round trip later, the counts are unchanged.
    for worker in (by_name, by_action, sender):
        worker.call("flush")
    assert len(received(by_name)) == len(received(by_action)) == 4
    assert len(received(sender)) == 5


def test_shared_queues_across_processes(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any],
) -> None:
    w1, w2, w3 = (workers(nats_server.url) for _ in range(3))
    for worker in (w1, w2, w3):
        worker.call("queue", "task:*", "shared")
    w3.call("queue", "task:run", "own")  # a standalone queue gets every message
    for worker in (w1, w2, w3):
        worker.call("flush")
    here = make_bus("here")
    bridge = bridge_of(here, nats_server.url)
    n = 300
    for i in range(n):
        here.twitter("task:run", i)
    w3.call("many", "task:run", 30)  # w3 sends too: its own shared queue takes those
    assert bridge.flush()
    w3.call("flush")
    # The server has every message; a PING/PONG with each worker then means the worker
    # has read (and stored) every message the server sent it before.
    for worker in (w1, w2, w3):
        worker.call("flush")
    own = json.loads(w3.call("take", "task:run", 0.3))
    assert len(own) == n + 30
    taken = {w: json.loads(w.call("take", "task:*", 0.3)) for w in (w1, w2, w3)}
    everything = [args[0] for w in taken for _, args in taken[w]]
    assert len(everything) == n + 30  # each message taken exactly once
    assert sorted(everything) == sorted([*range(n), *range(30)])
    # w3's own messages went to w3's shared queue only
    assert len(taken[w3]) >= 30
    # competing consumers: the work is spread over the processes
    assert all(taken[w] for w in (w1, w2))


def test_request_reply_across_processes(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any],
    poll: Callable[..., None],
) -> None:
    w1, w2 = workers(nats_server.url), workers(nats_server.url)
    w1.call("reply", "calc:*", json.dumps({"from": "w1"}))
    w2.call("reply", "*:add", json.dumps([1, 2]))
    w1.call("flush")
    w2.call("flush")
    here = make_bus("here")
    bridge = bridge_of(here, nats_server.url)
    assert bridge.flush()
    # the workers answer this bus's hello with their patterns: an ask made before both
    # answers came expects only one of them (a peer joining meanwhile is asking.py's
    # ask_gather window), and once failed so on a loaded machine
    poll(lambda: len(bridge.asking.view.expected(berrymq.Identifier("calc:add"))) == 2,
         what="this bus to learn both workers' patterns")
    here.subscribe("calc:add", lambda m: "local", weak=False)
    replies = here.ask("calc:add", timeout=10)
    assert replies[0] == "local"
    assert sorted(map(json.dumps, replies[1:])) == sorted([json.dumps({"from": "w1"}),
                                                            json.dumps([1, 2])])
    only_w1 = here.ask("calc:sub", timeout=10)
    assert only_w1 == [{"from": "w1"}]
    # and from a worker process: the test's bus answers too
    answer = json.loads(w2.call("ask", "calc:add", 10))
    assert sorted(map(json.dumps, answer)) == sorted(
        [json.dumps([1, 2]), json.dumps({"from": "w1"}), json.dumps("local")])
    assert not any(isinstance(r, ReplyError) for r in replies)


def test_a_process_that_ends_without_closing_sends_everything(
    nats_server: Any, make_bus: MakeBus, workers: Callable[..., Any],
) -> None:
    here = make_bus("here")
    got = Recorder()
    here.subscribe("last:*", got, weak=False)
    assert bridge_of(here, nats_server.url).flush()
    sender = workers(nats_server.url)
    sender.call("many", "last:words", 5000)  # returns once sent to the bridge, not to NATS
    assert sender.call("leave") == "bye"
    assert sender.process.wait(30) == 0
    assert [m.args[0] for m in got.wait(5000)] == list(range(5000))


SHORT_PROGRAM = """
import berrymq
for i in range(10):
    berrymq.twitter("short:lived", i)
"""


def test_a_short_program_sends_what_it_sent_before_its_first_connection(
    nats_server: Any, make_bus: MakeBus, tmp_path: Path,
) -> None:
    """Joined to NATS by its settings file, a program sends at once and ends without
    closing, before the first connection is made: on exit the bridge waits for that
    connection and sends what waits (it used to count it as not sent "while NATS was
    unreachable")."""
    here = make_bus("here")
    got = Recorder()
    here.subscribe("short:*", got, weak=False)
    assert bridge_of(here, nats_server.url).flush()
    (tmp_path / "berrymq.toml").write_text(
        f'[berrymq.nats]\nservers = ["{nats_server.url}"]\n', encoding="utf-8")
    (tmp_path / "short.py").write_text(SHORT_PROGRAM, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "BERRYMQ_CONFIG"}
    done = subprocess.run([sys.executable, "short.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "lost" not in done.stderr, done.stderr
    assert [m.args[0] for m in got.wait(10)] == list(range(10))


def test_processes_survive_a_server_restart(
    nats_server: Any, workers: Callable[..., Any], poll: Callable[..., None],
) -> None:
    receiver, sender = workers(nats_server.url), workers(nats_server.url)
    receiver.call("follow", "job:*")
    receiver.call("flush")
    sender.call("send", "job:go", "[1]")
    assert receiver.call("wait", 1, 20) == "1"
    nats_server.stop()
    poll(lambda: all(w.call("status").startswith("reconnecting") for w in (receiver, sender)),
         what="both processes to see the server go")
    nats_server.start()
    poll(lambda: all(w.call("status").startswith("connected") for w in (receiver, sender)),
         what="both processes to reconnect")
    receiver.call("flush")
    sender.call("send", "job:go", "[2]")
    assert receiver.call("wait", 2, 20) == "2"
    assert [r[1][0] for r in received(receiver)] == [1, 2]
    assert "1 reconnects" in receiver.call("status")


def test_cluster_node_dies_traffic_goes_on(
    nats_cluster: tuple[Any, Any], workers: Callable[..., Any], poll: Callable[..., None],
) -> None:
    n1, n2 = nats_cluster
    receiver = workers(f"{n1.url},{n2.url}")
    sender = workers(f"{n2.url},{n1.url}")
    receiver.call("follow", "data:*")
    receiver.call("flush")

    def probe() -> bool:
        # The clients may sit on different nodes: the route must carry the interest first.
        sender.call("send", "data:probe", "[-1]")
        return receiver.call("wait", 1, 0.2) != "0"

    poll(probe, 30, "the cluster to route the receiver's interest")
    for i in range(50):
        sender.call("send", "data:x", f"[{i}]")
    sender.call("flush")
    poll(lambda: [r[1][0] for r in received(receiver) if r[1][0] != -1] == list(range(50)),
         20, "the first 50 messages")

    status = receiver.call("status")
    victim, survivor = (n1, n2) if f"server {n1.url}" in status else (n2, n1)
    assert f"server {victim.url}" in status
    victim.stop()
    poll(lambda: f"connected; server {survivor.url}" in receiver.call("status")
         and f"connected; server {survivor.url}" in sender.call("status"),
         30, "both processes to move to the surviving node")
    receiver.call("flush")
    before = [r for r in received(receiver) if r[1][0] != -1]
    for i in range(50, 100):
        sender.call("send", "data:x", f"[{i}]")
    sender.call("flush")
    poll(lambda: [r[1][0] for r in received(receiver) if r[1][0] != -1] == list(range(100)),
         20, "the next 50 messages through the surviving node")
    assert len(before) == 50

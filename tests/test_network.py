"""The network picture: describe(), the DOT and Mermaid renderers, show_network and
``berrymq graph`` of this process (``berrymq graph URL``, which asks a running node over
JSON-RPC, is tested with the JSON-RPC distribution)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, on_log, populate

import berrymq
from berrymq import Bus, Message, network
from berrymq.cli import main

SUBJECTS = on_log.__module__  # the module of the receivers populate() registers


@pytest.fixture
def populated(berrymq_bus: Bus) -> Iterator[dict[str, Any]]:
    with populate() as things:
        yield things


def test_describe_lists_receivers_patterns_queues_and_senders(populated: dict[str, Any]) -> None:
    description = network.describe()
    assert json.loads(json.dumps(description)) == description  # JSON-serialisable
    assert description["version"] == 1
    assert description["bus"] == "test"
    assert description["node"] == berrymq.get_bus().node_id
    receivers = description["receivers"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for receiver in receivers:
        by_name.setdefault(receiver["name"], []).append(receiver)
    [log] = by_name[f"{SUBJECTS}.on_log"]
    assert log["kind"] == "function" and log["follows"] == [{"pattern": "*:log", "guard": None}]
    # One receiver that follows two patterns is one entry with two follows.
    [job] = by_name[f"{SUBJECTS}.on_job"]
    assert job["follows"] == [
        {"pattern": "job:*", "guard": f"{SUBJECTS}.is_urgent"},
        {"pattern": "job@ops:done", "guard": None},
    ]
    writers = by_name[f"{SUBJECTS}.Logger.write"]
    assert [w["object"] for w in writers] == ["Logger#1", "Logger#2"]
    assert {w["kind"] for w in writers} == {"follower"}
    [queue] = by_name["Queue(task:*)"]
    assert queue["kind"] == "queue"
    assert queue["queue"] == {"size": 2, "maxsize": 0, "shared": False}
    [shared] = by_name["Queue(work:*, shared)"]
    assert shared["queue"] == {"size": 0, "maxsize": 5, "shared": True}
    assert [r["id"] for r in receivers] == [f"r{i}" for i in range(len(receivers))]
    [sender] = description["senders"]
    assert sender["kind"] == "timer" and sender["sends"] == ["beat:tick"]
    assert description["connections"] == [] and description["forwarders"] == 0


def test_collected_receivers_disappear_from_the_picture(berrymq_bus: Bus) -> None:
    def temporary(message: Message) -> None:
        pass

    berrymq.regist_function("tmp:*", temporary)
    assert "tmp:*" in berrymq.show_network()
    del temporary
    gc.collect()
    assert network.describe()["receivers"] == []
    assert "tmp:*" not in berrymq.show_network()


def test_async_receivers_are_marked(berrymq_bus: Bus) -> None:
    async def main() -> dict[str, Any]:
        async def handler(message: Message) -> None:
            pass

        berrymq.regist_function("a:*", handler)
        return network.describe()

    [receiver] = asyncio.run(main())["receivers"]
    assert receiver["async"] is True
    assert receiver["name"].endswith("handler")


def test_connections_and_transports_are_described(berrymq_bus: Bus, berrymq_plugin_host: Any) -> None:
    address = berrymq.init_connection("local://picture-test-node")
    other = Bus(plugins=berrymq_plugin_host, name="client")
    try:
        connection = other.transport("local").interconnect(address, 10)
        other.track_connection(connection)
        client = network.describe(other)
        assert client["connections"] == [
            {"id": "c0", "address": address, "style": "interconnect", "direction": "out"}
        ]
        assert client["forwarders"] == 1
        server = network.describe(berrymq_bus)
        assert server["forwarders"] == 1
        assert [t["scheme"] for t in server["transports"]] == ["local"]
        # the server's picture shows the interconnection too, coming in
        assert server["connections"] == [
            {"id": "c0", "address": "local://unnamed", "style": "interconnect", "direction": "in"}
        ]
        connection.close()
        assert network.describe(berrymq_bus)["connections"] == []  # gone when it closes
        dot = network.to_dot(client)
        assert "bus -> c0" in dot and "dir=both" in dot
        assert "bus <-->|" in network.to_mermaid(client)
    finally:
        other.close()


def test_dot_output(populated: dict[str, Any]) -> None:
    dot = berrymq.show_network()
    assert dot == berrymq.show_network(format="dot")
    assert dot.startswith("digraph berrymq {") and dot.rstrip().endswith("}")
    description = network.describe()
    ids = {r["name"]: r["id"] for r in description["receivers"]}
    assert '"*:log"' in dot and '"task:*"' in dot and '"job@ops:done"' in dot
    assert f'-> {ids[f"{SUBJECTS}.on_job"]} [label="if {SUBJECTS}.is_urgent", style=dashed]' in dot
    assert "shape=cylinder" in dot  # queues
    assert '[label="beat:tick", style=dashed]' in dot  # a sender with no receiver


def test_sender_edges_go_to_matching_patterns(berrymq_bus: Bus) -> None:
    berrymq.regist_function("*:tick", on_log)
    berrymq.regist_function("beat", on_log)  # "beat" means beat:*
    with berrymq.IntervalTimer("beat", 3600):
        description = network.describe()
    dot = network.to_dot(description)
    assert 's0 -> p0 [label="beat:tick"];' in dot
    assert 's0 -> p1 [label="beat:tick"];' in dot
    mermaid = network.to_mermaid(description)
    assert 's0 -->|"beat:tick"| p0' in mermaid and 's0 -->|"beat:tick"| p1' in mermaid


def test_graphviz_accepts_the_dot(populated: dict[str, Any], tmp_path: Path,
                                  graphviz_dot: str) -> None:
    # Names with <locals> and <lambda> in them as well: a class and a guard made in a function.
    class Dashboard(metaclass=berrymq.Follower):
        @berrymq.following("job:*")
        def update(self, message: Message) -> None:
            pass

    board = Dashboard()
    berrymq.regist_function("job:run", on_log, guard_condition=lambda m: True)
    out = tmp_path / "net.svg"
    done = subprocess.run([graphviz_dot, "-Tsvg", "-o", str(out)], input=berrymq.show_network(),
                          text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # not even a warning
    svg = out.read_text()
    assert "task:*" in svg and "Logger.write" in svg
    assert "Dashboard.update" in svg and "&lt;lambda&gt;" in svg
    del board


def test_labels_are_escaped() -> None:
    description = {
        "bus": 'we"ird\\bus', "node": "n",
        "receivers": [{"id": "r0", "kind": "function", "name": 'say "hi"\\now',
                       "follows": [{"pattern": "a:b", "guard": None}]},
                      {"id": "r1", "kind": "function", "name": "tests.<locals>.<lambda>",
                       "follows": [{"pattern": "a:b", "guard": None}]}],
        "senders": [], "connections": [], "forwarders": 0, "transports": [],
    }
    dot = network.to_dot(description)
    assert r'say \"hi\"\\now' in dot and r'we\"ird\\bus' in dot
    mermaid = network.to_mermaid(description)
    assert "say #quot;hi#quot;" in mermaid
    # Mermaid labels are HTML: an unescaped <lambda> would be taken for a tag and vanish
    assert "tests.#lt;locals#gt;.#lt;lambda#gt;" in mermaid and "<lambda>" not in mermaid


HOSTILE = {
    "bus": 'b"\n}\ndigraph y {', "node": 'n"];',
    "receivers": [
        {"id": 'r0"]; evil [label="x', "kind": "function", "name": 'a"\n}\ndigraph x {',
         "follows": [{"pattern": "job:*", "guard": None}]},
        {"id": "p0", "kind": "queue", "name": "ends in \\", "queue": {"size": 1},
         "follows": [{"pattern": 'a:b"; x -> y; \\', "guard": None}]},
        {"id": "bus", "kind": 'k"]\r\n; z', "name": "n",
         "follows": [{"pattern": 'a:b"; x -> y; \\', "guard": ']; z -> w ['}]},
    ],
    "senders": [{"id": "s0 -> evil", "kind": "timer", "name": "t;]", "sends": ["job:x", "p0"]}],
    "connections": [{"id": "c0\n}", "address": 'tcp://x"]; y', "style": "interconnect",
                     "direction": "in"}],
    "forwarders": 1, "transports": [{"scheme": 'tcp"', "status": "x\\"}],
}


def test_hostile_ids_and_labels_do_not_change_the_graph(graphviz_dot: str) -> None:
    """A description from another node is drawn with the node names the picture gives
    (kind letter and position), never its ids: ``r0"]; evil [label="x`` was written raw
    into the DOT and added statements, and an id ``p0`` or ``bus`` merged two nodes."""
    network.check_description(HOSTILE)
    done = subprocess.run([graphviz_dot, "-Tjson"], input=network.to_dot(HOSTILE), text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    graph = json.loads(done.stdout)
    assert graph["name"] == "berrymq"
    names = {obj["name"] for obj in graph["objects"]}
    assert names == {"s0", "p0", "p1", "r0", "r1", "r2", "u0", "bus", "c0"}
    edges = {(graph["objects"][e["tail"]]["name"], graph["objects"][e["head"]]["name"])
             for e in graph["edges"]}
    assert len(graph["edges"]) == 6
    assert edges == {("s0", "p0"), ("s0", "u0"), ("p0", "r0"), ("p1", "r1"), ("p1", "r2"),
                     ("bus", "c0")}
    labels = {obj["name"]: obj["label"] for obj in graph["objects"]}
    assert labels["c0"] == 'tcp://x"]; y' and 'a"\\n}\\ndigraph x {' in labels["r0"]

    mermaid = network.to_mermaid(HOSTILE).splitlines()
    assert mermaid[0] == "flowchart LR" and len(mermaid) == 1 + 9 - 1 + 6
    node_or_edge = re.compile(r'  (s0|p[01]|r[0-2]|bus|c0)(>|\(\[|\[\(|\(|\[/|\{\{| -| <)')
    for line in mermaid[1:]:
        assert node_or_edge.match(line), line
        assert line.count('"') % 2 == 0 and "\r" not in line, line


def test_mermaid_output(populated: dict[str, Any]) -> None:
    text = berrymq.show_network(format="mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert any(line.strip().startswith("p") and '(["task:*"])' in line for line in lines)
    assert any("[(" in line and "Queue(task:*)" in line for line in lines)
    assert any("-.->|" in line and "is_urgent" in line for line in lines)


def test_a_description_renders_the_same_after_a_json_round_trip(populated: dict[str, Any]) -> None:
    description = network.describe()
    network.check_description(description)  # what describe makes passes the check
    again = json.loads(json.dumps(description))
    for fmt in ("dot", "mermaid"):
        assert network.render(again, fmt) == network.render(description, fmt)


def test_unknown_format_is_refused(berrymq_bus: Bus) -> None:
    with pytest.raises(ValueError, match="unknown network picture format 'svg'"):
        berrymq.show_network(format="svg")
    with pytest.raises(ValueError, match="dot, mermaid"):
        network.render({}, "png")


def test_show_network_of_an_explicit_bus(berrymq_plugin_host: Any) -> None:
    bus = Bus(plugins=berrymq_plugin_host, name="explicit")
    try:
        bus.subscribe("only:here", on_log)
        dot = berrymq.show_network(bus)
        assert "explicit" in dot and '"only:here"' in dot
    finally:
        bus.close()


# -- berrymq graph ------------------------------------------------------------------------------


def test_cli_graph_of_this_process(populated: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph"]) == 0
    assert capsys.readouterr().out == berrymq.show_network()


# -- the examples ------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done


def test_example_network_picture(tmp_path: Path) -> None:
    dot = _run_example("network_picture.py", cwd=tmp_path).stdout
    assert dot.startswith("digraph berrymq {")
    for text in ('"job:*"', "Dashboard.refresh", "Queue(job:*, shared)", "heartbeat:tick",
                 "local://peer", "dir=both", "if __main__.only_urgent"):
        assert text in dot
    mermaid = _run_example("network_picture.py", "mermaid", cwd=tmp_path).stdout
    assert mermaid.startswith("flowchart LR\n")
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", "-o", str(tmp_path / "x.svg")], input=dot, text=True,
                       check=True, timeout=60)


def test_example_network_remote(tmp_path: Path) -> None:
    out = _run_example("network_remote.py", cwd=tmp_path).stdout.splitlines()
    assert out[0].startswith("serving at tcp://127.0.0.1:")
    assert out[1] == "flowchart LR"
    assert '  p0(["order:*"])' in out
    assert '  r0("function<br/>__main__.on_order")' in out


def test_the_format_given_for_the_bus_is_named() -> None:
    """``show_network("mermaid")`` (the format by position) failed with a bare
    AttributeError from deep inside (found by an outside audit)."""
    with pytest.raises(TypeError, match="got 'mermaid'; for the format, say format='mermaid'"):
        berrymq.show_network("mermaid")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="describe the network of a berrymq.Bus"):
        network.describe(42)  # type: ignore[arg-type]

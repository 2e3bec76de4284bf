"""Issue 3 point 7: the two-process examples of the three styles run and print what their
docstrings say; their client halves also work against a ``berrymq serve`` node."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Lines, clean_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STYLES = ["ipc_style01_interconnect.py", "ipc_style02_oneway.py", "ipc_style03_queue.py"]
DEADLINE = 30.0


def expected_output(path: Path) -> list[str]:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    _, marker, tail = docstring.partition("Expected output:")
    assert marker, f"{path.name} has no 'Expected output:' section"
    lines = []
    for line in tail.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        if line:
            lines.append(line[4:])
    return lines


@pytest.mark.parametrize("name", STYLES)
def test_example_runs_both_processes(name: str, tmp_path: Path) -> None:
    path = EXAMPLES / name
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == expected_output(path)


# -- the client halves against a node started with `berrymq serve` ---------------------------


class Serve(Lines):
    """``berrymq serve`` with its printed lines queued; stopped with SIGINT, as Ctrl-C
    would, and it must then end cleanly."""

    def __init__(self, cwd: Path, *args: str) -> None:
        super().__init__([sys.executable, "-m", "berrymq", "serve", *args], cwd,
                         deadline=DEADLINE, env=clean_env())

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=DEADLINE) == 0
        super().close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    node = Serve(tmp_path, "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--print", "*")
    try:
        yield node
    finally:
        if node.process.poll() is None:
            node.close()


def test_style02_client_against_a_served_node(serve: Serve, tmp_path: Path) -> None:
    serve.line()  # tcp
    host, port = serve.line().removeprefix("serving http://").rsplit(":", 1)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "ipc_style02_oneway.py"), "client", host, port],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert [serve.line() for _ in range(3)] == [
        f'worker:log ["step {i} of 3"] {{"pid": "client"}}' for i in (1, 2, 3)]


def test_style03_client_against_a_served_node(serve: Serve, tmp_path: Path) -> None:
    tcp = serve.line().removeprefix("serving ")
    serve.line()  # http
    client = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "ipc_style03_queue.py"), "client", tcp],
        cwd=tmp_path, env=clean_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "queue of task:* ready"
        for args in (["task:run", "x"], ["task:stop"]):
            sent = subprocess.run([sys.executable, "-m", "berrymq", "send", tcp, *args],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert sent.returncode == 0, sent.stderr
        out, err = client.communicate(timeout=DEADLINE)
        assert client.returncode == 0, err
        assert out.splitlines() == ["got task:run ('x',)", "got task:stop ()",
                                    "nothing more (Empty)"]
        lines = [serve.line() for _ in range(3)]
        assert lines == ['task:run ["x"]', "task:stop []", "result:done [1]"]
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()

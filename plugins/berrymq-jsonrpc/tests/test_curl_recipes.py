"""docs/protocol.md, "### With curl": the ``console`` block is replayed with the real
``curl`` and ``jq`` against real nodes, and prints what the page shows.

The nodes are the page's: one serves HTTP with a receiver of ``price:quote`` returning
``args[0] * 9.5`` (registered as the page says), a second one stands at the page's
``http://127.0.0.1:8001`` for ``interconnect``; both in this process, on free loopback
ports. The only change made to the block is the URLs: ``http://127.0.0.1:8000`` and
``:8001`` become the real ones. The ``$ `` lines then run in order in ONE ``bash``
(``set -u -o pipefail``, stderr merged into stdout, no rc files, proxies and ``~/.curlrc``
out of the way), so the shell variables carry over from command to command; after each
command the script prints a marker and its exit status. Each command must:

- exit with status 0;
- print exactly the lines shown after it on the page (a trailing newline aside: the page
  cannot show one), and a command with no line shown after it must print **nothing**
  (the ``NAME=$(...)`` captures of tokens, ``URL=...``): every command's output is
  checked, none is left out.

Also checked: the block calls every method of ``berrymq_jsonrpc.protocol.METHODS``; every
variable captured with ``$(...)`` holds a token (not ``null`` from a refused call); and the
nodes' own receivers got what the commands sent: a ``Queue("job:*")`` on the first node
sees ``job:done``, ``job:a`` and ``job:b`` (and nothing else), and a ``Queue("*")`` on the
second node sees exactly the ``news:flash`` that the first forwarded over the
interconnection. That first queue is a receiver of ``job:*`` the page's node does not
have; the block's ``network`` filter (the unique patterns followed) prints the same with
it or without it.

curl (7.82 or newer, for ``--json``) and jq are required programs: the test skips where
one is absent, except under ``BERRYMQ_REQUIRE_BROKERS=1`` (CI) where that fails it.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from berrymq_jsonrpc import protocol
from helpers import required_program
from probe_tools import TOKEN

import berrymq
from berrymq.bus import Bus
from berrymq.default import use_bus

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
SECTION = "### With curl"
PAGE_URL = "http://127.0.0.1:8000"  # the node of the page
PAGE_OTHER_URL = "http://127.0.0.1:8001"  # the second node, for interconnect
MIN_CURL = (7, 82)  # the first curl with --json
WAIT = 10.0
RUN_TIMEOUT = 60.0


@dataclass
class Step:
    """One ``$ `` command of the block, the lines shown after it and its page line."""

    command: str
    shown: list[str]
    line: int


def recipe() -> list[Step]:
    """The ``console`` block under "### With curl", as commands and the lines they print."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(SECTION)
    fence = next(i for i in range(start + 1, len(lines))
                 if lines[i].startswith("```") or lines[i].startswith("#"))
    assert lines[fence] == "```console", f"protocol.md:{fence + 1}: no console block in {SECTION!r}"
    end = lines.index("```", fence + 1)
    steps: list[Step] = []
    for number, line in enumerate(lines[fence + 1:end], start=fence + 2):
        if line.startswith("$ "):
            assert not line.endswith("\\"), f"protocol.md:{number}: one line a command"
            steps.append(Step(line[2:], [], number))
        else:
            assert steps, f"protocol.md:{number}: output before the first command"
            steps[-1].shown.append(line)
    return steps


def test_the_recipe_calls_every_method() -> None:
    steps = recipe()
    called = {m for s in steps for m in re.findall(r'"method":"(\w+)"', s.command)}
    assert called == set(protocol.METHODS)
    text = "\n".join(s.command for s in steps)
    assert PAGE_URL in text and PAGE_OTHER_URL in text  # what the replay rewrites


def required_curl() -> str:
    """curl, new enough for ``--json`` (as :func:`required_program`: a skip, or a failure
    under ``BERRYMQ_REQUIRE_BROKERS=1``)."""
    curl = required_program("curl", "curl")
    done = subprocess.run([curl, "--version"], capture_output=True, text=True, timeout=WAIT)
    found = re.match(r"curl (\d+)\.(\d+)", done.stdout)
    assert found, done.stdout
    version = (int(found.group(1)), int(found.group(2)))
    if version < MIN_CURL:
        reason = f"curl {version[0]}.{version[1]} has no --json (7.82 or newer)"
        if os.environ.get("BERRYMQ_REQUIRE_BROKERS") == "1":
            pytest.fail(f"{reason}, and BERRYMQ_REQUIRE_BROKERS=1 requires it")
        pytest.skip(reason)
    return curl


def shell_env(home: Path, curl: str, jq: str) -> dict[str, str]:
    """The environment of the replay: no proxy between curl and loopback, no ``~/.curlrc``
    or ``~/.jq`` of the user, no ``BASH_ENV``; the found curl and jq first on ``PATH``."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "bash_env",
                                "curl_home", "xdg_config_home")}
    dirs = dict.fromkeys([str(Path(curl).parent), str(Path(jq).parent)])
    env.update(HOME=str(home), CURL_HOME=str(home), XDG_CONFIG_HOME=str(home), NO_PROXY="*",
               no_proxy="*", PATH=os.pathsep.join([*dirs, env.get("PATH", os.defpath)]))
    return env


def test_the_recipe_prints_what_the_page_shows(bus_factory: Callable[..., Bus],
                                               tmp_path: Path) -> None:
    curl = required_curl()
    jq = required_program("jq", "jq")
    bash = required_program("bash", "bash")
    steps = recipe()

    node = bus_factory()
    with use_bus(node):  # as the page says the node's program does
        berrymq.regist_function("price:quote", lambda m: m.args[0] * 9.5, weak=False)
        url = str(berrymq.init_connection("http://127.0.0.1:0"))
    other = bus_factory()
    other_url = other.transport("http").listen("http://127.0.0.1:0")
    jobs = berrymq.Queue("job:*", bus=node)
    forwarded = berrymq.Queue("*", bus=other)

    mark = f"@@recipe-{uuid.uuid4().hex}@@"
    captured = [m.group(1) for s in steps if (m := re.match(r"([A-Za-z_]\w*)=\$\(", s.command))]
    script = ["set -u -o pipefail", "exec 2>&1"]
    for step in steps:
        command = step.command.replace(PAGE_URL, url).replace(PAGE_OTHER_URL, other_url)
        script += [command, f"printf '\\n%s %s\\n' '{mark}' \"$?\""]
    script += [f"printf '%s=%s\\n' '{name}' \"${name}\"" for name in captured]
    (tmp_path / "recipe.sh").write_text("\n".join(script) + "\n", encoding="utf-8")
    done = subprocess.run([bash, "--noprofile", "--norc", "recipe.sh"], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          encoding="utf-8", env=shell_env(tmp_path, curl, jq),
                          timeout=RUN_TIMEOUT)

    pieces = re.split(rf"\n{re.escape(mark)} (\d+)\n", done.stdout)
    outputs, statuses, rest = pieces[0:-1:2], pieces[1:-1:2], pieces[-1]
    assert len(outputs) == len(steps), (
        f"the shell stopped after {len(outputs)} of {len(steps)} commands "
        f"(status {done.returncode}):\n{done.stdout}{done.stderr}")
    for step, output, status in zip(steps, outputs, statuses, strict=True):
        where = f"protocol.md:{step.line}: {step.command}"
        assert status == "0", f"{where}\nexited with {status}, printing\n{output}"
        assert output.removesuffix("\n") == "\n".join(step.shown), (
            f"{where}\nthe page shows\n" + "\n".join(step.shown) + f"\nthe command printed\n{output}")
    assert done.returncode == 0 and done.stderr == "", done.stderr

    values = dict(line.split("=", 1) for line in rest.splitlines())
    assert values.keys() == set(captured) and captured, rest
    for name, value in values.items():
        assert TOKEN.fullmatch(value), f"${name} is {value!r}, not a token"

    # What the commands sent reached the receivers of the node: job:done, then job:a and
    # job:b of send_messages (news:flash does not match job:*) ...
    got = [jobs.get(timeout=WAIT) for _ in range(3)]
    assert [(m.id, m.args, m.kwargs) for m in got] == [
        ("job:done", ("report.txt", 3), {"user": "bob"}), ("job:a", (1,), {}), ("job:b", (2,), {})]
    with pytest.raises(queue.Empty):
        jobs.get(block=False)
    # ... and the node forwarded to the second one what it saw after interconnect, no more
    # (close_connection sends what the link holds before it closes)
    message = forwarded.get(timeout=WAIT)
    assert (message.id, message.args, message.kwargs) == ("news:flash", ("hi",), {})
    with pytest.raises(queue.Empty):
        forwarded.get(block=False)

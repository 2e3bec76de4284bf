"""The pytest plugin ``berrymq.testing`` (issue 12, point 4): ``berrymq_bus`` isolates a
test, yet the application's module-level receivers (the README's first example) follow on
it. The plugin is tried in a pytest of its own, in a subprocess, as a user's suite would
load it (through its ``pytest11`` entry point), so that its module-level receivers do not
join this suite's default bus."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import berrymq
from berrymq import Message
from berrymq.testing import carry_receivers

USER_TESTS = '''
import pytest
import berrymq
from berrymq import Follower, following, following_function, twitter

seen = []

@following_function("*:log")
def receive_log(message):
    seen.append(message.id)

@following_function("audit:*", guard_condition=lambda m: m.kwargs.get("keep", False))
def audit(message):
    seen.append("audit " + message.id)

@following_function("bad:*")
def fails(message):
    raise RuntimeError("receiver failed on " + message.id)

class Logger(metaclass=Follower):
    @following("job:*")
    def on_job(self, message):
        seen.append("logger " + message.id)

logger = Logger()
AT_IMPORT = len(berrymq.get_bus().subscriptions())

@pytest.fixture(autouse=True)
def clear():
    seen.clear()

def test_module_level_receivers_follow_on_the_test_bus(berrymq_bus):
    assert berrymq.get_bus() is berrymq_bus
    twitter("do_something:log")
    twitter("job:done")
    twitter("audit:a")
    twitter("audit:b", keep=True)
    assert seen == ["do_something:log", "logger job:done", "audit audit:b"]

def test_their_errors_are_raised_from_twitter(berrymq_bus):
    with pytest.raises(ExceptionGroup) as info:
        twitter("bad:thing")
    assert "receiver failed on bad:thing" in str(info.value.exceptions[0])

def test_a_receiver_and_a_queue_made_in_a_test(berrymq_bus):
    berrymq.regist_function("late:*", lambda m: seen.append("late " + m.id), weak=False)
    queue = berrymq.Queue("late:*")
    twitter("late:x")
    assert seen == ["late late:x"] and queue.get_nowait().id == "late:x"

def test_end_with_it(berrymq_bus):
    twitter("late:x")
    assert seen == []
    assert [s.kind for s in berrymq_bus.subscriptions()] == ["function"] * 3 + ["follower"]

@pytest.mark.berrymq_isolated
def test_isolated_bus_has_none_of_them(berrymq_bus):
    twitter("do_something:log")
    assert seen == [] and berrymq_bus.subscriptions() == []

def test_the_default_bus_is_untouched():
    assert len(berrymq.get_bus().subscriptions()) == AT_IMPORT == 4
    twitter("x:log")
    assert seen == ["x:log"]
'''


def assert_users_suite_passes(where: Path, test_file: str, tests: int) -> None:
    """Run ``test_file`` in a pytest of its own, as a user's suite would run, warnings made
    errors, and check that its ``tests`` tests passed."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "--strict-markers", test_file],
        cwd=where, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{tests} passed" in result.stdout, result.stdout


def test_module_level_receivers_in_a_users_suite(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(USER_TESTS, encoding="utf-8")
    assert_users_suite_passes(tmp_path, "test_app.py", 6)


def test_carry_receivers_keeps_patterns_guards_and_references() -> None:
    got: list[str] = []

    def on_job(message: Message) -> None:
        got.append(message.id)

    with berrymq.Bus(raise_errors=True) as source, berrymq.Bus(raise_errors=True) as target:
        source.subscribe("job:*", on_job, lambda m: m.args == (1,))
        source.subscribe("x:*", lambda m: got.append("strong " + m.id), weak=False)
        source.subscribe("q:*", got.append, kind="queue", weak=False)
        assert carry_receivers(source, target) == 2
        target.twitter("job:a", 1)
        target.twitter("job:b", 2)  # the guard says no
        target.twitter("x:y")
        target.twitter("q:z")  # queues stay where they are
        assert got == ["job:a", "strong x:y"]
        assert [s.weak for s in target.subscriptions()] == [True, False]
        source.twitter("job:c", 1)  # the source keeps its own
        assert got[-1] == "job:c"


def test_the_example_of_docs_testing_md_passes(tmp_path: Path) -> None:
    """docs/testing.md's application and its tests, run as the page says."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text("utf-8")
    app, tests, bare = re.findall(r"```python\n(.*?)```", page, re.S)
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "orders.py").write_text(app)
    (tmp_path / "test_orders.py").write_text(f"{tests}\n\n{bare}")
    assert_users_suite_passes(tmp_path, "test_orders.py", 4)

"""berrymq.decorators (SPEC 3): ``auto_twitter`` sends around each call of a function,
``twitter_exception`` when it raises, plain and ``async def``, on an isolated default
bus."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable

import pytest
from helpers import capture

from berrymq import Bus, Message, Queue, auto_twitter, regist_function, set_bus, twitter_exception


@pytest.mark.parametrize(
    ("identifier", "entry", "exit_", "expected"),
    [
        ("job", False, False, ["job:entry", "job:exit"]),
        ("job", True, True, ["job:entry", "job:exit"]),
        ("job", True, False, ["job:entry"]),
        ("job", False, True, ["job:exit"]),
        ("job:run", False, False, ["job:entry", "job:exit"]),
        ("job:entry", False, False, ["job:entry"]),
        ("job:exit", False, False, ["job:exit"]),
        ("job:entry", False, True, ["job:entry"]),
        ("job:exit", True, False, ["job:exit"]),
        ("job@ops", False, False, ["job@ops:entry", "job@ops:exit"]),
    ],
)
def test_auto_twitter_table(berrymq_bus: Bus, identifier: str, entry: bool, exit_: bool,
                            expected: list[str]) -> None:
    got: list[str] = []
    for namespace in ("", "@ops"):  # every message sent, in either namespace
        regist_function(f"*{namespace}", lambda m: got.append(str(m.identifier)), weak=False)

    @auto_twitter(identifier, entry=entry, exit=exit_)
    def work(x: int, y: int = 0) -> int:
        got.append("call")
        return x + y

    assert work(1, y=2) == 3
    entries = [e for e in expected if e.endswith(":entry")]
    exits = [e for e in expected if e.endswith(":exit")]
    assert got == [*entries, "call", *exits]


def test_auto_twitter_passes_exceptions_and_arguments(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    regist_function("g:*", got.append, weak=False)

    @auto_twitter("g")
    def fail(value: int) -> None:
        raise LookupError(value)

    with pytest.raises(LookupError) as info:
        fail(7)
    assert info.value.args == (7,)  # the function's own exception
    assert [(m.id, m.args) for m in got] == [("g:entry", (7,)), ("g:exit", (7,))]
    assert fail.__name__ == "fail"


def test_twitter_exception(berrymq_bus: Bus) -> None:
    got = capture("err:*")

    @twitter_exception("err:raised")
    def quiet(x: int) -> None:
        raise ZeroDivisionError(f"nope {x}")

    @twitter_exception("err:raised", reraise=True)
    def loud() -> int:
        raise KeyError("k")

    @twitter_exception("err:raised")
    def fine() -> int:
        return 5

    assert fine() == 5
    assert got == []  # nothing raised, nothing sent
    assert quiet(3) is None
    with pytest.raises(KeyError, match="k"):
        loud()
    assert [m.id for m in got] == ["err:raised", "err:raised"]
    assert [m.kwargs["exception_type"] for m in got] == ["ZeroDivisionError", "KeyError"]
    first = got[0].kwargs
    assert first["exception_message"] == "nope 3"
    assert "Traceback" in first["traceback"] and "ZeroDivisionError: nope 3" in first["traceback"]
    assert first["function"].endswith("quiet")
    json.dumps({"args": got[0].args, "kwargs": first})  # JSON-serialisable


def test_auto_twitter_on_an_async_function_sends_around_its_body(berrymq_bus: Bus) -> None:
    got = capture("work:*")

    @auto_twitter("work")
    async def work(value: int) -> int:
        berrymq_bus.twitter("work:body", value)
        await asyncio.sleep(0)
        return value * 2

    @auto_twitter("work", exit=True)
    async def broken() -> None:
        raise LookupError("async")

    assert inspect.iscoroutinefunction(work) and work.__name__ == "work"
    coroutine = work(4)
    assert got == []  # nothing yet: not even :entry, sent when the coroutine starts
    assert asyncio.run(coroutine) == 8
    assert [(m.id, m.args) for m in got] == [("work:entry", (4,)), ("work:body", (4,)),
                                             ("work:exit", (4,))]
    with pytest.raises(LookupError, match="async"):
        asyncio.run(broken())
    assert got[-1].id == "work:exit"


def test_twitter_exception_on_an_async_function(berrymq_bus: Bus) -> None:
    got = capture("err:*")

    @twitter_exception("err:raised")
    async def quiet(x: int) -> int:
        await asyncio.sleep(0)
        raise ZeroDivisionError(f"nope {x}")

    @twitter_exception("err:raised", reraise=True)
    async def loud() -> int:
        raise KeyError("k")

    @twitter_exception("err:raised")
    async def fine() -> int:
        return 5

    assert inspect.iscoroutinefunction(quiet)
    assert asyncio.run(fine()) == 5 and got == []
    assert asyncio.run(quiet(3)) is None
    with pytest.raises(KeyError, match="k"):
        asyncio.run(loud())
    assert [m.kwargs["exception_type"] for m in got] == ["ZeroDivisionError", "KeyError"]
    assert got[0].kwargs["exception_message"] == "nope 3"
    assert got[0].kwargs["function"].endswith("quiet")


def test_twitter_exception_passes_on_an_exception_whose_str_fails(berrymq_bus: Bus) -> None:
    """The function's own exception reaches the caller, and the message goes out, even when
    the exception's ``__str__`` raises (it was replaced by the ``__str__``'s error)."""
    got = capture("err:*")

    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("str() failed")

    @twitter_exception("err:raised", reraise=True)
    def odd() -> None:
        raise Odd("original")

    with pytest.raises(Odd):
        odd()
    [message] = got
    assert message.kwargs["exception_type"] == "Odd"
    assert message.kwargs["exception_message"] == "<exception str() failed>"



def test_what_a_decorator_sends_never_replaces_the_calls_own_outcome(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """A full queue's refusal of the exit message came out of a call that had returned
    (``work(2)`` gave QueueFull, not 4) or raised (ValueError only as its __context__);
    SPEC 3: return values and exceptions pass through unchanged. The refusals are
    counted and logged instead."""
    exits = Queue("job:exit", maxsize=1, on_full="refuse")

    @auto_twitter("job:exit")
    def work(number: int) -> int:
        if number < 0:
            raise ValueError("negative")
        return number * 2

    @twitter_exception("job:exit", reraise=True)
    def fail() -> None:
        raise KeyError("k")

    assert work(1) == 2  # its exit message fills the queue
    assert work(2) == 4
    with pytest.raises(ValueError, match="negative"):
        work(-1)
    with pytest.raises(KeyError):
        fail()
    assert exits.qsize() == 1
    assert berrymq_bus.losses.counts == {"refused, sent by a decorator: QueueFull": 3}
    assert "auto_twitter of job:exit: a message it sent was refused" in caplog.text


def test_a_failing_receiver_of_a_decorators_message_is_logged_not_raised_into_the_call(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus(raise_errors=True, name="strict")
    old = set_bus(bus)
    try:
        def broken(message: Message) -> None:
            raise RuntimeError("receiver broke")

        bus.subscribe("job:*", broken)

        @auto_twitter("job")
        def work() -> str:
            return "done"

        assert work() == "done"
    finally:
        set_bus(old)
        bus.close()
    assert caplog.text.count("sending job:entry for auto_twitter failed") == 1
    assert "receiver broke" in caplog.text


@pytest.mark.parametrize(("decorating", "refusal"), [
    (lambda: auto_twitter("job")(5), "auto_twitter\\('job'\\) needs a callable, got 5"),
    (lambda: twitter_exception("job:failed")(None),
     "twitter_exception\\('job:failed'\\) needs a callable, got None"),
    (lambda: auto_twitter("job", entry="yes"),
     "entry for auto_twitter\\('job'\\) must be True or False, got 'yes'"),
    (lambda: auto_twitter("job", exit=1), "exit for auto_twitter\\('job'\\) must be True or "
                                          "False, got 1"),
    (lambda: twitter_exception("job", reraise="no"),
     "reraise for twitter_exception\\('job'\\) must be True or False, got 'no'"),
], ids=["auto_twitter-of-5", "twitter_exception-of-None", "entry-yes", "exit-1", "reraise-no"])
def test_a_decorator_refuses_what_it_cannot_wrap_when_it_decorates(
        berrymq_bus: Bus, decorating: Callable[[], object], refusal: str) -> None:
    """A wrapper of ``5`` was made, and each call of it sent ``job:entry`` and ``job:exit``
    for a call that never happened before raising; a flag of ``"yes"`` was taken as true
    (and ``"no"`` would have been too). Refused at once, by name, as following_function
    does, and nothing is sent."""
    got = capture("job:*")
    with pytest.raises(TypeError, match=refusal):
        decorating()
    assert got == []

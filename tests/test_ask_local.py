"""berrymq._ask_local: the receivers of this bus answering an ``ask`` (their return values
in registration order, an error entry for one that raised, guards, Follower methods, a
queue that stores the request, and a full queue's refusal after the replies)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

import berrymq
from berrymq import Bus, Follower, Message, ReplyError, following
from berrymq.plugins import PluginHost


def test_replies_in_registration_order_including_none(berrymq_bus: Bus) -> None:
    berrymq.regist_function("calc:*", lambda m: m.args[0] + 1, weak=False)
    berrymq.regist_function("*:add", lambda m: None, weak=False)
    berrymq.regist_function("calc:add", lambda m: m.kwargs["k"], weak=False)
    berrymq.regist_function("other:add", lambda m: "not me", weak=False)
    assert berrymq.ask("calc:add", 1, k="kw") == [2, None, "kw"]


def test_a_raising_receiver_gives_an_error_entry(berrymq_bus: Bus) -> None:
    def broken(message: Message) -> Any:
        raise ZeroDivisionError("divided")

    berrymq.regist_function("x:*", lambda m: "before", weak=False)
    berrymq.regist_function("x:*", broken)
    berrymq.regist_function("x:*", lambda m: "after", weak=False)
    before, error, after = berrymq.ask("x:y")
    assert (before, after) == ("before", "after")
    assert isinstance(error, ReplyError)
    assert error.exception_type == "ZeroDivisionError"
    assert error.message == "divided"
    assert "divided" in str(error)
    assert "broken" in error.receiver
    assert error.node == berrymq_bus.node_id
    assert error.to_json()["type"] == "ZeroDivisionError"
    assert ReplyError.from_json(error.to_json()) == error


def test_guard_conditions_skip_receivers(berrymq_bus: Bus) -> None:
    berrymq.regist_function("g:*", lambda m: "small", lambda m: m.args[0] < 10, weak=False)
    berrymq.regist_function("g:*", lambda m: "big", lambda m: m.args[0] >= 10, weak=False)
    assert berrymq.ask("g:n", 3) == ["small"]
    assert berrymq.ask("g:n", 30) == ["big"]


def test_a_raising_guard_gives_an_error_entry(berrymq_bus: Bus) -> None:
    def guard(message: Message) -> bool:
        raise RuntimeError("guard broke")

    berrymq.regist_function("gg:*", lambda m: 1, guard, weak=False)
    [reply] = berrymq.ask("gg:x")
    assert isinstance(reply, ReplyError) and reply.message == "guard broke"


def test_follower_methods_reply(berrymq_bus: Bus) -> None:
    class Echo(metaclass=Follower):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        @following("echo:*")
        def answer(self, message: Message) -> str:
            return f"{self.tag}:{message.args[0]}"

    a, b = Echo("a"), Echo("b")
    assert berrymq.ask("echo:say", "hi") == ["a:hi", "b:hi"]
    del a

    gc.collect()
    assert berrymq.ask("echo:say", "ho") == ["b:ho"]
    assert b.tag == "b"


def test_a_queue_stores_an_ask_request_but_does_not_answer(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("z:*")
    berrymq.regist_function("z:*", lambda m: "answer", weak=False)
    assert berrymq.ask("z:1") == ["answer"]
    assert queue.get_nowait().id == "z:1"


@pytest.mark.parametrize("raise_errors", [False, True])
def test_a_full_queue_refuses_an_ask_without_taking_the_replies(
        berrymq_plugin_host: PluginHost, raise_errors: bool) -> None:
    """A queue is not a replying receiver: a full one's refusal is a ``QueueFull`` entry
    naming the queue, after the replies (which keep their places), from ``ask`` and from
    ``ask_local`` alike, whatever the error policy; it neither raises nor hides them."""
    with Bus(plugins=berrymq_plugin_host, raise_errors=raise_errors) as bus:
        full = berrymq.Queue("*", maxsize=1, on_full="refuse", bus=bus)  # before the receiver
        bus.subscribe("price:quote", lambda m: m.args[0] * 9.5, weak=False)
        bus.twitter("price:fill")  # the queue is full
        for replies in (bus.ask("price:quote", 2, timeout=10),
                        bus.ask_local(Message("price:quote", (2,), {}))):
            assert replies[0] == 19.0 and len(replies) == 2, replies
            refusal = replies[1]
            assert isinstance(refusal, ReplyError) and refusal.exception_type == "QueueFull"
            assert refusal.receiver == "queue *:*"
            assert "queue *:* is full (1 message)" in refusal.message
        assert full.qsize() == 1


def test_an_ask_of_an_async_receiver_whose_loop_is_stopped_says_so(berrymq_bus: Bus) -> None:
    """The thread that runs a loop between ``run_until_complete`` calls asks its async
    receiver: nothing runs the coroutine while the loop is stopped, and the entry said only
    "no reply within 0.3s" (found by an outside audit). It names the stopped loop."""
    loop = asyncio.new_event_loop()
    try:
        async def price(message: Message) -> int:
            return 2 * message.args[0]

        async def register() -> None:
            berrymq.regist_function("price:get", price)

        loop.run_until_complete(register())
        (entry,) = berrymq.ask("price:get", 1, timeout=0.3)
        assert isinstance(entry, ReplyError) and entry.exception_type == "TimeoutError"
        assert entry.message == ("no reply within 0.3s: its event loop is not running, and "
                                 "nothing runs the coroutine until it does"), entry
    finally:
        loop.close()

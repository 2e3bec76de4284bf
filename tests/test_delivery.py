"""berrymq._delivery: the one delivery loop, the hop count it hands on (the hop box itself:
test_hops.py), the error policy."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers import WAIT, FullLink, bytes_held

import berrymq
from berrymq import Bus, Message, Queue, QueueFull, following_function, regist_function, twitter
from berrymq._delivery import deliver
from berrymq._hops import hop_box
from berrymq.plugins import PluginHost


def test_deliver_runs_receivers_with_the_hop_count_plus_one_and_restores_it(bus: Bus) -> None:
    seen: list[int] = []
    bus.subscribe("h:*", lambda m: seen.append(hop_box()[0]), weak=False)
    box = hop_box()
    box[0] = 0
    errors = deliver(bus, bus.index.lookup(Message("h:x")[0]), Message("h:x", (), {}, 4))
    assert errors is None and seen == [5] and box[0] == 0


def test_every_path_hands_the_hop_count_on(bus: Bus) -> None:
    """send, talk (its reply), the pool and ask all go through deliver()."""
    hops: dict[str, int] = {}
    bus.subscribe("q:*", lambda m: (hops.__setitem__("q", m.hops), 1)[1], weak=False)
    bus.subscribe("r:*", lambda m: hops.__setitem__("r", m.hops), weak=False)
    bus.subscribe("relay:*", lambda m: bus.talk("q:x", "r:back"), weak=False)
    bus.twitter("relay:x")
    assert hops == {"q": 1, "r": 2}
    bus.set_multiplicity(2)
    hops.clear()
    bus.twitter("relay:x")
    assert bus.join(10)
    assert hops == {"q": 1, "r": 2}
    bus.set_multiplicity(0)
    assert bus.ask("q:x") == [1]


def test_the_error_policy(berrymq_plugin_host: PluginHost, caplog: pytest.LogCaptureFixture) -> None:
    def broken(message: Message) -> None:
        raise KeyError("boom")

    def full(message: Message) -> None:
        raise QueueFull("queue x:* is full")

    with Bus(plugins=berrymq_plugin_host) as quiet:
        quiet.subscribe("x:*", broken, weak=False)
        with caplog.at_level(logging.ERROR, logger="berrymq"):
            quiet.twitter("x:y")  # logged, not raised
        assert "failed on message x:y" in caplog.text
        quiet.subscribe("x:*", full, weak=False)
        with pytest.raises(QueueFull):  # a refusal always reaches the sender, alone
            quiet.twitter("x:y")
    with Bus(plugins=berrymq_plugin_host, raise_errors=True) as loud:
        loud.subscribe("x:*", broken, weak=False)
        loud.subscribe("x:*", full, weak=False)
        with pytest.raises(ExceptionGroup) as info:
            loud.twitter("x:y")
        assert [type(e) for e in info.value.exceptions] == [KeyError, QueueFull]


def _raising_receivers(got: list[str]) -> None:
    """Three receivers of boom:*, the first and the third raising."""

    def first(message: Message) -> None:
        got.append("first")
        raise RuntimeError("first failed")

    def second(message: Message) -> None:
        got.append("second")

    def third(message: Message) -> None:
        got.append("third")
        raise KeyError("third failed")

    for fn in (first, second, third):
        regist_function("boom:*", fn, weak=False)


@pytest.mark.parametrize("options", [{}, {"raise_errors": False}], ids=["default", "raise_errors=False"])
def test_raising_receiver_is_isolated_and_logged(berrymq_plugin_host: Any, caplog: pytest.LogCaptureFixture,
                                                 options: dict[str, Any]) -> None:
    bus = Bus(plugins=berrymq_plugin_host, **options)  # by default, or raise_errors=False: log
    got: list[str] = []
    with berrymq.use_bus(bus), caplog.at_level(logging.ERROR, logger="berrymq"):
        _raising_receivers(got)
        twitter("boom:x")  # does not raise
    bus.close()
    assert got == ["first", "second", "third"]
    records = [r for r in caplog.records if r.name == "berrymq" and r.levelno >= logging.ERROR]
    assert len(records) == 2
    assert {type(r.exc_info[1]) for r in records if r.exc_info} == {RuntimeError, KeyError}
    assert all("boom:x" in r.getMessage() for r in records)
    assert "first failed" in caplog.text and "third failed" in caplog.text


def test_raise_errors_gives_exception_group_after_all_ran(berrymq_bus: Bus) -> None:
    got: list[str] = []
    _raising_receivers(got)  # berrymq_bus is a Bus(raise_errors=True)
    with pytest.raises(ExceptionGroup) as info:
        twitter("boom:x")
    assert got == ["first", "second", "third"]
    assert [type(e) for e in info.value.exceptions] == [RuntimeError, KeyError]


@pytest.mark.parametrize("workers", [0, 2])
def test_receiver_may_send_and_loops_are_cut(berrymq_plugin_host: Any, caplog: pytest.LogCaptureFixture,
                                             workers: int) -> None:
    bus = Bus(hop_limit=5, multiplicity=workers, plugins=berrymq_plugin_host)
    seen: list[tuple[str, int]] = []

    def ping(message: Message) -> None:
        seen.append((message.id, message.hops))
        twitter("loop:pong")

    def pong(message: Message) -> None:
        seen.append((message.id, message.hops))
        twitter("loop:ping")

    loop = [("loop:ping", 0), ("loop:pong", 1), ("loop:ping", 2), ("loop:pong", 3), ("loop:ping", 4)]
    with berrymq.use_bus(bus), caplog.at_level(logging.WARNING, logger="berrymq"):
        regist_function("loop:ping", ping, weak=False)
        regist_function("loop:pong", pong, weak=False)
        twitter("loop:ping")  # returns: the loop is cut
        assert berrymq.join(WAIT)
        assert seen == loop
        warnings = [r for r in caplog.records if r.name == "berrymq" and r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "loop:pong" in warnings[0].getMessage() and "hop limit 5" in warnings[0].getMessage()
        # a fresh send from outside any receiver starts again at zero hops
        seen.clear()
        twitter("loop:ping")
        assert berrymq.join(WAIT)
        assert seen == loop
    bus.close()


def test_receivers_sending_on_do_not_count_as_loop(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("a:*", lambda m: twitter("b:next"), weak=False)
    regist_function("b:*", lambda m: got.append(f"b {m.hops}"), weak=False)
    twitter("a:go")
    twitter("a:go")
    assert got == ["b 1", "b 1"]


def test_default_hop_limit_allows_reasonable_chains(berrymq_bus: Bus) -> None:
    got: list[int] = []

    @following_function("chain:*")
    def step(message: Message) -> None:
        got.append(message.args[0])
        if message.args[0] < 10:
            twitter("chain:next", message.args[0] + 1)

    twitter("chain:start", 0)
    assert got == list(range(11))


def test_with_a_pool_a_queue_stores_one_senders_messages_in_order(bus: Bus) -> None:
    queue = Queue("ord:*")
    worked: list[int] = []
    regist_function("ord:*", lambda m: worked.append(m.args[0]), weak=False)  # on the pool
    berrymq.set_multiplicity(4)
    for n in range(20_000):
        twitter("ord:x", n)
    assert bus.join(WAIT)
    assert [queue.get_nowait().args[0] for _ in range(20_000)] == list(range(20_000))  # SPEC 4
    assert sorted(worked) == list(range(20_000))


def test_with_a_pool_a_full_queue_refuses_the_sender(bus: Bus) -> None:
    queue = Queue("full:*", maxsize=1, on_full="refuse")
    berrymq.set_multiplicity(2)
    twitter("full:x", 1)
    with pytest.raises(QueueFull, match="queue full:\\* is full"):
        twitter("full:x", 2)  # the sender hears of it, as without a pool
    assert bus.join(WAIT) and queue.qsize() == 1 and bus.losses.total == 0


def _refuse(message: Message) -> None:
    raise QueueFull("no room")


def _fail(message: Message) -> None:
    raise ValueError("receiver failed")


def _send_directly(bus: Bus, payload: str) -> None:
    bus.twitter("big:x", payload)


def _send_from_a_receiver(bus: Bus, payload: str) -> None:
    bus.twitter("relay:x", payload)  # relayed to big:x


def _talk(bus: Bus, payload: str) -> None:
    bus.talk("big:x", "back:x", payload)


def _receive(bus: Bus, payload: str) -> None:
    bus.receive(Message("big:x", (payload,), {}, 0, f"peer-uid-000000-{payload[-1]}"), None, None)


@pytest.mark.parametrize("full_peer", [False, True], ids=["", "full-peer"])
@pytest.mark.parametrize("raising", [False, True], ids=["refusal", "group"])
@pytest.mark.parametrize("path", [_send_directly, _send_from_a_receiver, _talk, _receive],
                         ids=["twitter", "from-a-receiver", "talk", "receive"])
def test_a_refused_message_raised_to_its_sender_is_not_kept_once_caught(
        path: Any, raising: bool, full_peer: bool) -> None:
    """The refusal (or the group, with raise_errors) is raised through the sender's frame
    and deliver()'s: had either still held it once done, the exception, its traceback and
    their frames, the message among them, would keep each other until the cyclic collector
    ran, which with few large messages it seldom does. The collector is held off here."""
    payload = "w" * (200 * 1024)
    with Bus(name="refusing", raise_errors=raising) as bus:
        if raising:
            bus.subscribe("big:*", _fail, weak=False)
        bus.subscribe("big:*", _refuse, weak=False)
        bus.subscribe("relay:*", lambda m: bus.twitter("big:x", m.args[0]), weak=False)
        if full_peer:
            bus.add_forwarder(FullLink())
        caught: list[int] = []

        def send_and_catch() -> None:
            for i in range(10):  # 2 MiB refused
                try:
                    path(bus, payload + str(i))
                except (QueueFull, ExceptionGroup):
                    caught.append(i)

        logger = logging.getLogger("berrymq")
        logger.disabled = True  # pytest keeps the records it captures, tracebacks and all
        try:
            held = bytes_held(send_and_catch)
        finally:
            logger.disabled = False
    assert caught == list(range(10))  # each send was refused
    assert held < 2 * len(payload), f"{held:,} bytes held of 10 refused messages"


async def _handle(message: Message) -> str:
    return "handled"


def _sync_wrapper(message: Message) -> Any:
    return _handle(message)  # as a decorator's wrapper does


async def _generate(message: Message) -> Any:
    yield message


@pytest.mark.parametrize(("receiver", "what"), [(_sync_wrapper, "a coroutine"),
                                                 (_generate, "an async generator")],
                         ids=["coroutine", "async generator"])
def test_a_plain_receiver_that_returns_what_nothing_runs_fails(receiver: Any, what: str) -> None:
    """A sync wrapper of an async def (a lambda, a decorator) or an async generator is a
    plain receiver: what it returned was never run, with only Python's warning (no message
    named, nothing counted) and ask returned the raw object. It is the receiver's failure."""
    with Bus(name="wrapped", raise_errors=True) as bus:
        bus.subscribe("w:*", receiver, weak=False)
        with pytest.raises(ExceptionGroup) as caught:
            bus.twitter("w:x")
        (error,) = caught.value.exceptions
        assert isinstance(error, TypeError)
        assert f"returned {what}, which nothing runs: the message was not handled" in str(error)
        (entry,) = bus.ask("w:x", timeout=WAIT)
        assert isinstance(entry, berrymq.ReplyError) and entry.exception_type == "TypeError"

"""A ``get`` that gave up waiting, whose answer then comes with a message the node took
from its queue for it (the node stalled past the get's grace): the message is reported,
counted in the connection's losses and the process's stats and logged, not dropped unsaid.
The node is a real ``berrymq serve`` process, stalled with SIGSTOP."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc.channel import NoAnswer
from berrymq_jsonrpc.client import TAKEN_TOO_LATE
from helpers import wait_for
from probe_tools import stop_process

from berrymq import Identifier, Message
from berrymq.bus import Bus
from berrymq.stats import stats_for

#: The client's timeout: a get gives up that long after its own wait while the node is
#: stopped (long enough for every other call of the test on a loaded machine).
TIMEOUT = 2.0


@pytest.mark.parametrize("scheme", ["tcp", "http"])
@pytest.mark.parametrize("call", ["get_nowait", "get"])
def test_a_message_answered_after_its_get_gave_up_is_reported(
        scheme: str, call: str, serve_node: Callable[..., Any], bus_factory: Callable[..., Bus],
        caplog: pytest.LogCaptureFixture) -> None:
    node = serve_node(f"--{scheme}", "127.0.0.1:0")
    url = node.urls[scheme]
    bus = bus_factory(**{f"jsonrpc_{scheme}": {"timeout": TIMEOUT}})
    transport = bus.transport(scheme)
    inbox = transport.connect_via_queue(url, Identifier("job:*"), ttl=600)
    sender = transport.connect_oneway(url, ttl=600)
    sender.send(Message("job:one", (1,)))
    assert sender.flush(10)
    with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
        stop_process(node.process.pid)
        try:
            with pytest.raises(NoAnswer):
                if call == "get":
                    inbox.get(timeout=0.2)
                else:
                    inbox.get_nowait()
            time.sleep(0.2)  # the node stays stopped past the get's grace
        finally:
            os.kill(node.process.pid, signal.SIGCONT)
        wait_for(lambda: inbox.losses.get(TAKEN_TOO_LATE) == 1)

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if "gave up waiting" in r.getMessage()]

        # (counted, then logged, on the I/O thread: the count can be seen first)
        wait_for(logged)
    assert stats_for(bus).losses().get(TAKEN_TOO_LATE) == 1
    assert len(logged()) == 1 and "'job:one'" in logged()[0], logged()


def test_the_late_answer_is_reported_after_many_more_gave_up(
        serve_node: Callable[..., Any], bus_factory: Callable[..., Bus]) -> None:
    """Over 64 other requests given up on one connection during the stall forgot the
    first get's handler (the table of late answers kept the latest 64): its message went
    unreported."""
    node = serve_node("--tcp", "127.0.0.1:0")
    transport = bus_factory(jsonrpc_tcp={"timeout": TIMEOUT}).transport("tcp")
    inbox = transport.connect_via_queue(node.urls["tcp"], Identifier("job:*"), ttl=600)
    sender = transport.connect_oneway(node.urls["tcp"], ttl=600)
    sender.send(Message("job:one", (1,)))
    assert sender.flush(10)
    gave_up: list[NoAnswer] = []

    def give_up() -> None:
        try:
            inbox.get_nowait()
        except NoAnswer as exc:
            gave_up.append(exc)

    stop_process(node.process.pid)
    try:
        give_up()  # the first: the node will answer it with the message
        others = [threading.Thread(target=give_up) for _ in range(80)]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join()
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
    assert len(gave_up) == 81
    wait_for(lambda: inbox.losses.get(TAKEN_TOO_LATE) == 1)

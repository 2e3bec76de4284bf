"""The threads of one program sharing one TCP connection take turns for requests that
wait (``ask``, a blocking ``get``): a node runs 16 of them per connection at once
(``max_waiting``) and refuses one more with *Limit reached*, which reached the 17th thread
of a threaded program as an error (SPEC 6: every public call is thread-safe)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from berrymq.bus import Bus
from berrymq.errors import ReplyError
from berrymq.identifier import Identifier
from berrymq.message import Message

WAIT = 15.0
THREADS = 24  # more than a node's max_waiting (16)


def run_threads(count: int, work: Callable[[], Any]) -> list[Any]:
    """What ``work`` returned (or raised) in each of ``count`` threads."""
    results: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            result = work()
        except Exception as exc:
            result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    return results


@pytest.fixture
def node(bus_factory: Callable[..., Bus]) -> tuple[Bus, str]:
    bus = bus_factory()
    return bus, bus.transport("tcp").listen("tcp://127.0.0.1:0")


def asks_while_held(bus: Bus, url: str, bus_factory: Callable[..., Bus], threads: int,
                    at_once: int) -> list[Any]:
    """What ``threads`` threads of another bus sharing one connection to ``url`` get from
    ``ask`` of a receiver of ``bus`` that holds each ask until ``at_once`` of them run."""
    entered = threading.Semaphore(0)
    release = threading.Event()

    def held(message: Message) -> str:
        entered.release()
        release.wait(WAIT)
        return "done"

    bus.subscribe("slow:ask", held, weak=False)
    asker = bus_factory()
    asker.track_connection(asker.transport("tcp").connect_oneway(url, 60))

    def release_when_all_run() -> None:
        for _ in range(at_once):  # as many as the node runs at once: the others wait
            assert entered.acquire(timeout=WAIT)
        release.set()

    releaser = threading.Thread(target=release_when_all_run)
    releaser.start()
    try:
        return run_threads(threads, lambda: asker.ask("slow:ask", timeout=WAIT))
    finally:
        release.set()
        releaser.join(WAIT)


def test_more_threads_than_max_waiting_ask_through_one_connection(
        node: tuple[Bus, str], bus_factory: Callable[..., Bus]) -> None:
    bus, url = node
    assert asks_while_held(bus, url, bus_factory, THREADS, 16) == [["done"]] * THREADS


def test_more_threads_than_max_waiting_get_through_one_connection(
        node: tuple[Bus, str], bus_factory: Callable[..., Bus]) -> None:
    """Each waits its timeout and finds the queue empty: none is refused by the node."""
    bus, url = node
    getter = bus_factory()
    connection = getter.transport("tcp").connect_via_queue(url, Identifier("job:*"), 60)
    getter.track_connection(connection)
    results = run_threads(THREADS, lambda: connection.get(timeout=2.0))
    assert [type(result) for result in results] == [queue.Empty] * THREADS, results
    bus.twitter("job:run", 1)  # and the connection still works
    assert connection.get(timeout=WAIT).args == (1,)


def test_a_node_with_a_lower_max_waiting_is_asked_again_not_refused(
        bus_factory: Callable[..., Bus]) -> None:
    """The turns here are 16; a node whose max_waiting is 4 refused the fifth thread's ask
    with Limit reached (and a node counts an ask this side gave up on until its receiver
    returns): such a refusal is asked again within the ask's timeout."""
    bus = bus_factory(jsonrpc_tcp={"max_waiting": 4})
    url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    assert asks_while_held(bus, url, bus_factory, 8, 4) == [["done"]] * 8


def test_a_question_with_a_dict_key_that_is_not_a_string_is_refused(
        node: tuple[Bus, str], bus_factory: Callable[..., Bus]) -> None:
    bus, url = node
    asked: list[Any] = []
    bus.subscribe("k:ask", asked.append, weak=False)
    asker = bus_factory()
    asker.track_connection(asker.transport("tcp").connect_oneway(url, 60))
    [entry] = asker.ask("k:ask", {1: "a", "1": "b"}, timeout=WAIT)  # it reached the node
    assert isinstance(entry, ReplyError) and entry.exception_type == "TypeError", entry
    assert "message k:ask cannot be sent" in entry.message and "a dict key 1 (int)" in entry.message
    assert asked == []  # as ({'1': 'b'},)


def test_gets_beyond_a_lower_max_waiting_of_the_node_wait_their_turn_there_too(
        bus_factory: Callable[..., Bus]) -> None:
    bus = bus_factory(jsonrpc_tcp={"max_waiting": 2})
    url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    getter = bus_factory()
    connection = getter.transport("tcp").connect_via_queue(url, Identifier("job:*"), 60)
    getter.track_connection(connection)
    results = run_threads(6, lambda: connection.get(timeout=1.0))
    assert [type(result) for result in results] == [queue.Empty] * 6, results


def test_a_get_refused_a_turn_by_the_node_until_its_timeout_still_takes_a_waiting_message(
        bus_factory: Callable[..., Bus]) -> None:
    """The node's one turn (max_waiting 1) held by an ask the client gave up on: the get
    was refused until its timeout and said Empty, a message waiting for it."""
    bus = bus_factory(jsonrpc_tcp={"max_waiting": 1})
    url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    release = threading.Event()
    bus.subscribe("hold:x", lambda m: release.wait(WAIT), weak=False)
    client = bus_factory()
    connection = client.transport("tcp").connect_via_queue(url, Identifier("job:*"), 60)
    client.track_connection(connection)
    try:
        [entry] = client.ask("hold:x", timeout=0.3)  # given up here, still running there
        assert isinstance(entry, ReplyError) and entry.exception_type == "TimeoutError"
        bus.twitter("job:run", 1)
        assert connection.get(timeout=1.0).args == (1,)
    finally:
        release.set()

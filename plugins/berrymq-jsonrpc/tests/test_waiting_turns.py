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


def test_more_threads_than_max_waiting_ask_through_one_connection(
        node: tuple[Bus, str], bus_factory: Callable[..., Bus]) -> None:
    bus, url = node
    entered = threading.Semaphore(0)
    release = threading.Event()

    def held(message: Message) -> str:
        entered.release()
        release.wait(WAIT)
        return "done"

    bus.subscribe("slow:ask", held, weak=False)
    asker = bus_factory()
    asker.track_connection(asker.transport("tcp").connect_oneway(url, 60))

    def release_when_16_run() -> None:
        for _ in range(16):  # as many as the node runs at once: the others wait their turn
            assert entered.acquire(timeout=WAIT)
        release.set()

    releaser = threading.Thread(target=release_when_16_run)
    releaser.start()
    results = run_threads(THREADS, lambda: asker.ask("slow:ask", timeout=WAIT))
    releaser.join(WAIT)
    assert results == [["done"]] * THREADS


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

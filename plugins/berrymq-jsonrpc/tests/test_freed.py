"""A closed bus that used JSON-RPC is freed (SPEC: nothing unbounded): its counters
(:class:`~berrymq.stats.NodeStats`), services, channels and outboxes go with it,
and the I/O loop's tasks come back to what they were. A process that opens and closes
buses for good (a client per job, a test suite) must not grow with each one.

The buses here are real, on loopback sockets, over TCP and HTTP, in each connection
style, closed in either order; what keeps a closed bus is found with weak references
after a garbage collection."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import berrymq
from berrymq.stats import NodeStats, stats_for
from berrymq.transports.ioloop import io_loop

STYLES = ["interconnect", "connect_oneway", "connect_via_queue"]
ROUNDS = 3  # pairs of buses per case: enough to tell a leak from a leftover


async def _tasks() -> int:
    return sum(1 for task in asyncio.all_tasks() if task is not asyncio.current_task())


def io_tasks() -> int:
    """How many tasks the I/O loop runs (not counting the one that counts them)."""
    return io_loop.run(_tasks())


def assert_freed(wait_for: Callable[..., Any], refs: list[weakref.ref[Any]],
                 tasks: int) -> None:
    """Wait until every object of ``refs`` was collected and the I/O loop runs at most
    ``tasks`` tasks; fail naming what is still alive."""

    def freed() -> bool:
        gc.collect()
        return all(ref() is None for ref in refs) and io_tasks() <= tasks

    try:
        wait_for(freed, 10, "the closed buses freed, the I/O loop's tasks ended")
    except AssertionError:
        alive = [type(obj).__name__ for ref in refs if (obj := ref()) is not None]
        raise AssertionError(f"still alive after close: {alive}; I/O loop tasks "
                             f"{io_tasks()} (were {tasks})") from None


def test_node_stats_written_from_a_long_lived_thread_are_freed() -> None:
    """A thread's cell is retired when the thread ends; what retires it must not hold
    the stats themselves, or every thread that ever counted keeps them alive."""
    stats = NodeStats()
    stats.message_in("job:x", None)  # from this thread, which outlives the stats
    other = threading.Thread(target=stats.message_out, args=("job:y", None))
    other.start()
    other.join()
    gc.collect()
    assert stats.totals()["messages_in"] == 1 and stats.totals()["messages_out"] == 1
    ref = weakref.ref(stats)
    del stats
    gc.collect()
    assert ref() is None, "the counters outlive their owner (held by this thread's cell)"


def _use(client: berrymq.Bus, server: berrymq.Bus, address: str, scheme: str,
         style: str) -> list[weakref.ref[Any]]:
    """Connect ``client`` to ``server`` at ``address`` in ``style``, send a message up
    and, where the style carries them, one down (an interconnection, a queue); weak
    references to what that made on the client: its counters, service, connection, link
    and outbox."""
    transport: Any = client.transport(scheme)
    if scheme == "http" and style == "interconnect":
        transport.listen("http://127.0.0.1:0")  # the peer calls this node back
    if style == "connect_via_queue":
        connection = transport.connect_via_queue(address, berrymq.Identifier("m:*"), ttl=60)
    else:
        connection = getattr(transport, style)(address, ttl=60)
    connection.send(berrymq.Message("up:x", (1,)))
    assert connection.flush(10)
    if style == "interconnect":
        server.twitter("m:down", 1)
        assert server.flush(10)
    elif style == "connect_via_queue":
        server.twitter("m:down", 1)
        assert connection.get(timeout=10)[0] == berrymq.Identifier("m:down")
    return [weakref.ref(obj) for obj in (stats_for(client), transport.service, connection,
                                         connection.link, connection.link.outbox)]


def _pair(scheme: str, style: str, server_first: bool) -> list[weakref.ref[Any]]:
    """Two buses connected in ``style``, used, both closed; weak references to the buses,
    their counters and what they made (taken before close: after it, stats_for would make
    new counters)."""
    client = berrymq.Bus(name="freed-client")
    server = berrymq.Bus(name="freed-server")
    refs = _use(client, server, server.transport(scheme).listen(f"{scheme}://127.0.0.1:0"),
                scheme, style)
    served: Any = server.transport(scheme)
    refs += [weakref.ref(obj) for obj in (client, server, stats_for(server), served.service)]
    first, second = (server, client) if server_first else (client, server)
    first.close()
    second.close()
    return refs


@pytest.mark.parametrize("server_first", [False, True], ids=["client-first", "server-first"])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_closed_buses_and_what_they_made_are_freed(
        scheme: str, style: str, server_first: bool,
        wait_for: Callable[..., Any]) -> None:
    before = io_tasks()
    refs: list[weakref.ref[Any]] = []
    for _ in range(ROUNDS):
        refs += _pair(scheme, style, server_first)
    assert_freed(wait_for, refs, before)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_clients_of_a_long_lived_server_are_freed(
        scheme: str, style: str, wait_for: Callable[..., Any]) -> None:
    """A server that stays up: each client bus that connected, sent and closed is freed,
    and the server's tasks on the I/O loop do not grow with the clients it served."""
    server = berrymq.Bus(name="freed-long-lived")
    served: Any = server.transport(scheme)
    address = served.listen(f"{scheme}://127.0.0.1:0")
    refs: list[weakref.ref[Any]] = []
    tasks = 0
    try:
        for round_ in range(ROUNDS + 1):
            client = berrymq.Bus(name="freed-client")
            made = _use(client, server, address, scheme, style)
            if round_:
                refs += [weakref.ref(client), *made]
            client.close()
            if not round_:  # the server's own tasks (its session sweeper) are running now
                wait_for(lambda: not served.service.sessions, 10, "the first client gone")
                tasks = io_tasks()
            del client
        wait_for(lambda: not served.service.sessions, 10, "the clients' sessions closed")
        assert_freed(wait_for, refs, tasks)
    finally:
        server.close()

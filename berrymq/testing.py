"""A pytest plugin (entry point ``pytest11``) with fixtures for code that uses berryMQ.

- ``berrymq_bus``: a fresh :class:`~berrymq.Bus` that is the default bus for the test,
  raising receivers' errors from ``twitter`` (``raise_errors=True``), closed afterwards.
  The receivers the application registered on the process's default bus before the test,
  typically module-level ``@following_function`` functions and ``Follower`` objects
  created at import, follow on the test bus too, so the test sees the program as it runs;
  queues and receivers registered during the test end with it. Mark a test
  ``@pytest.mark.berrymq_isolated`` for a bus without them. Its plugins are loaded as if
  no settings file existed, so the test's bus is not affected by a ``berrymq.toml`` in
  the working directory (the default bus, where modules register as pytest imports them,
  reads it as the program does).
- ``berrymq_plugin_host``: that plugin host, to create more isolated buses.
- :func:`free_port`: a free loopback port for a server a test starts (a broker, a node).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from berrymq.aio import is_async_receiver
from berrymq.bus import Bus
from berrymq.default import get_bus, use_bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings

__all__ = ["berrymq_bus", "berrymq_plugin_host", "carry_receivers", "free_port"]

#: The receiver kinds ``berrymq_bus`` carries over (queues are not: each would get a second
#: copy of every message, and a test's queue is made inside the test).
CARRIED_KINDS = frozenset({"function", "follower"})

_host: PluginHost | None = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "berrymq_isolated: berrymq_bus starts without the default bus's receivers"
    )


def carry_receivers(source: Bus, target: Bus) -> int:
    """Register on ``target`` the function and method receivers of ``source``, with their
    patterns, guard conditions and weak or strong references, in registration order.
    Returns how many. Async receivers are left out: they belong to the loop that
    registered them."""
    count = 0
    for subscription in source.subscriptions():
        receiver = subscription.receiver
        if subscription.kind not in CARRIED_KINDS or receiver is None:
            continue
        if is_async_receiver(receiver):
            continue
        target.subscribe(subscription.pattern, receiver, subscription.guard,
                         weak=subscription.weak, kind=subscription.kind)
        count += 1
    return count


@pytest.fixture
def berrymq_plugin_host() -> PluginHost:
    """Every installed plugin, active, with no settings file (loaded once per session)."""
    global _host
    if _host is None:
        _host = PluginHost(Settings())
    return _host


@pytest.fixture
def berrymq_bus(request: pytest.FixtureRequest, berrymq_plugin_host: PluginHost) -> Iterator[Bus]:
    """A bus of the test's own, made the default bus for the duration of the test, with
    the receivers the default bus had (unless the test is marked ``berrymq_isolated``)."""
    bus = Bus(raise_errors=True, plugins=berrymq_plugin_host, name="test")
    if request.node.get_closest_marker("berrymq_isolated") is None:
        carry_receivers(get_bus(), bus)
    with use_bus(bus):
        yield bus
    bus.close()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port outside the ephemeral range.

    A client that keeps reconnecting to a port where nothing listens can be given that
    very port as its own source port (a TCP self-connection), which would then stop the
    server from restarting on it; ports outside the ephemeral range are never handed out
    to clients.
    """
    low, high = _ephemeral_range()
    candidates = list(range(20000, low)) if low > 21000 else list(range(high + 1, 65535))
    if not candidates:  # every port is ephemeral here: any free one, as the system gives
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    rng = random.Random()
    for _ in range(200):
        port = rng.choice(candidates)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found outside the ephemeral range")

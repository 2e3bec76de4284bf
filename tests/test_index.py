"""berrymq._index: subscriptions filed by pattern shape, and the routes they make (the
cache itself: tests/test_routes.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import nothing

from berrymq import Bus, Message, Subscription
from berrymq.transports.base import memory_link_pair


def other(message: Message) -> None:
    pass


def cached(bus: Bus, key: object) -> object:
    return bus.routes.get(key)


@pytest.mark.parametrize("pattern", ["job:done", "job:*", "*:done", "*:*", "job"])
def test_every_pattern_shape_is_found_on_a_route_miss(bus: Bus, pattern: str) -> None:
    bus.subscribe("elsewhere:done", other)
    subscription = bus.subscribe(pattern, nothing)
    assert bus.route("job:done") == (subscription,)
    assert bus.route("job@ns:done") == ()  # another namespace


def test_routes_keep_registration_order_across_shapes(bus: Bus) -> None:
    subs = [bus.subscribe(p, nothing) for p in ("*:*", "job:done", "*:done", "job:*")]
    assert bus.route("job:done") == tuple(subs)
    assert bus.route("job:*") == tuple(subs)  # a wildcard sender reaches every shape
    assert bus.route("*:done") == tuple(subs)


def test_a_subscription_invalidates_only_the_routes_it_is_part_of(bus: Bus) -> None:
    bus.subscribe("a:x", nothing)
    for name in ("a:x", "a:y", "b:x", "b:y"):
        bus.twitter(name)
    kept = {name: cached(bus, name) for name in ("b:x", "b:y")}
    bus.subscribe("a:*", other)  # touches a:x and a:y only
    assert cached(bus, "a:x") is None and cached(bus, "a:y") is None
    assert all(cached(bus, name) is route for name, route in kept.items())
    bus.subscribe("*:y", other)  # touches b:y (a:y is gone already)
    assert cached(bus, "b:y") is None and cached(bus, "b:x") is kept["b:x"]
    bus.subscribe("*:*", other)  # touches everything
    assert cached(bus, "b:x") is None
    assert [s.receiver for s in bus.route("a:y")] == [other, other, other]


def test_a_cancel_invalidates_only_the_routes_it_is_part_of(bus: Bus) -> None:
    subscription = bus.subscribe("a:x", nothing)
    bus.subscribe("b:x", nothing)
    bus.twitter("a:x")
    bus.twitter("b:x")
    kept = cached(bus, "b:x")
    subscription.cancel()
    assert cached(bus, "a:x") is None and cached(bus, "b:x") is kept
    assert bus.route("a:x") == ()


def test_a_wildcard_sender_route_is_invalidated_by_any_matching_change(bus: Bus) -> None:
    bus.twitter("*:x")
    assert cached(bus, "*:x") is not None
    bus.subscribe("job:x", nothing)
    assert cached(bus, "*:x") is None
    assert len(bus.route("*:x")) == 1


def test_a_collected_receiver_leaves_index_and_routes(bus: Bus) -> None:
    def gone(message: Message) -> None:
        pass

    bus.subscribe("a:x", gone)
    bus.twitter("a:x")
    del gone
    gc.collect()
    assert bus.route("a:x") == ()
    assert bus.subscriptions() == []
    assert not bus.index._buckets and not bus.index._owners


def test_cancelling_many_receivers_of_one_pattern_keeps_the_rest(bus: Bus) -> None:
    receivers = [lambda m, i=i: None for i in range(2000)]
    subs = [bus.subscribe("same:x", r, weak=False) for r in receivers]
    for sub in subs[::2]:
        sub.cancel()
    assert bus.route("same:x") == tuple(subs[1::2])
    for sub in subs[1::2]:
        sub.cancel()
    assert bus.route("same:x") == () and not bus.index._buckets


def test_a_guard_change_invalidates_the_routes_of_its_pattern(bus: Bus) -> None:
    got: list[str] = []
    subscription = bus.subscribe("g:x", lambda m: got.append(m.id), weak=False)
    bus.twitter("g:x")
    bus.set_guard(subscription, lambda m: False)
    bus.twitter("g:x")
    assert got == ["g:x"]


def test_a_guard_change_reaches_routes_built_after_it(bus: Bus) -> None:
    """The route entry of a subscription is made once and shared by its routes: a guard
    set later is in the entries of the routes built after it (and in no stale one)."""
    got: list[str] = []
    subscription = bus.subscribe("g:*", lambda m: got.append(m.id), weak=False)
    bus.set_guard(subscription, lambda m: m.id != "g:y")
    bus.twitter("g:x")
    bus.twitter("g:y")
    bus.set_guard(subscription, None)
    bus.twitter("g:y")
    assert got == ["g:x", "g:y"]


def test_cached_routes_share_the_entries_of_their_subscriptions(bus: Bus) -> None:
    """Each route held a tuple of its own per receiver: with 300 subscriptions matching
    every identifier, a cached identifier cost 23 KB (a soak of a node: 672 MB for
    30,000 identifiers), where the 300 entries it points to are 2.4 KB of pointers."""
    for _ in range(300):
        bus.subscribe("*:*", other, weak=False)
    for i in range(3):
        bus.twitter(f"n{i}:x")
    routes = [cached(bus, f"n{i}:x") for i in range(3)]
    entries = [route[1] for route in routes]  # type: ignore[index]
    assert all(len(route_entries) == 300 for route_entries in entries)
    assert all(a is b for a, b in zip(entries[0], entries[1], strict=True))
    assert all(a is b for a, b in zip(entries[0], entries[2], strict=True))


# -- code run in the middle of this thread's own write (a finalizer, a signal handler) -----
# The collector runs __del__ at any allocation, also inside subscribe or cancel with the
# index's lock held by the same thread; a cancel there waited for itself for ever (and so
# did every thread that subscribed, cancelled or sent to a new identifier after it). A
# subscription listener runs at such a point, as a finalizer may: the writes below run in
# a thread of their own, so that a wait for itself fails the test rather than hanging it.


def in_a_thread(work: Callable[[], object]) -> object:
    """What ``work()`` returned or raised, run in a thread of its own (10 s at most)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the write waited for itself"
    return outcome[0]


def during_the_next_write(bus: Bus, work: Callable[[], object]) -> list[object]:
    """Run ``work`` once, inside the bus's next subscribe (its lock held); what it gave."""
    done: list[object] = []

    def listener(subscription: Subscription, added: bool) -> None:
        if added and not done:
            try:
                done.append(work())
            except RuntimeError as exc:
                done.append(exc)

    bus.add_subscription_listener(listener)
    return done


def test_a_cancel_run_mid_write_is_done_as_the_write_ends(bus: Bus) -> None:
    got: list[Message] = []
    old = bus.subscribe("job:*", got.append, weak=False)
    bus.twitter("job:x")  # its route cached
    during_the_next_write(bus, old.cancel)
    assert isinstance(in_a_thread(lambda: bus.subscribe("other:*", other)), Subscription)
    assert not old.active
    bus.twitter("job:x")
    assert len(got) == 1 and [s.pattern.text for s in bus.index.snapshot()] == ["other:*"]


def test_an_unfollow_run_mid_write_is_done_as_the_write_ends(bus: Bus) -> None:
    got: list[Message] = []
    bus.subscribe("job:*", got.append, weak=False)
    bus.subscribe("job:y", got.append, weak=False)
    removed = during_the_next_write(bus, lambda: bus.unfollow(got.append))
    in_a_thread(lambda: bus.subscribe("other:*", other))
    bus.twitter("job:y")
    assert removed == [2] and got == []


def test_a_send_to_a_new_identifier_run_mid_write_is_delivered(bus: Bus) -> None:
    got: list[Message] = []
    bus.subscribe("job:*", got.append, weak=False)
    during_the_next_write(bus, lambda: bus.twitter("job:new", 1))
    in_a_thread(lambda: bus.subscribe("other:*", other))
    assert [(m.id, m.args) for m in got] == [("job:new", (1,))]
    bus.twitter("job:new", 2)  # (its route was not cached mid-write: worked out again)
    assert [m.args for m in got] == [(1,), (2,)]


def test_a_subscribe_run_mid_write_is_refused_saying_why(bus: Bus) -> None:
    outcome = during_the_next_write(bus, lambda: bus.subscribe("late:*", other))
    assert isinstance(in_a_thread(lambda: bus.subscribe("other:*", other)), Subscription)
    assert isinstance(outcome[0], RuntimeError) and "would wait for itself" in str(outcome[0])
    assert bus.route("late:x") == ()


FINALIZERS = """
import gc, sys, berrymq
class Listener:  # a cycle, collected by the collector at whatever allocation it runs
    def __init__(self, parent=None):
        self.parent = parent
        self.children = [Listener(self)] if parent is None else []
        self.subscription = berrymq.regist_method("job:*", self.on_job)
    def on_job(self, message): pass
    def __del__(self):
        self.subscription.cancel()
        berrymq.twitter("resource:closed")
class Worker(metaclass=berrymq.Follower):
    @berrymq.following("task:*")
    def on_task(self, message): pass
for _ in range(20_000):
    Listener(); worker = Worker()
gc.collect()
print("finished with", len(berrymq.get_bus().index.snapshot()))
"""


def test_finalizers_that_cancel_and_send_do_not_hang_the_process(tmp_path: Path) -> None:
    """The way the collector runs them (it hung 3 runs in 3 before, inside a subscribe)."""
    result = subprocess.run([sys.executable, "-c", FINALIZERS], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["finished", "with", "1"]  # the last Worker's


def test_a_finalizer_run_mid_guard_change_that_cancels_is_done_as_it_ends(bus: Bus) -> None:
    """Every write removes what was cancelled during it as it lets go, not only a
    subscribe (the old guard's ``__del__`` runs inside ``set_guard``)."""
    got: list[Message] = []
    victim = bus.subscribe("job:*", got.append, weak=False)

    class OldGuard:
        def __call__(self, message: Message) -> bool:
            return True

        def __del__(self) -> None:
            victim.cancel()

    other_subscription = bus.subscribe("other:*", other, weak=False, guard=OldGuard())
    bus.twitter("job:x")  # its route cached
    in_a_thread(lambda: bus.set_guard(other_subscription, None))
    bus.twitter("job:x")
    assert len(got) == 1 and victim not in bus.index.snapshot()


def test_a_send_mid_write_to_a_linked_bus_that_asks_back_is_delivered() -> None:
    """The peer's route miss asks this bus what it follows, mid-write: a read, taken."""
    a, b = Bus(), Bus()
    try:
        there, back = memory_link_pair(b, a)
        b.add_forwarder(there)
        a.add_forwarder(back)
        got: list[str] = []
        a.subscribe("job:*", lambda message: got.append(message.id), weak=False)
        during_the_next_write(b, lambda: b.twitter("job:new"))
        in_a_thread(lambda: b.subscribe("other:*", other, weak=False))
        assert got == ["job:new"]
    finally:
        a.close()
        b.close()


SIGNALS = """
import signal, time, berrymq
bus = berrymq.Bus()
target = bus.subscribe("t:*", print, weak=False)
def handler(signum, frame):
    target.cancel()
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
end = time.monotonic() + 3
while time.monotonic() < end:
    bus.subscribe("job:x", print, weak=False).cancel()
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print("finished", target.active)
"""


def test_a_signal_handler_that_cancels_does_not_hang_the_process(tmp_path: Path) -> None:
    """Signals every 0.5 ms while the main thread subscribes and cancels: one came just as
    the lock was taken, before its holder was written down, and waited for itself."""
    result = subprocess.run([sys.executable, "-c", SIGNALS], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["finished", "False"]

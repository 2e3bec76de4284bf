"""berrymq._subscribing: a bus's subscription methods, its routes as seen from outside and
whether a send may be refused."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from helpers import nothing

import berrymq
from berrymq import Bus, Follower, Message, Queue, following, following_function
from berrymq.subscription import Subscription


def test_route_lists_the_subscriptions_in_registration_order(bus: Bus) -> None:
    first = bus.subscribe("job:*", nothing)
    second = bus.subscribe("*:done", nothing)
    bus.subscribe("task:*", nothing)
    assert bus.route("job:done") == (first, second)
    assert bus.route("job:*") == (first, second)  # a wildcard sender reaches both
    assert bus.route("other:started") == ()


def test_may_refuse_says_whether_anything_on_a_route_can_push_back(bus: Bus) -> None:
    """What a transport asks before answering a remote ``send_message`` ahead of its
    delivery: only a route of functions and Follower methods, with no worker pool and no
    peer to pass the message to, cannot refuse."""
    bus.subscribe("job:done", nothing)
    assert not bus.may_refuse("job:done")
    assert not bus.may_refuse("task:done")  # nobody follows it
    queue = Queue("job:*", maxsize=1, bus=bus)
    assert bus.may_refuse("job:done") and bus.may_refuse("job:started")
    assert not bus.may_refuse("task:done")
    queue.close()
    assert not bus.may_refuse("job:done")
    bus.subscribe("mine:x", nothing, kind="custom")  # a kind that does not say: it may
    assert bus.may_refuse("mine:x")
    bus.set_multiplicity(2)  # a worker pool waits for room, then refuses
    assert bus.may_refuse("job:done")


def test_may_refuse_with_a_peer_attached(bus: Bus) -> None:
    peer = Bus(name="may-refuse-peer")
    try:
        bus.subscribe("job:done", nothing)
        bus.transport("local").interconnect(peer.transport("local").listen("local://"), ttl=10)
        assert bus.may_refuse("job:done")  # a peer's full buffer refuses
        assert not bus.may_refuse("_job:done")  # a local identifier stays here
    finally:
        peer.close()


@pytest.mark.parametrize(("subscribing", "refusal"), [
    (lambda bus: bus.subscribe("job:*", 42), "receiver for job:\\* must be callable"),
    (lambda bus: bus.subscribe("job:*", nothing, guard=1), "guard_condition for job:\\* must be"),
    (lambda bus: bus.subscribe("job:*", nothing, weak="no"),
     "weak for job:\\* must be True or False, got 'no'"),
    (lambda bus: Queue("job:*", shared="yes", bus=bus), "shared must be True or False, got 'yes'"),
    (lambda bus: berrymq.regist_method("job:*", print), "regist_method needs a bound method"),
    # (found by an outside audit: each was taken, then failed at every send, in the log
    # only, or never ran at all, silently)
    (lambda bus: bus.subscribe("job:*", lambda: None), "receiver <function .*> for job:\\* "
     "cannot be called with the message, its one argument: its signature is \\(\\)"),
    (lambda bus: bus.subscribe("job:*", _Holder, weak=False), "receiver <class .*_Holder'> "
     "for job:\\* cannot be called with the message"),
    (lambda bus: berrymq.regist_function("job:*", _Holder.on), "signature is \\(self, message"),
    (lambda bus: bus.subscribe("job:*", nothing, guard=lambda: True),
     "guard_condition <function .*> for job:\\* cannot be called with the message"),
    (lambda bus: _Holder().following_nothing(), "receiver <bound method _Holder.bare .*> for "
     "job:\\* cannot be called with the message"),
])
def test_a_wrong_argument_is_refused_by_name_and_nothing_subscribes(
        bus: Bus, subscribing: Callable[[Bus], object], refusal: str) -> None:
    """Flags are True or False, as the Bus's own arguments (nothing is converted); a
    builtin function is not a bound method, although its ``__self__`` (its module) is
    set."""
    with berrymq.use_bus(bus), pytest.raises(TypeError, match=refusal):
        subscribing(bus)
    assert bus.subscriptions() == []


class _Holder:
    def on(self, message: Message) -> None:
        pass

    def bare(self) -> None:
        pass

    def following_nothing(self) -> None:
        berrymq.regist_method("job:*", self.bare)


def _calls_inner(function: Callable[[], None]) -> Callable[[Message], None]:
    """A decorator whose wrapper takes the message and calls ``function`` without it."""
    @functools.wraps(function)
    def wrapper(message: Message) -> None:
        function()
    return wrapper


@_calls_inner
def _refresh() -> None:
    pass


def test_a_receiver_is_judged_by_its_own_signature_not_the_one_it_wraps(bus: Bus) -> None:
    """A decorated receiver whose wrapper takes the message was refused for the wrapped
    function's signature (inspect follows ``__wrapped__``; a hostile review); a bound
    method, a partial, a builtin, a class with ``__call__`` and a lambda with a default
    are taken, and a Follower class refused keeps none of its receivers."""
    class Call:
        def __call__(self, message: Message) -> None:
            pass

    for receiver in (_refresh, _Holder().on, functools.partial(nothing), print, Call(),
                     lambda message, extra=1: None):
        bus.subscribe("job:*", receiver, weak=False)
    assert len(bus.subscriptions()) == 6
    with berrymq.use_bus(bus), pytest.raises(TypeError, match="cannot be called with the "
                                             "message"):
        class Partly(metaclass=Follower):
            @following("job:*")
            @staticmethod
            def fine(message: Message) -> None:
                pass

            @following("job:*")
            @staticmethod
            def unable() -> None:
                pass
    assert len(bus.subscriptions()) == 6  # (the fine one went on receiving)
    kept: list[object] = []

    class Instance(metaclass=Follower):
        def __init__(self) -> None:
            kept.append(self)  # (the half-made instance lives on: its receivers did too)

        @following("job:*")
        def fine(self, message: Message) -> None:
            pass

        @following("job:*")
        def unable(self) -> None:
            pass

    with berrymq.use_bus(bus), pytest.raises(TypeError, match="cannot be called with the "
                                             "message"):
        Instance()
    assert kept and len(bus.subscriptions()) == 6


@pytest.mark.parametrize("target", ["job:*", None, b"job:*"])
def test_unfollow_of_a_pattern_or_none_is_refused_not_a_silent_nothing(
        bus: Bus, target: object) -> None:
    bus.subscribe("job:*", nothing)
    with pytest.raises(TypeError, match="unfollow\\(\\) takes a function, a bound method, an "
                       "object or a class, got .* \\(it matched nothing, silently\\)"):
        bus.unfollow(target)
    assert len(bus.subscriptions()) == 1


def test_unfollow_of_a_class_leaves_a_function_it_only_holds_as_a_static_method(
        bus: Bus) -> None:
    """``helper = staticmethod(log)`` in a class body: ``log`` is not the class's, and a
    ``unfollow(Service)`` stopped it following."""
    got: list[str] = []

    def log(message: Message) -> None:
        got.append(message.id)

    bus.subscribe("log:*", log)

    class Service:
        helper = staticmethod(log)

    assert bus.unfollow(Service) == 0
    bus.twitter("log:one")
    assert got == ["log:one"]


def test_unfollow_of_a_class_covers_the_static_methods_it_defines(bus: Bus) -> None:
    """A static method is registered as its plain function: ``unfollow(Service)`` found
    nothing of a Follower whose one receiver is static (0, and it kept receiving), and
    left the static one of a plain class. A subclass does not cover what it inherits,
    as it does not cover its base's class methods."""
    got: list[str] = []

    class Service(metaclass=Follower):
        @following("svc:*")
        @staticmethod
        def on_any(message: Message) -> None:
            got.append("Service static")

    class Plain:
        @following_function("plain:*")
        @staticmethod
        def static(message: Message) -> None:
            got.append("Plain static")

        @following_function("plain:*")
        @classmethod
        def klass(cls, message: Message) -> None:
            got.append("Plain class")

        def method(self, message: Message) -> None:
            got.append("Plain instance")

    class Heir(Service):
        pass

    plain = Plain()
    bus.subscribe("plain:*", plain.method)
    assert bus.unfollow(Heir) == 0  # Service's static method is Service's
    assert bus.unfollow(Service) == 1
    assert bus.unfollow(Plain) == 3
    bus.twitter("svc:reload")
    bus.twitter("plain:go")
    assert got == [] and bus.subscriptions() == []
    assert berrymq.unfollow(Service) == 0  # nothing left
    del plain


def test_a_listener_that_raises_refuses_the_new_subscription() -> None:
    """A bridge that cannot follow a pattern (a NATS subject too long for its server)
    refuses the receiver: the call that made it raises, and the subscription is taken
    back at once, every listener told (it stayed filed, and got messages, until a
    cancel came from another thread)."""
    seen: list[tuple[str, bool]] = []

    def refuse_long(subscription: Subscription, added: bool) -> None:
        if added and len(str(subscription.pattern)) > 10:
            raise ValueError(f"{subscription.pattern} is too long for the broker")

    with Bus(name="refusing") as bus:
        bus.add_subscription_listener(lambda s, added: seen.append((str(s.pattern), added)))
        bus.add_subscription_listener(refuse_long)
        got: list[Message] = []
        with pytest.raises(ValueError, match="too long for the broker"):
            bus.subscribe("much-too-long:x", got.append, weak=False)
        bus.subscribe("short:x", got.append, weak=False)
        bus.twitter("much-too-long:x")
        assert got == [] and [str(s.pattern) for s in bus.subscriptions()] == ["short:x"]
        assert seen == [("much-too-long:x", True), ("much-too-long:x", False),
                        ("short:x", True)]

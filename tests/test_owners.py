"""berrymq._owners: which receivers ``unfollow(target)`` covers, and the ids the index
files them under."""

from __future__ import annotations

from berrymq import Bus, Follower, Message, following
from berrymq._owners import belongs_to, owner_keys, subclasses


class Base:
    def handle(self, message: object) -> None:
        pass

    @classmethod
    def on_class(cls, message: object) -> None:
        pass


class Child(Base):
    pass


class Grandchild(Child):
    pass


def plain(message: object) -> None:
    pass


def test_a_function_is_covered_by_itself_only() -> None:
    assert belongs_to(plain, plain)
    assert not belongs_to(plain, Base().handle)
    assert not belongs_to(None, plain)  # a collected receiver
    assert owner_keys(plain) == (id(plain),)


def test_a_bound_method_by_itself_its_object_its_function_and_its_class() -> None:
    one, other = Base(), Base()
    assert belongs_to(one.handle, one.handle)  # a new bound method each access: equal
    assert belongs_to(one.handle, one)
    assert belongs_to(one.handle, Base.handle)
    assert belongs_to(one.handle, Base)
    assert not belongs_to(one.handle, other)
    assert not belongs_to(one.handle, other.handle)
    assert owner_keys(one.handle)[1:] == (id(one), id(Base), id(Base.handle))


def test_a_class_covers_the_methods_of_its_subclasses_instances() -> None:
    grandchild = Grandchild()
    assert belongs_to(grandchild.handle, Base) and belongs_to(grandchild.handle, Child)
    assert not belongs_to(Base().handle, Child)
    assert list(subclasses(Base)) == [Base, Child, Grandchild]


def test_a_classmethod_is_covered_by_its_class() -> None:
    assert belongs_to(Base.on_class, Base)
    assert id(Base) in owner_keys(Base.on_class)
    assert id(type) not in owner_keys(Base.on_class)  # a class's own class is not its owner


class Worker(metaclass=Follower):
    @following("w:*")
    def on_w(self, message: Message) -> None:
        pass


class SubWorker(Worker):
    pass


def test_unfollow_finds_what_it_removes_through_the_owner_index(berrymq_bus: Bus) -> None:
    bus = berrymq_bus
    a, b, c = Worker(), Worker(), SubWorker()
    bus.subscribe("f:x", plain)
    assert bus.unfollow(a.on_w) == 1  # a bound method, made anew: compared by ==
    assert bus.unfollow(b) == 1  # every method of one object
    assert bus.unfollow(Worker) == 1  # instances of subclasses too
    assert bus.unfollow(c) == 0
    assert bus.unfollow(plain) == 1
    assert bus.subscriptions() == []


class Handler:
    """A receiver that is an object: its class has ``__call__``."""

    def __init__(self) -> None:
        self.got: list[str] = []

    def __call__(self, message: Message) -> None:
        self.got.append(message.id)


class SubHandler(Handler):
    pass


def test_a_class_covers_its_callable_instances(berrymq_bus: Bus) -> None:
    """unfollow(Handler) cancelled none of the Handler objects registered as receivers:
    only their methods, and an object called as a receiver has none registered."""
    bus = berrymq_bus
    one, sub = Handler(), SubHandler()
    assert belongs_to(one, Handler) and belongs_to(sub, Handler) and not belongs_to(one, SubHandler)
    assert id(Handler) in owner_keys(one) and id(type) not in owner_keys(Handler)
    assert not belongs_to(plain, Handler) and id(type(plain)) not in owner_keys(plain)
    bus.subscribe("h:*", one)
    bus.subscribe("h:*", sub)
    bus.subscribe("h:*", plain)
    assert bus.unfollow(Handler) == 2
    bus.twitter("h:x")
    assert one.got == [] and sub.got == []
    assert [s.receiver for s in bus.subscriptions()] == [plain]

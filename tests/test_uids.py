"""berrymq._uids: the uids a node gives, and the bounded memory of those it has seen."""

from __future__ import annotations

import threading

from berrymq._uids import SEEN_LIMIT, UidMemory


def test_uids_carry_the_prefix_and_never_repeat_across_threads() -> None:
    memory = UidMemory()
    uids: list[str] = []

    def take() -> None:
        uids.extend(memory.new_uid() for _ in range(2000))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(uids)) == 16_000
    assert all(uid.startswith(memory.prefix) and len(uid) == 20 for uid in uids)
    assert UidMemory().prefix != memory.prefix  # each node draws its own


def test_a_uid_of_its_own_or_one_seen_before_is_not_a_first_sight() -> None:
    memory = UidMemory()
    assert not memory.first_sight(memory.new_uid())  # back from a cycle
    assert memory.first_sight("peer-node-7")
    assert not memory.first_sight("peer-node-7")  # came by a second way


def test_the_seen_uids_are_bounded() -> None:
    memory = UidMemory()
    for n in range(SEEN_LIMIT * 2 + 10):
        assert memory.first_sight(f"peer-{n}")
    assert len(memory.seen) <= SEEN_LIMIT * 2
    assert not memory.first_sight(f"peer-{SEEN_LIMIT * 2 + 9}")
    # a rotation keeps the generation before it: a uid of that one is still known...
    assert not memory.first_sight(f"peer-{SEEN_LIMIT + 5}")
    # ...and forgets the one before that (the bound: at most 2 x SEEN_LIMIT uids held)
    assert memory.first_sight("peer-5")

"""Guard conditions: a receiver is skipped for messages its guard rejects.

``guard_condition(message)`` is called first; a false result skips that receiver (and
only that one) for that message.

Expected output:
    every order: order:placed 20
    every order: order:placed 250
    big order: order:placed 250
    vip: order:placed 250
"""

from __future__ import annotations

from berrymq import Follower, following, following_function, twitter


def is_big(message):
    return message.kwargs.get("total", 0) > 100


@following_function("order:*")
def every_order(message):
    print("every order:", message.id, message.total)


@following_function("order:*", guard_condition=is_big)
def big_order(message):
    print("big order:", message.id, message.total)


class Desk(metaclass=Follower):
    @following("order:placed", guard_condition=lambda m: m.kwargs.get("vip", False))
    def vip(self, message):
        print("vip:", message.id, message.total)


desk = Desk()
twitter("order:placed", total=20)
twitter("order:placed", total=250, vip=True)

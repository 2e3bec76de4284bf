"""Push API with method receivers: any object of a ``Follower`` class is a receiver.

Each instance's ``@following`` methods are registered when it is created, held by weak
reference: an instance that is garbage-collected stops receiving.

Expected output:
    [app] log: do_something:log started
    [db] log: do_something:log started
    [app] log: *:log everyone
    [db] log: *:log everyone
    after del: 1 logger(s) left
    [app] log: other:log once more
"""

from __future__ import annotations

import gc

from berrymq import Follower, following, twitter


class Logger(metaclass=Follower):
    def __init__(self, prefix):
        self.prefix = prefix

    @following("*:log")
    def receive_log(self, message):
        print(f"[{self.prefix}] log: {message.id} {message.args[0]}")


if __name__ == "__main__":
    app = Logger("app")
    db = Logger("db")
    twitter("do_something:log", "started")   # both instances get it, in creation order
    twitter("*:log", "everyone")             # a wildcard sender reaches every *:log

    del db
    gc.collect()                              # db is gone: it stops receiving
    print("after del: 1 logger(s) left")
    twitter("other:log", "once more")

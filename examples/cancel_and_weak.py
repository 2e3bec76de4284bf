"""Registering at run time, cancelling, and weak references.

``regist_function`` / ``regist_method`` return a handle whose ``cancel()`` undoes the
registration; ``unfollow`` stops a function or an object entirely. Receivers are held by
weak reference unless ``weak=False``: a lambda nothing else holds needs ``weak=False``.

Expected output:
    handler: news:today
    method: news:today
    lambda: news:today
    after cancel and unfollow:
    lambda: news:later
    after the object is gone:
"""

from __future__ import annotations

import gc

from berrymq import regist_function, regist_method, twitter, unfollow


def handler(message):
    print("handler:", message.id)


class Reader:
    def read(self, message):
        print("method:", message.id)


reader = Reader()
handle = regist_function("news:*", handler)
regist_method("news:*", reader.read)
regist_function("news:*", lambda m: print("lambda:", m.id), weak=False)
twitter("news:today")

handle.cancel()              # handler stops
unfollow(reader)             # every method of reader stops
print("after cancel and unfollow:")
twitter("news:later")

unfollow_me = Reader()
regist_method("gone:*", unfollow_me.read)
del unfollow_me              # held weakly: collected, and no longer called
gc.collect()
print("after the object is gone:")
twitter("gone:now")

"""Decorators that send: ``auto_twitter`` announces calls (``name:entry`` before,
``name:exit`` after); ``twitter_exception`` reports exceptions as messages with
JSON-serialisable details.

Expected output:
    watch: backup:entry ('/home',)
    copying /home
    watch: backup:exit ('/home',)
    result: 3 files
    watch: restore:exit ()
    error: ZeroDivisionError 'division by zero' in divide
    divide returned: None
    error: ZeroDivisionError 'division by zero' in divide_loudly
    re-raised: ZeroDivisionError
"""

from __future__ import annotations

from berrymq import auto_twitter, following_function, twitter_exception


@following_function("backup:*")
@following_function("restore:*")
def watch(message):
    print("watch:", message.id, message.args)


@following_function("*:error")
def on_error(message):
    print(f"error: {message.exception_type} {message.exception_message!r} in {message.function}")


@auto_twitter("backup")                 # both entry and exit
def backup(path):
    print("copying", path)
    return "3 files"


@auto_twitter("restore", exit=True)     # only exit
def restore():
    pass


@twitter_exception("divide:error")
def divide(a, b):
    return a / b


@twitter_exception("divide:error", reraise=True)
def divide_loudly(a, b):
    return a / b


print("result:", backup("/home"))
restore()
print("divide returned:", divide(1, 0))
try:
    divide_loudly(1, 0)
except ZeroDivisionError:
    print("re-raised: ZeroDivisionError")

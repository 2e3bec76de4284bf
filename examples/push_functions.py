"""Push API with function receivers: the seed's sample, run.

``twitter()`` sends; ``@following_function(pattern)`` makes a function a receiver. The
sample is as written there (``run_command`` prints instead of ``...``); the part under
``__main__`` presses the buttons.

Expected output:
    receive_log: do_something:log @ ...
    run_command: start:command
"""

# The seed's sample, verbatim (its import style and %-formatting included).
# ruff: noqa: I001, UP031
from __future__ import annotations

from berrymq import (following_function, twitter)
import time

@following_function("*:log")
def receive_log(message):
    print("receive_log: %s @ %s" % (message.id, message.args[0]))

@following_function("*:command")
def run_command(message):
    # do job
    print("run_command: %s" % message.id)

def do_something():
    twitter("do_something:log", time.ctime())

def on_start_button_pressed():
    twitter("start:command")


if __name__ == "__main__":
    do_something()              # do_something:log matches *:log
    on_start_button_pressed()   # start:command matches *:command

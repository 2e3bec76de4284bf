"""Callback style: ``talk()`` sends, then sends each receiver's result to a second
identifier. The seed's sample, with the result printed instead of logged.

Expected output:
    do_process: test:process
    receive_result: test:log_result -> processed test
"""

# The seed's sample, verbatim (its import style and %-formatting included).
# ruff: noqa: I001, UP031
from __future__ import annotations

from berrymq import (following_function, talk)

@following_function("*:process")
def do_process(message):
    print("do_process: %s" % message.id)
    return "processed %s" % message.name

@following_function("*:log_result")
def receive_result(message):
    print("receive_result: %s -> %s" % (message.id, message.args[0]))

def on_unittest_start_button_pressed(event):
    talk("test:process", "test:log_result")


if __name__ == "__main__":
    on_unittest_start_button_pressed(None)

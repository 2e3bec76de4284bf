"""Request and reply: ``ask()`` returns the replies of every matching receiver, in
registration order; a receiver that raised gives a ``ReplyError`` entry instead.

Expected output:
    replies: [120, 95]
    with an error: [ReplyError('ValueError', 'no price for pear')]
"""

from __future__ import annotations

import berrymq
from berrymq import ReplyError, following_function


@following_function("price:quote")
def shop_a(message):
    if message.args[0] == "pear":
        raise ValueError("no price for pear")
    return 120


@following_function("price:quote", guard_condition=lambda m: m.args[0] == "apple")
def shop_b(message):
    return 95


print("replies:", berrymq.ask("price:quote", "apple", timeout=2.0))
replies = berrymq.ask("price:quote", "pear", timeout=2.0)
shown = [f"ReplyError({r.exception_type!r}, {r.message!r})" if isinstance(r, ReplyError)
         else r for r in replies]
print(f"with an error: [{', '.join(str(r) for r in shown)}]")

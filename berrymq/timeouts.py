"""Checking the seconds a caller gives to wait (``timeout``, ``put_timeout``, ...).

One rule for every wait of the public API: a number of seconds, 0 or more; an infinite
number (or one over :data:`LONGEST_WAIT`) means "no limit", and so does ``None`` where the
parameter takes it (``get``'s ``timeout``; not ``put_timeout``, whose default is a number,
nor ``ask``'s ``timeout``, which must be above 0), so that ``float("inf")`` works wherever
``None`` does instead of raising a bare OverflowError from deep inside. A bad value is
refused before anything happens, naming the parameter.
Where a wait needs a number (an ``ask``'s deadline, the pool's ``pool_queue_wait``),
"no limit" is :data:`LONGEST_WAIT` (:func:`wait_seconds`).
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["LONGEST_WAIT", "check_block", "seconds_left", "too_long", "wait_limit", "wait_seconds"]

#: "No limit" as a number of seconds: half the longest wait the platform's locks take
#: (about 146 years on Linux), so that a deadline computed from it can still be waited for.
LONGEST_WAIT = threading.TIMEOUT_MAX / 2


def wait_limit(name: str, value: object, *, none: bool = True) -> float | None:
    """``value`` as seconds to wait, or None for no limit.

    :param name: the parameter, named in the errors.
    :param value: what the caller gave.
    :param none: whether None is allowed (it means no limit).
    :raises TypeError: not a number (a bool or a string is not one), or None when not allowed.
    :raises ValueError: negative or NaN.
    """
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        allowed = "a number of seconds or None" if none else "a number of seconds"
        raise TypeError(f"{name} must be {allowed}, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be 0 or more seconds, got {value!r}")
    if value > LONGEST_WAIT:
        return None  # float("inf") included: longer than any wait can be told to last
    return float(value)


def check_block(who: str, block: object) -> None:
    """Refuse a ``block`` of a ``get`` that is not True or False (the standard library's
    0 and 1 are equal to them and pass): ``get(2)``, meant as a timeout, waited for ever.

    :param who: the method, named in the error (``"Queue.get"``).
    :raises TypeError: any other value.
    """
    if block not in (True, False):
        raise TypeError(f"block for {who} must be True or False, got {block!r}; "
                        "give a time limit as timeout=")


def too_long(seconds: float) -> str | None:
    """For a setting or an option of seconds (a plugin's ``timeout``, a command's
    ``--timeout``): the bound that ``seconds`` is over, in words, when no wait can last
    that long (a deadline that far off overflows the platform's clock: OverflowError at
    the first wait); None when it is not."""
    if seconds > LONGEST_WAIT:
        return f"at most {LONGEST_WAIT:.0f} seconds (about 146 years)"
    return None


def wait_seconds(name: str, value: object, *, none: bool = True) -> float:
    """As :func:`wait_limit`, with "no limit" as :data:`LONGEST_WAIT` seconds."""
    limit = wait_limit(name, value, none=none)
    return LONGEST_WAIT if limit is None else limit


def seconds_left(deadline: float | None) -> float | None:
    """The seconds until ``deadline`` (a ``time.monotonic()`` time), 0 once it has passed,
    at most :data:`LONGEST_WAIT` (a deadline further off, from a timeout the caller gave,
    is waited for in steps no wait refuses: one over the platform's bound raised
    OverflowError); None for no deadline: what a wait in steps gives each step."""
    if deadline is None:
        return None
    return min(LONGEST_WAIT, max(0.0, deadline - time.monotonic()))

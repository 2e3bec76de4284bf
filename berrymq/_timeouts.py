"""Checking the seconds a caller gives to wait (``timeout``, ``put_timeout``, ...).

One rule for every wait of the public API: a number of seconds, 0 or more; ``None`` and
an infinite number (or one too large for the platform's waits) mean "no limit", so that
``float("inf")`` works wherever ``None`` does instead of raising a bare OverflowError
from deep inside. A bad value is refused before anything happens, naming the parameter.
"""

from __future__ import annotations

import math
import threading

__all__ = ["wait_limit"]


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
    if value > threading.TIMEOUT_MAX:
        return None  # float("inf") included: longer than any wait can be told to last
    return float(value)

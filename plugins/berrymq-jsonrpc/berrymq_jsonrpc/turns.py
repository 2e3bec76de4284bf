"""Requests that may wait (``ask``, a blocking ``get``) refused as one too many on their
connection, and when to send them again.

A node runs a connection's waiting requests ``max_waiting`` at a time and refuses one more
with *Limit reached*. berryMQ's client has its threads take turns for them
(:meth:`berrymq_jsonrpc.channel.Channel.waiting_turn`), and still meets such a refusal: the
node counts an ask the client gave up on at its timeout until the ask's receiver returns,
and its ``max_waiting`` may be lower than the client's turns.
"""

from __future__ import annotations

import time

from berrymq.errors import RemoteError
from berrymq_jsonrpc import protocol as p

__all__ = ["busy_pause", "refused_as_busy"]

#: the first pause before a request that may wait, refused as one too many on its
#: connection, is sent again (doubled each time, to at most :data:`_BUSY_PAUSE_MOST`)
_BUSY_PAUSE = 0.01
_BUSY_PAUSE_MOST = 0.2


def refused_as_busy(exc: RemoteError) -> bool:
    """Whether ``exc`` is a node's refusal of one more request that may wait on its
    connection than its ``max_waiting`` (see :func:`busy_pause`)."""
    return (exc.code == p.LIMIT_REACHED and isinstance(exc.data, dict)
            and exc.data.get("setting") == "max_waiting")


def busy_pause(exc: RemoteError, pause: float, deadline: float | None) -> float | None:
    """The pause before sending again a request that may wait (``ask``, a blocking
    ``get``) that ``exc`` refused as one too many on its connection, after ``pause``
    the time before (0 the first time); None when ``exc`` is another error, or when
    ``deadline`` leaves no room for another try (an ask raises the refusal then, a
    get is empty).

    A node refuses one more than its ``max_waiting`` on a connection (*Limit reached*,
    ``data.setting`` ``max_waiting``) though this side's threads take turns (see
    :meth:`Channel.waiting_turn`): the node still counts an ask this side gave up on at
    its timeout until its receiver returns, and its ``max_waiting`` may be lower than the
    turns here."""
    if not refused_as_busy(exc):
        return None
    pause = min(pause * 2, _BUSY_PAUSE_MOST) if pause else _BUSY_PAUSE
    if deadline is not None and time.monotonic() + pause + _BUSY_PAUSE_MOST > deadline:
        return None
    return pause

"""Bridges still open at interpreter exit are closed, so that messages sent just before
the end of a program are not left in the buffer. The hook is registered after the I/O
loop's own (this module imports the loop first), so it runs while the loop still runs."""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import TYPE_CHECKING

from berrymq.transports.ioloop import io_loop

if TYPE_CHECKING:
    from berrymq_nats.bridge import NatsBridge

__all__ = ["LIVE"]

logger = logging.getLogger("berrymq.nats")

#: The bridges of this process not closed yet.
LIVE: weakref.WeakSet[NatsBridge] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    bridges = list(LIVE)
    if not bridges or not io_loop.running:  # (a bridge always starts the loop)
        return
    try:
        logger.debug("at exit: closing %d NATS bridge(s)", len(bridges))
        for bridge in bridges:
            bridge.close()
    except KeyboardInterrupt:  # Ctrl-C while a bridge sent what waits: the rest give up too
        # (those the loop began to close too: a bridge leaves LIVE as its closing begins,
        # and Ctrl-C just after that left its messages uncounted, nothing said)
        left = [bridge for bridge in bridges if bridge.state != "closed"]
        logger.warning("interrupted while closing NATS bridges at exit: what they had not "
                       "sent is given up (%d more bridge(s) not closed)", len(left))
        for bridge in left:
            bridge.give_up(1.0, wait_for_client=False)

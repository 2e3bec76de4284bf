"""One log line per burst of alike events, with their count.

What a client or the operating system can make happen thousands of times a second (odd
lines, refused connections, a failing ``accept()``) is logged through a :class:`BurstLog`:
the first event at once, then at most one line per interval carrying how many came
meanwhile, so that the log tells what happens without being filled by it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BurstLog"]


class BurstLog:
    """Log the first event of a burst at once, then at most one line per ``interval``
    seconds carrying how many came meanwhile (checked when the next event comes).

    :param clock: the seconds it measures with (a test's own clock).
    """

    def __init__(self, logger: logging.Logger, interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last = -interval
        self._unlogged = 0

    def warning(self, text: str, *args: Any) -> bool:
        """Count one event; log it (with the count of those not logged) when the interval
        since the last line is over. Whether a line was written."""
        now = self._clock()
        with self._lock:
            self._unlogged += 1
            if now - self._last < self._interval:
                return False
            count, self._unlogged, self._last = self._unlogged, 0, now
        if count > 1:
            self._logger.warning(text + " (%d such events since the last line)", *args, count)
        else:
            self._logger.warning(text, *args)
        return True

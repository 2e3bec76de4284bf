"""One log line per burst of alike events, with their count.

What a client or the operating system can make happen thousands of times a second (odd
lines, refused connections, a failing ``accept()``, links to a peer that went away) is
logged through a :class:`BurstLog`: the first event at once, then at most one line per
interval carrying how many came meanwhile, so that the log tells what happens without
being filled by it. The last line of a burst comes once the interval is over, whether or
not another event comes, or when its owner closes (:meth:`BurstLog.flush`), or when the
interpreter exits, so no event goes unreported in the log.

A burst under way is in a registry of weak references that one :mod:`atexit` hook
flushes: a BurstLog kept at module level (odd lines of a TCP peer, a failing
``accept()``) has no owner that closes it, and the timer of its closing line is a daemon
thread that dies with the process. The hook is registered when this module is imported,
before any hook of a module that logs through it, so it runs after theirs (``atexit``
runs hooks in reverse), and before :func:`logging.shutdown`.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from berrymq.fork_safe import ForkSafeLock

__all__ = ["BurstLog", "BurstLogs", "Flushes", "Schedule", "flush_at_exit", "flushed"]

#: Run a call after some seconds (the default starts a short-lived timer thread).
Schedule = Callable[[float, Callable[[], None]], object]


def _timer_thread(delay: float, call: Callable[[], None]) -> object:
    timer = threading.Timer(delay, call)
    timer.daemon = True
    timer.name = "berrymq-burst-log"
    timer.start()
    return timer


class Flushes(Protocol):
    """A rate-limited log with a closing line to come (a :class:`BurstLog`, a bus's
    losses): :meth:`flush` writes it now."""

    def flush(self) -> None: ...


#: The logs with a burst under way (a closing line to come), flushed at exit.
_under_way: weakref.WeakSet[Flushes] = weakref.WeakSet()
_under_way_lock = ForkSafeLock()


def flush_at_exit(log: Flushes) -> None:
    """Have ``log.flush()`` called at interpreter exit (``log`` held weakly), unless
    :func:`flushed` says first that it has nothing more to write."""
    with _under_way_lock:
        _under_way.add(log)


def flushed(log: Flushes) -> None:
    """``log`` has written its closing line: nothing to do for it at exit."""
    with _under_way_lock:
        _under_way.discard(log)


def _flush_at_exit() -> None:
    """Write the closing line of every burst under way (the interpreter is exiting)."""
    with _under_way_lock:
        bursts = list(_under_way)
    for burst in bursts:
        burst.flush()


atexit.register(_flush_at_exit)


class BurstLog:
    """Log the first event of a burst at once, then at most one line per ``interval``
    seconds carrying how many came meanwhile: at the next event past the interval, or,
    if none comes, when the interval is over (or at :meth:`flush`, or at interpreter
    exit, if either comes first).

    :param clock: the seconds it measures with (a test's own clock).
    :param schedule: how the closing line of a burst is run later (a test's own).
    """

    def __init__(self, logger: logging.Logger, interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 schedule: Schedule = _timer_thread) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._schedule = schedule
        self._lock = ForkSafeLock()
        self._last = -interval
        self._unlogged = 0
        self._latest: tuple[int, str, tuple[Any, ...]] | None = None  # not logged yet
        self._scheduled = False

    def warning(self, text: str, *args: Any) -> bool:
        """Count one event; log it (with the count of those not logged) when the interval
        since the last line is over. Whether a line was written now."""
        return self._event(logging.WARNING, text, args)

    def error(self, text: str, *args: Any) -> bool:
        """As :meth:`warning`, at the level of errors."""
        return self._event(logging.ERROR, text, args)

    def _event(self, level: int, text: str, args: tuple[Any, ...]) -> bool:
        now = self._clock()
        with self._lock:
            self._unlogged += 1
            if now - self._last < self._interval:
                self._latest = (level, text, args)
                if self._scheduled:
                    return False
                self._scheduled = True
                delay = self._last + self._interval - now
                flush_at_exit(self)  # once per burst: flushed at exit if still under way
            else:
                count, self._unlogged, self._last, self._latest = self._unlogged, 0, now, None
                delay = None
        if delay is None:
            self._write(level, text, args, count)
            return True
        try:  # outside the lock: what logs is never held up, nor failed, by a thread start
            self._schedule(delay, self._close_burst)
        except RuntimeError:  # no thread to be had: the next event past the interval says it
            with self._lock:
                self._scheduled = False
        return False

    def flush(self) -> None:
        """Write now what the burst under way would end with (its owner is closing: the
        timer of its closing line may not outlive the process)."""
        self._close_burst()

    def discard(self) -> None:
        """Forget the events not logged yet, when what they say no longer holds (a server
        not reached was reached after all): the burst's closing line, if one is due, is
        not written."""
        with self._lock:
            self._unlogged, self._latest = 0, None

    def _close_burst(self) -> None:
        """The interval after the last line is over: log what came since, if anything."""
        with self._lock:
            self._scheduled = False
            flushed(self)
            latest, count = self._latest, self._unlogged
            if latest is None or not count:
                return
            self._unlogged, self._last, self._latest = 0, self._clock(), None
        level, text, args = latest
        self._write(level, text, args, count, closing=True)

    def _write(self, level: int, text: str, args: tuple[Any, ...], count: int,
               closing: bool = False) -> None:
        """Log ``text``, with how many events it stands for when that is not only itself:
        a line past the interval counts those not logged before it; a closing line always
        says its count, so that it is not read as the first line of a new burst."""
        if count > 1:
            self._logger.log(level, text + " (%d such events since the last line)", *args, count)
        elif closing:
            self._logger.log(level, text + " (1 such event since the last line)", *args)
        else:
            self._logger.log(level, text, *args)


class BurstLogs:
    """A :class:`BurstLog` per kind of event (the reason of a refusal, say), so that the
    count a line carries is of events of its own kind: with one log for all, a line with
    the text of the last event would count those of every kind as if they were its own.
    The kinds are a few fixed texts of the code, never taken from what a peer sent."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._logger = logger
        self._interval = interval
        self._logs: dict[str, BurstLog] = {}
        self._lock = ForkSafeLock()

    def of(self, kind: str) -> BurstLog:
        """The log of events of ``kind``."""
        log = self._logs.get(kind)
        if log is None:
            with self._lock:
                log = self._logs.setdefault(kind, BurstLog(self._logger, self._interval))
        return log

    def flush(self) -> None:
        """Write now what each kind's burst under way would end with."""
        with self._lock:
            logs = list(self._logs.values())
        for log in logs:
            log.flush()

"""What the worker pools of a process that exits do with the work they hold.

The workers are daemon threads: without this, a program whose main thread ends with tasks
queued in a pool (``twitter`` returned for each) lost them all without a word, the
threads dying with the interpreter. Instead every pool not shut down yet is finished
when the program ends: its workers run what is queued, for up to :data:`EXIT_WAIT`
seconds in all (the wait of a connection's flush at exit, its ``timeout``: 10 s). If
some receivers are still busy then, the tasks no worker took are counted in their
bus's ``bus.losses`` (``dropped: the process exited before a worker ran it``) and one
error line on the ``berrymq`` logger names the count; they are not run.

When: the hook is registered with the :mod:`threading` module's exit hooks (those
:mod:`concurrent.futures` uses for its own workers), which run once the main thread has
ended, *before* any :mod:`atexit` handler. What the pools' receivers send to other
processes while they finish is so still in the transports' outboxes when the
transports' own exit handlers (registered with :mod:`atexit` when their modules are
imported: flush each connection, then stop the I/O loop) run; an :mod:`atexit`
handler of ours would run after those of every module imported later, that is after
the transports' flush. A sender still running after the hook (a non-daemon thread, an
:mod:`atexit` handler) finds the pool closed and runs its receivers itself, as
``multiplicity = 0`` would; so does one whose bus makes a pool after the hook (the pool
is shut down as it is made: :func:`track`). A process ended by :func:`os._exit` or a signal runs no
hook at all.

A process forked from one with pools running has the pools but not their threads: each
pool not shut down starts workers of its own there (:meth:`WorkerPool.restart_after_fork
<berrymq._pool.WorkerPool.restart_after_fork>`), and leaves the tasks queued at the fork
to the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berrymq._pool import WorkerPool

__all__ = ["EXIT_WAIT", "finish_pools", "track", "untrack"]

logger = logging.getLogger("berrymq")

#: Seconds the pools of an exiting process have, in all, to run what they hold.
EXIT_WAIT = 10.0

_live: set[WorkerPool] = set()
_live_lock = threading.Lock()
#: whether :func:`finish_pools` has finished the pools: the process is exiting
_finished = False


def track(pool: WorkerPool) -> bool:
    """Finish ``pool`` at exit unless it is shut down before. False once the pools were
    finished (a non-daemon thread or an :mod:`atexit` handler makes a pool after the
    hook): nothing would finish it, and its workers, daemon threads, would die with the
    interpreter and the tasks queued with them, counted nowhere."""
    with _live_lock:
        if _finished:
            return False
        _live.add(pool)
        return True


def untrack(pool: WorkerPool) -> None:
    """``pool`` is shutting down: it runs what it holds itself."""
    with _live_lock:
        _live.discard(pool)


def finish_pools(wait: float | None = None) -> None:
    """Finish every pool not shut down (see the module's text), within ``wait`` seconds
    in all (:data:`EXIT_WAIT` when None), and log each pool that dropped tasks."""
    global _finished
    deadline = time.monotonic() + (EXIT_WAIT if wait is None else wait)
    while True:  # a receiver that finishes may start a pool of its own
        with _live_lock:
            if not _live:
                _finished = True
                return
            pool = _live.pop()
        dropped, busy = pool.finish_at_exit(deadline)
        if dropped:
            logger.error(
                "bus %s: the process exited with %d message(s) in its worker pool that no "
                "worker ran within %gs (%d worker(s) still running a receiver); counted in "
                "bus.losses", pool.bus_name, dropped, EXIT_WAIT if wait is None else wait, busy)


def _restart_after_fork() -> None:
    global _live_lock
    _live_lock = threading.Lock()  # a thread of the parent may have held it
    for pool in list(_live):
        pool.restart_after_fork()


os.register_at_fork(after_in_child=_restart_after_fork)


def _register() -> None:
    """Register :func:`finish_pools` to run before the :mod:`atexit` handlers, or with
    them where the :mod:`threading` module has no exit hooks (or takes none any more)."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # "can't register atexit after shutdown"
            register(finish_pools)
            return
    atexit.register(finish_pools)


_register()

"""How a serving node stops: SIGINT (Ctrl-C) and SIGTERM taken in the main thread, the
node's close within a deadline (``--stop-timeout``) in a thread of its own, and a second
signal that ends the command at once, each saying what it cut short. A signal sent by a
process is taken together with the same signal sent by the same process just after it
(:func:`take_stop_signal`): GNU ``timeout`` and process supervisors signal the process and
its process group at once, so one stop arrived twice, and ``serve`` took the copy for a
second signal now and then (exit 143, a line blaming a transport closing as it should).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from berrymq.bus import Bus
from berrymq.plugins import KNOWN_SCHEMES
from berrymq_jsonrpc.serve_print import PRINT_DRAIN_WAIT, Printers, finish_printing

__all__ = ["SAME_STOP_WINDOW", "STOP_SIGNALS", "STOP_WAIT", "Closing", "SecondStop", "Stop",
           "signals_stop", "stop_serving", "take_stop_signal"]

#: How long a stopping ``serve`` waits for its bus to close, by default (``--stop-timeout``):
#: berryMQ's own transports take up to 10 s to deliver what they took from peers.
STOP_WAIT = 20.0


class Stop(Exception):
    """Raised in the main thread by SIGTERM (SIGINT raises KeyboardInterrupt)."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

#: Seconds after a stop signal sent by a process within which the same signal from the
#: same process is taken as its copy (a process group's), not as a second stop.
SAME_STOP_WINDOW = 0.2

#: ``si_code`` of a signal sent with ``kill()`` (Linux: ``SI_USER``). The terminal's
#: Ctrl-C comes from the kernel (``SI_KERNEL``), once per key press: never a copy.
_SENT_BY_A_PROCESS = 0


def take_stop_signal() -> None:
    """Wait for SIGINT or SIGTERM, blocked in every thread (see :func:`signals_stop`), and
    take it, with a copy of it: the same signal from the same process within
    :data:`SAME_STOP_WINDOW`. Another signal meanwhile (another process's, or the
    keyboard's) stays pending, a second stop. Where ``sigwaitinfo`` exists (Linux)."""
    first = signal.sigwaitinfo(STOP_SIGNALS)
    if first.si_code != _SENT_BY_A_PROCESS:
        return
    deadline = time.monotonic() + SAME_STOP_WINDOW
    while (left := deadline - time.monotonic()) > 0:
        again = signal.sigtimedwait({first.si_signo}, left)
        if again is None:
            return
        if again.si_code != _SENT_BY_A_PROCESS or again.si_pid != first.si_pid:
            signal.raise_signal(again.si_signo)  # not a copy: pending again, a second stop
            return


@contextmanager
def signals_stop() -> Iterator[Callable[[], None]]:
    """Within the block, SIGINT (Ctrl-C) and SIGTERM stop the command: SIGINT raises
    KeyboardInterrupt (even when the shell started us with SIGINT ignored, ``cmd &``) and
    SIGTERM raises :class:`Stop`, in the main thread.

    The kernel gives a process-directed signal to any thread that does not block it, and
    Python runs its handler only in the main thread: if a server thread took the signal,
    a main thread waiting on a lock would not wake up. So the signals are blocked while
    the command starts its threads (which inherit the mask), and the main thread unblocks
    them for itself when it calls the function the block yields (before it waits)."""
    previous_term = signal.signal(signal.SIGTERM, _raise_stop)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    masked = hasattr(signal, "pthread_sigmask")
    if masked:
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def unblock() -> None:
        if masked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    try:
        yield unblock
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


class SecondStop(Exception):
    """Raised in the main thread by a stop signal that comes while ``serve`` stops."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _raise_second_stop(signum: int, frame: FrameType | None) -> None:
    _ignore_stop_signals()  # a third one cannot break the report of the second
    raise SecondStop(signum)


def _ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class Closing:
    """The close of a stopping ``serve``'s bus, in a thread of its own (a daemon, which
    the process does not wait for at exit), so that a plugin's ``close()`` that never
    returns cannot keep the command from ending: berryMQ's own transports first (the
    node stops accepting at once, whatever a plugin does next), then the whole bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        #: the built-in transport ``serve`` closes itself at this moment (its scheme)
        self.scheme: str | None = None
        #: a line for each part that raised in its close
        self.errors: list[str] = []
        #: set once the close returned (waited on, not the thread: a join that a signal
        #: interrupts takes the thread for ended)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="berrymq-serve-close",
                                       daemon=True)

    def _run(self) -> None:
        try:
            self._close()
        finally:
            self.done.set()

    def _close(self) -> None:
        bus = self.bus
        for scheme, transport in bus.transports().items():
            if bus.plugins.provider(scheme) == KNOWN_SCHEMES.get(scheme, ("",))[0]:
                self.scheme = scheme
                try:
                    transport.close()  # idempotent: the bus's close then passes over it
                except Exception as exc:  # noqa: BLE001 - said on stderr; the rest still closes
                    self.errors.append(f"the {scheme}:// transport of plugin "
                                       f"{bus.plugins.provider(scheme)!r} raised "
                                       f"{type(exc).__name__} in close(): {exc}")
        self.scheme = None
        try:
            bus.close()
        except Exception as exc:  # noqa: BLE001 - a plugin's close (a PluginError naming it)
            self.errors.append(str(exc))

    def what_is_left(self) -> str:
        """What the close is waiting for now, for a line on stderr."""
        node = self.bus.node
        part = ("transport", self.scheme) if self.scheme is not None else (
            node.closing if node is not None else None)
        if part is None:
            return ("the bus's close (a plugin's berrymq_close_bus hook, the worker pool or "
                    "a plugin's per-bus state) has not returned")
        what, scheme = part
        return (f"the {scheme}:// {what} of plugin {self.bus.plugins.provider(scheme)!r} has not "
                f"returned from close()")


def stop_serving(bus: Bus | None, printers: Printers,
                  wait: float, unblock: Callable[[], None]) -> int:
    """Close ``bus`` (see :class:`Closing`) for up to ``wait`` seconds, then let the
    printers write what they hold; returns the exit status. Called in the main thread
    with the stop signals blocked (or their handlers raising): from here on a SIGINT or
    SIGTERM is a second one, and ends the command at once (128 + its number) with a line
    that says what it cut short. A close that takes longer than ``wait`` is named on
    stderr and left to the process's end (exit 1); so is a part that raised in its close.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_second_stop)
    if bus is None:  # the run failed before it had a bus: nothing to close
        _ignore_stop_signals()
        return 0
    closing = Closing(bus)
    doing = "closing"
    try:
        closing.thread.start()  # the signals still blocked: the thread never takes one
        unblock()  # a second signal pending since the first is raised here
        if not closing.done.wait(wait):
            _ignore_stop_signals()
            print(f"berrymq: error: the node did not close within {wait:g}s: "
                  f"{closing.what_is_left()}; exiting without it", file=sys.stderr, flush=True)
            return 1
        doing = "printing the messages it had acknowledged"
        finish_printing(printers, PRINT_DRAIN_WAIT)
        _ignore_stop_signals()
    except SecondStop as stop:
        left = "" if closing.done.is_set() else f": {closing.what_is_left()}"
        print(f"berrymq: stopped by a second {stop} while {doing}{left}", file=sys.stderr,
              flush=True)
        for printer in printers:
            if unprinted := printer.left():
                print(f"berrymq: {unprinted} message(s) of {printer.queue.pattern} not printed",
                      file=sys.stderr, flush=True)
        return 128 + stop.signum
    for error in closing.errors:
        print(f"berrymq: error: {error}", file=sys.stderr, flush=True)
    return 1 if closing.errors else 0

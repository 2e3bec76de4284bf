"""``berrymq listen [URL] PATTERN``: print the messages matching PATTERN that a node sees,
like ``nats sub`` or ``mosquitto_sub``.

From a node (``tcp://``, ``http://``) the messages come from a queue the node keeps for
this listener (style 03). When the node goes away the listener says so on stderr, opens a
new queue as soon as the node is back, and says how long the gap was: messages sent in
the gap were not queued for it (``--no-reconnect`` ends with exit status 1 instead). From
a NATS broker (``nats://``, with the ``berrymq-nats`` plugin) this process joins the
broker and the messages come through a local queue; the NATS client reconnects by itself.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from contextlib import suppress
from typing import Any

from berrymq.api import DEFAULT_TTL, connect_broker, connect_via_queue
from berrymq.cli import node_url, write_output
from berrymq.errors import BerryMQError, ConnectionClosed, TransportError
from berrymq.receivers.queues import Queue
from berrymq_jsonrpc.cli_support import (
    format_message,
    is_broker,
    node_failure,
    open_session,
    quiet_remote_logs,
    run_until_stopped,
    timestamp,
    went_away,
)

__all__ = ["run_listen"]

#: The longest pause between two attempts to reach a node that went away.
MAX_RETRY_DELAY = 2.0
#: A queue that lasted this long without a message before the node went away again ends
#: the back-off: the next reconnect is at once again.
STEADY_AFTER = 10.0
#: How many messages the local queue of a broker listener holds before NATS waits.
BROKER_QUEUE_SIZE = 10_000


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _NodeQueue:
    """A queue on a node (style 03); :meth:`open` opens a new one after the node went away."""

    def __init__(self, url: str, pattern: str, timeout: float) -> None:
        self.url = url
        self.pattern = pattern
        self.timeout = timeout
        self.connection: Any = None
        self._closed = False

    def open(self) -> None:
        self.drop()
        connection = open_session(self.url, self.timeout, self._connect, DEFAULT_TTL)
        self.connection = connection
        if self._closed:  # stopped meanwhile
            self.drop()

    def _connect(self, url: str, ttl: float) -> Any:
        return connect_via_queue(url, self.pattern, ttl=ttl)

    def get(self, timeout: float | None) -> Any:
        return self.connection.get(block=True, timeout=timeout)

    def drop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with suppress(BerryMQError):  # the node is gone already
                connection.close()

    def close(self) -> None:
        self._closed = True
        self.drop()


class _BrokerQueue:
    """A local queue of PATTERN on this process's bus, joined to a NATS broker."""

    def __init__(self, url: str, pattern: str, timeout: float) -> None:
        self.url = url
        self.pattern = pattern
        self.timeout = timeout
        self.queue: Any = None
        self.connection: Any = None

    def open(self) -> None:
        self.queue = Queue(self.pattern, maxsize=BROKER_QUEUE_SIZE)  # before: nothing missed
        try:
            self.connection = connect_broker(self.url, connect_timeout=self.timeout)
        except (ValueError, TypeError, TransportError, OSError) as exc:
            raise node_failure(self.url, exc, probe=False) from None

    def get(self, timeout: float | None) -> Any:
        return self.queue.get(block=True, timeout=timeout)

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()
        if self.connection is not None:
            self.connection.close()


def _source(url: str, pattern: str, timeout: float) -> _NodeQueue | _BrokerQueue:
    return (_BrokerQueue(url, pattern, timeout) if is_broker(url)
            else _NodeQueue(url, pattern, timeout))


class _Listen:
    """One run of ``listen``: the loop (on its own thread) and what stops it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = node_url(args.url)
        self.source: _NodeQueue | _BrokerQueue | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.deadline = None if args.timeout is None else time.monotonic() + args.timeout
        self.printed = 0
        #: a message taken from the node and not written yet (said at the end if never)
        self.holding = False
        #: the pause before the next reconnect: none at first, growing while each new queue
        #: fails again at once (a node that accepts and then drops every listener), reset
        #: by a message or a queue that lasted
        self._pause = 0.0
        self._opened = time.monotonic()

    def left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def run(self, stopping: threading.Event) -> int:
        args = self.args
        # made here, so that the bus's threads block the signals as this one does
        source = _source(self.url, args.pattern, args.connect_timeout)
        with self._lock:
            if self._closed:
                return 0
            self.source = source
        source.open()
        self._opened = time.monotonic()
        _say(f"listening to {args.pattern} at {self.url}")
        while args.count is None or self.printed < args.count:
            left = self.left()
            if stopping.is_set() or left == 0.0:
                break
            try:
                message = source.get(left)
            except queue.Empty:
                continue  # the deadline passed, or the queue closed because we stop
            except (TransportError, OSError) as exc:
                if stopping.is_set():
                    break
                why = went_away(exc)
                if why is None:
                    raise node_failure(self.url, exc, probe=False) from None
                if args.no_reconnect:
                    raise ConnectionClosed(f"the node at {self.url} went away ({why})") from None
                if not self._reconnect(stopping):
                    break
                continue
            self._pause = 0.0
            received = timestamp() if args.timestamps or args.json else None
            self.holding = True
            self._write(format_message(message, args.json, received))
            self.holding = False
            self.printed += 1
        if args.count is not None and self.printed < args.count and not stopping.is_set():
            raise TransportError(f"{self.printed} of {args.count} message"
                                 f"{'' if args.count == 1 else 's'} came within "
                                 f"{args.timeout:g}s")
        return 0

    def close(self) -> None:
        """Close the source (the loop waiting on it ends); called from the main thread."""
        with self._lock:
            self._closed = True
            source = self.source
        if source is not None:
            source.close()

    def _reconnect(self, stopping: threading.Event) -> bool:
        """Open a new queue once the node is back; False if stopped or out of time first."""
        assert self.source is not None
        _say("node went away; reconnecting")
        started = time.monotonic()
        if started - self._opened >= STEADY_AFTER:
            self._pause = 0.0
        if self._pause:
            left = self.left()
            if stopping.wait(self._pause if left is None else min(self._pause, left)):
                return False
        self._pause = min(max(self._pause * 2, 0.05), MAX_RETRY_DELAY)
        delay = 0.05
        while not stopping.is_set():
            try:
                self.source.open()
            except BerryMQError:
                left = self.left()
                if left == 0.0 or stopping.wait(delay if left is None else min(delay, left)):
                    return False
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            self._opened = time.monotonic()
            _say(f"reconnected after {self._opened - started:.1f} s; messages sent "
                 "meanwhile were not queued for this listener")
            return True
        return False

    def _write(self, line: str) -> None:
        if not write_output(line + "\n"):  # the reader went away (| head -1): stop quietly
            self.args.count = self.printed


def run_listen(args: argparse.Namespace) -> int:
    """``berrymq listen``: 0 when stopped (a signal, ``--count`` reached, ``--timeout``
    without ``--count``), 1 when the node cannot be reached or went away for good."""
    listen = _Listen(args)
    with quiet_remote_logs():
        status, _signal = run_until_stopped(listen.run, listen.close)
    if listen.holding:  # stopped while stdout was not read: the node counts the rest
        _say(f"berrymq: 1 message of {args.pattern} taken from the node was not printed: "
             "the output was not read")
    return 0 if status is None else status

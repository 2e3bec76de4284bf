"""``serve --print PATTERN``: a queue of PATTERN and a thread that prints what it takes,
and, when the node stops, the printing of what the queues still hold (messages the node
acknowledged), within a deadline.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from berrymq.cli import write_output
from berrymq.errors import QueueClosed
from berrymq.receivers.queues import Queue
from berrymq_jsonrpc.cli_support import format_message, timestamp

__all__ = ["PRINT_DRAIN_WAIT", "PRINT_QUEUE_SIZE", "Printer", "Printers", "finish_printing"]

#: How many messages ``serve --print`` lets wait for the printer before senders wait.
PRINT_QUEUE_SIZE = 10_000

#: How long a stopping ``serve --print`` waits for its printers to write what they hold.
PRINT_DRAIN_WAIT = 10.0


class Printer:
    """``serve --print PATTERN``: a queue of PATTERN and a thread that prints it. A queue
    stores a request and does not answer it, so ``ask`` to an identifier only the printer
    follows still gets no reply (``[]``), as if nothing followed it. When the reader of
    stdout goes away (``| head -2``), ``serve`` stops as on SIGTERM, as ``listen`` ends
    there: a node that would print nothing more is not left running silently. So it does
    when stdout fails otherwise (a full disk), saying why."""

    def __init__(self, pattern: str, as_json: bool) -> None:
        self.queue = Queue(pattern, maxsize=PRINT_QUEUE_SIZE)
        self.as_json = as_json
        #: a message taken from the queue and not written yet (counted if never written)
        self.holding = False
        self.thread = threading.Thread(target=self._run, name=f"berrymq-print-{pattern}",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                message = self.queue.get(block=True, timeout=None)
            except QueueClosed:
                return
            self.holding = True
            try:
                line = format_message(message, self.as_json,
                                      timestamp() if self.as_json else None)
                written = write_output(line + "\n")
            except OSError as exc:  # stdout failed: what follows would fail alike
                print(f"berrymq: error: printing {message.identifier} failed: {exc}; "
                      "stopping", file=sys.stderr, flush=True)
                written = False
            if not written:
                # to the process (this thread blocks the signal): the main thread takes it
                os.kill(os.getpid(), signal.SIGTERM)
                return
            self.holding = False

    def left(self) -> int:
        """How many messages it has not written (once the bus closed its queue)."""
        return self.queue.qsize() + self.holding


#: The printers of ``serve --print``.
Printers = list[Printer]


def finish_printing(printers: Printers, timeout: float) -> None:
    """Once the bus closed (its queues with it): let the printers write what their
    queues still hold, the messages the node acknowledged, for up to ``timeout`` seconds
    in all (a slow reader of stdout); what is left then (the one a printer is writing
    included) is said on stderr, with its count, rather than lost with the process."""
    deadline = time.monotonic() + timeout
    for printer in printers:
        printer.thread.join(max(0.0, deadline - time.monotonic()))
        left = printer.left()
        if left:
            print(f"berrymq: {left} message(s) of {printer.queue.pattern} not printed: the "
                  f"output was not read within {timeout:g}s of the stop", file=sys.stderr,
                  flush=True)

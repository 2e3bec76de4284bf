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

__all__ = ["PRINT_DRAIN_WAIT", "PRINT_QUEUE_SIZE", "Printers", "finish_printing", "start_printer"]

#: How many messages ``serve --print`` lets wait for the printer before senders wait.
PRINT_QUEUE_SIZE = 10_000

#: How long a stopping ``serve --print`` waits for its printers to write what they hold.
PRINT_DRAIN_WAIT = 10.0

#: The queues of ``serve --print`` and the threads that print them.
Printers = list[tuple[Queue, threading.Thread]]


def start_printer(pattern: str, as_json: bool) -> tuple[Queue, threading.Thread]:
    """``serve --print PATTERN``: a queue of PATTERN and a thread that prints it. A queue
    stores a request and does not answer it, so ``ask`` to an identifier only the printer
    follows still gets no reply (``[]``), as if nothing followed it. When the reader of
    stdout goes away (``| head -2``), ``serve`` stops as on SIGTERM, as ``listen`` ends
    there: a node that would print nothing more is not left running silently."""
    printed = Queue(pattern, maxsize=PRINT_QUEUE_SIZE)

    def run() -> None:
        while True:
            try:
                message = printed.get(block=True, timeout=None)
            except QueueClosed:
                return
            line = format_message(message, as_json, timestamp() if as_json else None)
            if not write_output(line + "\n"):
                # to the process (this thread blocks the signal): the main thread takes it
                os.kill(os.getpid(), signal.SIGTERM)
                return

    printer = threading.Thread(target=run, name=f"berrymq-print-{pattern}", daemon=True)
    printer.start()
    return printed, printer


def finish_printing(printers: Printers, timeout: float) -> None:
    """Once the bus closed (its queues with it): let the printers write what their
    queues still hold, the messages the node acknowledged, for up to ``timeout`` seconds
    in all (a slow reader of stdout); what is left then is said on stderr, with its count,
    rather than lost with the process."""
    deadline = time.monotonic() + timeout
    for printed, printer in printers:
        printer.join(max(0.0, deadline - time.monotonic()))
        left = printed.qsize()
        if left:
            print(f"berrymq: {left} message(s) of {printed.pattern} not printed: the output "
                  f"was not read within {timeout:g}s of the stop", file=sys.stderr, flush=True)

"""A command's output to stdout when its reader may be gone: ``berrymq ... | head -1``
stops reading, and what is written then must end the printing quietly, not in a
traceback (Python's advice for SIGPIPE: point stdout at the null device, and exit)."""

from __future__ import annotations

import codecs
import json
import os
import sys

__all__ = ["discard_output", "json_escape", "open_output", "write_output"]


#: stdout was closed when the command started (``>&-``: see :func:`open_output`)
_closed_at_start = False


def write_output(text: str) -> bool:
    """Write ``text`` to stdout at once (flushed); False when its reader went away
    (``| head -1``; or stdout was closed from the start, ``>&-``, when nothing is
    written): stdout is then :func:`discarded <discard_output>`, and the command stops
    printing (``listen`` ends, ``serve --print`` stops the node). From any thread;
    :func:`berrymq.cli.main` does the same for a command's other writes (``print``)."""
    if _closed_at_start:
        return False
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        discard_output()
        return False
    return True


def discard_output() -> None:
    """Point stdout at the null device: its reader went away, and what is still written
    (the flush at exit included) must not fail again (Python's advice for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def json_escape(error: UnicodeError) -> tuple[str, int]:
    """The error handler ``berrymq.json_escape``: what an encoding cannot hold, written as
    JSON's escapes (``\\u00e9``, a pair for a character past U+FFFF), which read back as
    the same characters where they stand in a JSON string, and read well elsewhere."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    # (what fails is never ASCII, so JSON's own escaping of it is \uXXXX alone, a pair
    # past U+FFFF: no quote or backslash of its own to escape)
    return json.dumps(error.object[error.start:error.end])[1:-1], error.end


codecs.register_error("berrymq.json_escape", json_escape)


def open_output() -> None:
    """Have stdout write what it cannot encode as JSON's escape of it (:func:`json_escape`):
    a lone surrogate, which JSON carries and a message may hold, is then ``\\ud800`` where
    it failed the whole write, and ended ``listen`` and ``serve --print``; under an
    encoding that is not UTF-8, a JSON line stays JSON.

    Give a process started with stdout closed (``>&-``: Python's ``sys.stdout`` is
    None) one on the null device, so that its output goes nowhere, as to a reader that
    went away, instead of failing (``print`` alone ignores a None stdout); and have
    :func:`write_output` say so, as it does once a reader went away."""
    global _closed_at_start
    if sys.stdout is not None:
        reconfigure = getattr(sys.stdout, "reconfigure", None)  # (a stand-in may have none)
        if reconfigure is not None:
            reconfigure(errors="berrymq.json_escape")
        return
    _closed_at_start = True
    devnull = os.open(os.devnull, os.O_WRONLY)  # (the lowest free descriptor: 1, mostly)
    if devnull != 1:
        os.dup2(devnull, 1)
        os.close(devnull)
    # as Python's own stdout: descriptor 1, never closed (no ResourceWarning at exit)
    sys.stdout = open(1, "w", encoding="utf-8", errors="berrymq.json_escape",  # noqa: SIM115 - as sys.stdout
                      closefd=False)

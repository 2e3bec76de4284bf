"""How deeply a JSON text nests arrays and objects, measured on the text itself.

berryMQ reads a JSON text only if it is nested at most :data:`MAX_DEPTH` levels (the
outermost array or object counts as one), and writes a message only if its own form
``[identifier, args, kwargs, extras]`` is nested at most :data:`MAX_MESSAGE_DEPTH`. Why:
the standard library's C parser and encoder each stop where the interpreter's recursion
limit stops them, which depends on how deep the calling thread's stack already is. A text
the I/O thread could read (979 levels) was then more than a receiver, deeper in its own
stack, could write again; a message accepted with ``"ok"`` was refused by a remote queue
as "not JSON", with only a traceback to say so. One fixed limit, far below what either
can do from any reasonable stack, makes every text that is read writable again.

The measure runs at the speed of ``bytes`` methods (counting, ``translate``,
``replace``), not of a Python loop over characters, and not at all for a text too short
to be that deep: it is on the path of every request.
"""

from __future__ import annotations

from itertools import accumulate

__all__ = ["MAX_DEPTH", "MAX_MESSAGE_DEPTH", "nested_deeper"]

#: The deepest nesting of a JSON text berryMQ reads (a request, an answer, a NATS payload):
#: a deeper text is a parse error naming this limit. Python's own parser and encoder stop
#: near 1000 levels, less the depth of the calling thread's stack; this leaves them
#: hundreds of levels of stack to spare.
MAX_DEPTH = 128
#: The deepest a message's own form ``[identifier, args, kwargs, extras]`` may be nested
#: for berryMQ to write it: the deepest text that carries one (a ``send_messages`` request
#: in a batch) puts it at level 5, so any message this deep fits in every text berryMQ
#: writes and reads. The same bound holds for one reply to ``ask``.
MAX_MESSAGE_DEPTH = MAX_DEPTH - 4

# What the measure keeps of a text: brackets (curly ones as square ones) and quotes.
_MARKS = bytes.maketrans(b"{}", b"[]")
_NOT_MARKS = bytes(c for c in range(256) if c not in b'[]{}"')
#: Passes that each strip the innermost pairs of brackets; past them, a running count.
_PASSES = 8
#: The step of the running count for each byte: +1 for ``[``, -1 for ``]``.
_STEP = tuple(1 if c == ord("[") else -1 if c == ord("]") else 0 for c in range(256))


def nested_deeper(text: bytes | str, limit: int) -> bool:
    """Whether the JSON text ``text`` nests arrays and objects more than ``limit`` levels.

    Exact for a valid JSON text; for an invalid one the answer does not matter (the parser
    refuses it anyway). A text holds at least two characters per level, and at least one
    ``[`` or ``{`` per level, so most texts are answered by their length or by counting."""
    if len(text) <= 2 * limit:
        return False
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    return _depth(_brackets(data)) > limit


def _brackets(data: bytes) -> bytes:
    """The brackets of ``data`` outside its strings, curly ones written as square ones."""
    if b"\\" in data:
        # An escape is a backslash and the character after it: left to right, pairs of
        # backslashes are escaped backslashes; a backslash left before a quote escapes it.
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = data.translate(_MARKS, _NOT_MARKS)
    # Strings without brackets are now adjacent pairs of quotes. If any string held a
    # bracket, some run of quotes between brackets has an odd length (the run that ends
    # with that string's opening quote starts with an opening quote) and a quote is left.
    brackets = marks.replace(b'""', b"")
    if b'"' in brackets:
        brackets = b"".join(marks.split(b'"')[::2])  # what lies between the strings
    return brackets


def _depth(brackets: bytes) -> int:
    """The deepest nesting of a balanced sequence of ``[`` and ``]``. Each pass strips
    the innermost pairs, one level everywhere at once (a usual text is gone in a few);
    what a few passes leave is counted in one run."""
    for passes in range(_PASSES):
        if not brackets:
            return passes
        brackets = brackets.replace(b"[]", b"")
    if not brackets:
        return _PASSES
    return _PASSES + max(accumulate(map(_STEP.__getitem__, brackets)))

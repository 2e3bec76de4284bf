"""``berrymq ask [URL] ID [ARG ...]``: ask the receivers of a node and print their
replies, as ``nats request`` does for NATS and ``berrymq-js ask`` for Node.js.

The request goes to the node alone, on the command's own connection (not through this
process's bus, whose other links, a broker's, would answer too); with a broker's URL
(``nats://``) to every process that follows the identifier there, as ``nats request``
asks every responder. The replies are one JSON
array on one line, in the order the node's receivers answered it: each the value a
receiver returned, or ``{"error": {...}}`` for one that failed (its ``type``, ``message``,
``receiver`` and ``node``), as the ``ask`` method answers over the wire. A receiver's
failure is an answer, not a failure of the command: exit status 0. A node that cannot be
reached, goes away, or does not answer within the timeout (and a margin) is a failure:
exit status 1, as for ``send``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from berrymq.cli import Commands, UsageError, add_json_option, print_json
from berrymq.errors import TransportError
from berrymq.message import Message
from berrymq.wire import encode_replies
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.cli_send import message_from_words, split_words
from berrymq_jsonrpc.cli_session import StoppableSession
from berrymq_jsonrpc.cli_support import (
    add_message_arguments,
    is_broker,
    quiet_remote_logs,
    run_until_stopped,
    seconds_argument,
)

__all__ = ["register_ask_command", "run_ask"]


def run_ask(args: argparse.Namespace) -> int:
    """``berrymq ask``: 0 once the node answered (with what its receivers replied, failures
    included); 1 when it could not be reached or did not answer; 2 for a usage error."""
    url, words = split_words(args, "ask")
    try:
        message = message_from_words(words)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    params = {"identifier": str(message.identifier), "args": list(message.args),
              "kwargs": {**message.kwargs, **dict(args.kw or [])}, "timeout": args.timeout}
    session = StoppableSession()
    answers: list[Any] = []
    broker = is_broker(url)

    def ask_the_node(stopping: threading.Event) -> int:
        # the session lives as long as the ask may take, and ends with it
        connection = session.open(url, args.connect_timeout, args.timeout + _ANSWER_MARGIN)
        try:
            if broker:  # the link's own ask: a JSON-RPC session's ask method is a node's
                asked = Message(message.identifier, message.args, params["kwargs"])
                try:
                    replies = connection.link.request(asked, args.timeout)
                except TimeoutError as exc:  # processes follow it there; none answered
                    raise TransportError(f"{url}: {exc}") from None
                answers.append(encode_replies(replies, url))  # as the ask method answers
            else:
                answers.append(connection.call(p.METHOD_ASK, params,
                                               args.timeout + _ANSWER_MARGIN))
        finally:
            connection.close()
        return 0

    with quiet_remote_logs():
        _, signum = run_until_stopped(ask_the_node, session.give_up)
    if signum is not None:  # (the session was ended on the node)
        print(f"berrymq: stopped by {signal.Signals(signum).name} before {url} answered",
              file=sys.stderr, flush=True)
        return 128 + signum
    (replies,) = answers
    if not isinstance(replies, list):
        raise TransportError(f"{url} answered ask with {replies!r}, not a list of replies")
    entries = [_entry(reply) for reply in replies]
    print_json({"url": url, "replies": entries} if args.json else entries)
    return 0


#: How much longer than ``--timeout`` the command waits for the node's answer (which the
#: node gives by the timeout, with what its receivers replied so far).
_ANSWER_MARGIN = 5.0


def _entry(reply: object) -> object:
    """A reply as printed: the value of ``{"value": V}``, an ``{"error": ...}`` as it came."""
    if isinstance(reply, dict) and "value" in reply:
        return reply["value"]
    return reply


def register_ask_command(commands: Commands) -> None:
    """Add ``ask`` (called once, from :func:`berrymq_jsonrpc.cli.register_commands`)."""
    parser = commands.add(
        "ask", run_ask, help="ask a node's receivers and print their replies",
        description="Send one message to the node at URL as a request, wait up to --timeout "
                    "for the replies of the node's receivers, and print them as one JSON "
                    "array: each the value a receiver returned, or {\"error\": {\"type\", "
                    "\"message\", \"receiver\", \"node\"}} for one that failed (still exit "
                    "status 0). [] when no receiver answered. ARGs are parsed as for send. "
                    "With a broker's URL (nats://), every process that follows ID through "
                    "the broker answers, as for nats request.\n\n"
                    "examples:\n"
                    "  berrymq ask tcp://127.0.0.1:7000 price:quote 2\n"
                    "  BERRYMQ_URL=http://127.0.0.1:8000 berrymq ask stock:count --kw item=pen\n"
                    "  berrymq ask nats://127.0.0.1:4222 price:quote 2",
    )
    add_message_arguments(parser, "the message identifier, e.g. price:quote")
    parser.add_argument("--timeout", type=seconds_argument, default=5.0, metavar="SECONDS",
                        help="seconds to wait for the replies (default 5); a receiver still "
                             "running then is an error entry")
    parser.add_argument("--connect-timeout", type=seconds_argument, default=10.0,
                        metavar="SECONDS",
                        help="seconds to wait for the node to open the session (default 10)")
    add_json_option(parser, 'one JSON object {"url", "replies"}')

"""Every exception berryMQ raises, in one place.

The tree::

    BerryMQError
    ├── InvalidIdentifier (also ValueError)    a bad identifier text
    ├── SettingsError                          a malformed or unknown setting; names file and line
    ├── PluginNotAvailable                     a scheme or receiver kind whose plugin is missing
    │                                          or disabled; names the plugin
    ├── PluginError                            an installed plugin that cannot be loaded; names
    │                                          it, its distribution, and how to turn it off
    ├── QueueFull (also queue.Full)            a bounded queue refused a message
    ├── ReplyError                             one receiver's failure in ask()'s replies
    │                                          (returned in the list, not raised)
    ├── QueueClosed (also queue.Empty)         a closed queue has nothing more to give
    ├── BusClosed                              the bus was closed: it takes no new receivers,
    │                                          peers, transports or worker threads
    └── TransportError                         something went wrong between processes
        ├── ConnectionClosed                   the peer or the connection is gone
        ├── MessageTooLarge                    over the size limit; nothing was sent
        └── RemoteError                        the peer answered with a JSON-RPC error

``berrymq.Empty`` is the standard library's :class:`queue.Empty`.
"""

from __future__ import annotations

import queue
from typing import Any

__all__ = [
    "BerryMQError",
    "BusClosed",
    "ConnectionClosed",
    "Empty",
    "InvalidIdentifier",
    "MessageTooLarge",
    "PluginError",
    "PluginNotAvailable",
    "QueueClosed",
    "QueueFull",
    "RemoteError",
    "ReplyError",
    "SettingsError",
    "TransportError",
]

Empty = queue.Empty


class BerryMQError(Exception):
    """The base of every berryMQ exception."""


#: How much of an over-long identifier text an error shows.
_SHOWN = 64


class InvalidIdentifier(BerryMQError, ValueError):
    """An identifier text that berryMQ cannot accept; the message names the text and why."""

    def __init__(self, text: object, reason: str) -> None:
        self.text = text
        self.reason = reason
        shown = f"{text[:_SHOWN]}..." if isinstance(text, str) and len(text) > _SHOWN else text
        super().__init__(f"invalid identifier {shown!r}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.text, self.reason)


class SettingsError(BerryMQError):
    """A settings file that is malformed or names something unknown."""

    def __init__(self, problem: str, path: object = None, line: int | None = None) -> None:
        self.problem = problem
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.problem, self.path, self.line)


class PluginNotAvailable(BerryMQError):
    """A feature was asked for whose plugin is not installed or not active."""

    def __init__(self, what: str, plugin: str, reason: str) -> None:
        self.what = what
        self.plugin = plugin
        self.reason = reason
        super().__init__(f"{what}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.what, self.plugin, self.reason)


class PluginError(BerryMQError):
    """An installed plugin that cannot be loaded or whose hook failed: it fails to
    import, implements a hook wrongly (a parameter or a hook that does not exist), or
    raised in a hook (while the plugins load, or one of a bus's: see
    :mod:`berrymq.hookspecs`). Not the settings' fault, but the settings (or the
    environment) are where to turn the plugin off, so the message names the plugin, its
    distribution and version, and how (``disable = [...]``, ``BERRYMQ_BLOCK_PLUGINS``);
    ``hook`` is the hook that raised, if one did. The ``berrymq`` command exits with
    status 2.
    """

    def __init__(self, message: str, plugin: str, hook: str | None = None) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.plugin, self.hook)


class QueueFull(BerryMQError, queue.Full):
    """A bounded queue was full and refused a message (it was not stored)."""

    #: True when a peer's link refused the message (its outgoing buffer stayed full): the
    #: receivers here and the other peers had it, and ``bus.losses`` already counts it
    #: (``not forwarded: QueueFull``), so whoever gets this from a delivery need not.
    not_forwarded = False


class QueueClosed(BerryMQError, queue.Empty):
    """The queue was closed and every stored message has been taken."""


class BusClosed(BerryMQError):
    """The bus was closed: it takes no new receivers, peers, transports or worker threads
    (what it would start, nothing would stop)."""


class ReplyError(BerryMQError):
    """Stands in the list :func:`berrymq.ask` returns for a receiver that raised (or a
    node that did not answer in time); it is returned, not raised.

    ``exception_type`` and ``message`` describe the failure; ``receiver`` names the
    receiver (or the node) and ``node`` the node id it ran on.
    """

    def __init__(self, exception_type: str, message: str, receiver: str = "", node: str = "") -> None:
        self.exception_type = exception_type
        self.message = message
        self.receiver = receiver
        self.node = node
        super().__init__(f"{receiver or 'receiver'} raised {exception_type}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # an exception pickles its args by default, which this __init__ does not take
        return type(self), (self.exception_type, self.message, self.receiver, self.node)

    def to_json(self) -> dict[str, str]:
        """The JSON form used on the wire."""
        return {"type": self.exception_type, "message": self.message,
                "receiver": self.receiver, "node": self.node}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplyError:
        return cls(str(data.get("type", "Error")), str(data.get("message", "")),
                   str(data.get("receiver", "")), str(data.get("node", "")))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReplyError):
            return self.to_json() == other.to_json()
        return NotImplemented

    __hash__ = BerryMQError.__hash__


class TransportError(BerryMQError):
    """A failure while carrying messages between processes."""


class ConnectionClosed(TransportError):
    """The connection or the peer is gone; what was being sent was not delivered."""


class MessageTooLarge(TransportError):
    """A message over the size limit; it was not sent."""


class RemoteError(TransportError):
    """The peer answered a request with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(f"remote error {code}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.code, self.message, self.data)

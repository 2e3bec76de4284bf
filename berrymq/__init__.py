"""berryMQ: a programmer-friendly, in-memory message library.

Send messages named by identifiers (``"job:done"``); receivers chosen by patterns with
wildcards (``"*:done"``) get them, pushed to functions and methods or stored in queues.
The same messages cross processes over JSON-RPC and, through plugins, a broker.
"""

from __future__ import annotations

from berrymq._version import __version__
from berrymq.api import (
    ask,
    ask_async,
    close_connection,
    connect_broker,
    connect_oneway,
    connect_via_queue,
    flush,
    following_function,
    get,
    get_nowait,
    init_connection,
    interconnect,
    join,
    regist_function,
    regist_method,
    send_message,
    set_multiplicity,
    talk,
    twitter,
    unfollow,
)
from berrymq.bus import Bus, Subscription
from berrymq.decorators import auto_twitter, twitter_exception
from berrymq.default import get_bus, set_bus, use_bus
from berrymq.errors import (
    BerryMQError,
    BusClosed,
    ConnectionClosed,
    Empty,
    InvalidIdentifier,
    MessageTooLarge,
    PluginError,
    PluginNotAvailable,
    QueueClosed,
    QueueFull,
    RemoteError,
    ReplyError,
    SettingsError,
    TransportError,
)
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.network import show_network
from berrymq.receivers.followers import Follower, following
from berrymq.receivers.queues import Queue
from berrymq.sources.files import FileObserver
from berrymq.sources.timer import IntervalTimer

__all__ = [
    "BerryMQError",
    "BusClosed",
    "Bus",
    "ConnectionClosed",
    "Empty",
    "FileObserver",
    "Follower",
    "Identifier",
    "IntervalTimer",
    "InvalidIdentifier",
    "Message",
    "MessageTooLarge",
    "PluginError",
    "PluginNotAvailable",
    "Queue",
    "QueueClosed",
    "QueueFull",
    "RemoteError",
    "ReplyError",
    "SettingsError",
    "Subscription",
    "TransportError",
    "__version__",
    "ask",
    "ask_async",
    "auto_twitter",
    "close_connection",
    "connect_broker",
    "connect_oneway",
    "connect_via_queue",
    "flush",
    "following",
    "following_function",
    "get",
    "get_bus",
    "get_nowait",
    "init_connection",
    "interconnect",
    "join",
    "regist_function",
    "regist_method",
    "send_message",
    "set_bus",
    "set_multiplicity",
    "show_network",
    "talk",
    "twitter",
    "twitter_exception",
    "unfollow",
    "use_bus",
]

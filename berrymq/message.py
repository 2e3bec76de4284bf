"""Message: what a receiver gets, immutable and cheap to create."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from berrymq.identifier import Identifier

__all__ = ["MAX_UID_LENGTH", "MIN_UID_LENGTH", "Message", "fits_uid", "new_message"]

T = TypeVar("T")

_tuple_new = tuple.__new__

#: The lengths of a ``uid`` (berryMQ's own are 20 characters): the ones a node has seen are
#: kept, bounded in bytes; and a node delivers a uid once, whoever sends it, so two clients
#: counting theirs (or sending "") lost each other's messages as seen.
MIN_UID_LENGTH, MAX_UID_LENGTH = 16, 128


def fits_uid(uid: object) -> bool:
    """Whether ``uid`` is a uid a node takes: a str of the lengths above."""
    return type(uid) is str and MIN_UID_LENGTH <= len(uid) <= MAX_UID_LENGTH


class _MessageType(type):
    """Message's metaclass: ``Message(identifier, args, kwargs)`` is the documented
    constructor, while :data:`new_message` builds one from its five fields at C speed.

    A tuple subclass with a ``__new__`` written in Python is built through that
    ``__new__`` (or through the slower ``tuple.__new__(Message, fields)``); with the
    public constructor here instead, Message keeps tuple's own ``__new__``, so that the
    hot path of every send builds its message with one C-level call.
    """

    def __call__(cls, identifier: Identifier | str, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, hops: int = 0,
                 uid: str | None = None) -> Any:
        if not isinstance(identifier, Identifier):
            identifier = Identifier(identifier)
        # (checked here, not where they failed later: Message("a:b", "abc").args was
        # ('a', 'b', 'c'); a list for kwargs, or hops "x", broke a send much later)
        if isinstance(args, (str, bytes, dict)):
            raise TypeError(f"args of message {identifier} must be a tuple of its positional "
                            f"arguments, got {args!r}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"kwargs of message {identifier} must be a dict, got {kwargs!r}")
        if not isinstance(hops, int) or hops < 0:
            raise TypeError(f"hops of message {identifier} must be an int of 0 or more, "
                            f"got {hops!r}")
        if uid is not None and type(uid) is not str:
            raise TypeError(f"uid of message {identifier} must be a str or None, got {uid!r}")
        if uid is not None and not fits_uid(uid):
            raise ValueError(f"uid of message {identifier} must be {MIN_UID_LENGTH} to "
                             f"{MAX_UID_LENGTH} characters, unique among every sender's "
                             f"(random ones), got {uid!r}: a node delivers a uid once")
        return _tuple_new(
            cls,  # type: ignore[arg-type]  # cls is Message, a tuple subclass
            (identifier, tuple(args), {} if kwargs is None else kwargs, hops, uid),
        )


class Message(tuple, metaclass=_MessageType):  # type: ignore[type-arg]
    """One sent message, as receivers and queues see it.

    ``id`` is ``"name:action"``; ``args`` is a tuple and ``kwargs`` a dict; each keyword
    argument is also an attribute (``message.user`` for ``user=...``), but for one named
    like an attribute of the message itself (``id``, ``name``, ``args``, ``hops``...),
    which keeps its meaning: ``message.kwargs["name"]`` reads it. A message is a
    tuple underneath, so creating one on every send costs little and its fields cannot be
    reassigned. Every receiver and queue of a send gets the same message, so the
    ``kwargs`` dict and any mutable argument are shared among them: treat them as
    read-only (copy before changing), as with any in-process event library; a message
    that crossed a process is decoded anew there.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # the constructor is _MessageType.__call__; this tells type checkers
        def __new__(cls, identifier: Identifier | str, args: tuple[Any, ...] = (),
                    kwargs: dict[str, Any] | None = None, hops: int = 0,
                    uid: str | None = None) -> Message: ...

    @property
    def identifier(self) -> Identifier:
        """The parsed :class:`~berrymq.Identifier` the message was sent with."""
        ident: Identifier = self[0]
        return ident

    @property
    def id(self) -> str:
        """``"name:action"``, as sent (without the namespace)."""
        return self[0].id  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return self[0].name  # type: ignore[no-any-return]

    @property
    def action(self) -> str:
        return self[0].action  # type: ignore[no-any-return]

    @property
    def namespace(self) -> str | None:
        """The namespace, or None for the default one."""
        return self[0].namespace  # type: ignore[no-any-return]

    @property
    def args(self) -> tuple[Any, ...]:
        return self[1]  # type: ignore[no-any-return]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self[2]  # type: ignore[no-any-return]

    @property
    def hops(self) -> int:
        """How many receivers or nodes handed this message on before it reached here."""
        return self[3]  # type: ignore[no-any-return]

    @property
    def uid(self) -> str | None:
        """A unique id (16 to 128 characters), given when the message first leaves its
        process; else None."""
        return self[4]  # type: ignore[no-any-return]

    # A tuple's own public methods would hide keyword arguments of the same names.
    @property
    def count(self) -> Any:
        """The ``count`` keyword argument (a message is no sequence to count in)."""
        return self.__getattr__("count")

    @property
    def index(self) -> Any:
        """The ``index`` keyword argument."""
        return self.__getattr__("index")

    def apply(self, func: Callable[..., T]) -> T:
        """Call ``func(**message.kwargs)`` and return its result."""
        return func(**self[2])

    def __getattr__(self, key: str) -> Any:
        try:
            return self[2][key]
        except KeyError:
            raise AttributeError(
                f"message {self[0]} has no attribute or keyword argument {key!r}"
            ) from None

    def __repr__(self) -> str:
        return f"Message({str(self[0])!r}, args={self[1]!r}, kwargs={self[2]!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Message, tuple(self))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            return self[:3] == other[:3]
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]  # kwargs is a dict


#: ``new_message((identifier, args, kwargs, hops, uid))``: a Message from its five fields,
#: as they are (an :class:`~berrymq.identifier.Identifier`, a tuple, a dict, an int, a str
#: or None), unchecked. The send path's constructor: tuple's own, called as
#: ``type.__call__`` would, without :class:`_MessageType`'s Python-level ``__call__``.
new_message: Callable[[tuple[Identifier, tuple[Any, ...], dict[str, Any], int, str | None]],
                      Message] = type.__call__.__get__(Message)

"""Decorators that send: :func:`auto_twitter` around each call of a function, and
:func:`twitter_exception` when it raises; both on the default bus, read at each call.

What their sends raise (a full queue's refusal; receivers' failures with ``raise_errors``)
is never raised into the call, whose return value and exception pass through unchanged:
a refusal is counted in ``bus.losses`` and logged, any other failure logged
(:func:`_send_beside`)."""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from berrymq._losses import DECORATOR_REFUSED, count_refusals
from berrymq._subscribing import refuse_non_flags
from berrymq.default import holder
from berrymq.identifier import Identifier, parse

__all__ = ["auto_twitter", "twitter_exception"]

logger = logging.getLogger("berrymq")

P = ParamSpec("P")
R = TypeVar("R")


def auto_twitter(identifier: str, entry: bool = False, exit: bool = False
                 ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a function to send ``name:entry`` before and ``name:exit`` after each call.

    Both flags false (or both true) send both; ``entry=True`` only entry; ``exit=True``
    only exit. An identifier whose action is already ``entry`` or ``exit`` sends just
    that one; any other action is replaced (``"job:run"`` sends ``job:entry`` and
    ``job:exit``), as in berryMQ 0.3. Both messages carry the call's arguments; the exit
    message is sent even when the function raises. Return values and exceptions pass
    through unchanged (a full queue's refusal of a message sent here is counted in
    ``bus.losses`` and logged, not raised into the call). An ``async def`` function gets
    an ``async def`` wrapper: the messages are sent when the coroutine starts and ends,
    not when it is made.

    A flag that is not ``True`` or ``False``, or a decorated value that is not callable,
    raises :class:`TypeError` naming it here, at decoration: a wrapper of ``5`` sent
    ``name:entry`` and ``name:exit`` around a call that never happened, then raised.
    """
    ident = parse(identifier)
    who = f"auto_twitter({identifier!r})"
    refuse_non_flags(who, entry=entry, exit=exit)
    prefix = ident.name if ident.namespace is None else f"{ident.name}@{ident.namespace}"
    if ident.action in ("entry", "exit"):
        send_entry, send_exit = ident.action == "entry", ident.action == "exit"
    elif entry == exit:
        send_entry = send_exit = True
    else:
        send_entry, send_exit = entry, exit
    entry_id = parse(f"{prefix}:entry")
    exit_id = parse(f"{prefix}:exit")

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        _check_callable(who, function)
        if inspect.iscoroutinefunction(function):
            run = cast(Callable[P, Awaitable[Any]], function)

            @functools.wraps(function)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if send_entry:
                    _send_beside("auto_twitter", entry_id, *args, **kwargs)
                try:
                    return await run(*args, **kwargs)
                finally:
                    if send_exit:
                        _send_beside("auto_twitter", exit_id, *args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if send_entry:
                _send_beside("auto_twitter", entry_id, *args, **kwargs)
            try:
                return function(*args, **kwargs)
            finally:
                if send_exit:
                    _send_beside("auto_twitter", exit_id, *args, **kwargs)

        return wrapper

    return decorate


def twitter_exception(identifier: str, reraise: bool = False
                      ) -> Callable[[Callable[P, R]], Callable[P, R | None]]:
    """Wrap a function to send a message when it raises.

    The message's keyword arguments are JSON-serialisable: ``exception_type`` (the class
    name), ``exception_message`` (``str(exc)``, or ``"<exception str() failed>"`` when
    that raises), ``traceback`` (formatted) and
    ``function`` (its qualified name). The exception is re-raised when ``reraise`` is
    true; otherwise the call returns None. An ``async def`` function gets an ``async def``
    wrapper, which sends when the awaited coroutine raises.

    A ``reraise`` that is not ``True`` or ``False``, or a decorated value that is not
    callable, raises :class:`TypeError` naming it here, at decoration (as for
    :func:`auto_twitter`).
    """
    ident = parse(identifier)
    who = f"twitter_exception({identifier!r})"
    refuse_non_flags(who, reraise=reraise)

    def send(exc: Exception, function: Callable[..., Any]) -> None:
        _send_beside("twitter_exception", ident, exception_type=type(exc).__name__,
                     exception_message=_text_of(exc),
                     traceback="".join(traceback.format_exception(exc)),
                     function=function.__qualname__)

    def decorate(function: Callable[P, R]) -> Callable[P, R | None]:
        _check_callable(who, function)
        if inspect.iscoroutinefunction(function):
            run = cast(Callable[P, Awaitable[Any]], function)

            @functools.wraps(function)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return await run(*args, **kwargs)
                except Exception as exc:
                    send(exc, function)
                    if reraise:
                        raise
                    return None

            return cast(Callable[P, R | None], async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                send(exc, function)
                if reraise:
                    raise
                return None

        return wrapper

    return decorate


def _check_callable(who: str, function: object) -> None:
    """Refuse to wrap what cannot be called, at decoration, naming it, as
    :func:`~berrymq.following_function` does: the wrapper would send for a call that
    never happens, then raise at the first call."""
    if not callable(function):
        raise TypeError(f"{who} needs a callable, got {function!r}")


def _text_of(exc: Exception) -> str:
    """``str(exc)``, or what :mod:`traceback` writes for an exception whose ``__str__``
    raises: the message goes out, and the function's own exception passes on."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - any failure of a user's __str__
        return "<exception str() failed>"


def _send_beside(decorator: str, identifier: Identifier, /, *args: Any, **kwargs: Any) -> None:
    """Send on the default bus for ``decorator``, keeping what the send raises out of the
    wrapped call (which it would have replaced: a full queue's ``QueueFull`` came out of a
    call that had returned, or raised ``ValueError``): a refusal counted and logged,
    another failure logged."""
    bus = holder.bus
    try:
        bus.twitter(identifier, *args, **kwargs)
    except Exception as exc:  # the call's own outcome goes on
        rest = count_refusals(bus, exc, DECORATOR_REFUSED, f"{decorator} of {identifier}")
        if rest is not None:
            logger.error("sending %s for %s failed; the wrapped call's result and exception "
                         "pass on", identifier, decorator, exc_info=rest)

"""What a plugin is checked for when it loads, beyond what pluggy checks itself.

pluggy passes over a function that is not marked as a hook implementation, keeps a
misspelled hook pending until asked, and accepts hook wrappers, which wrap nothing here
(every hook is called one plugin at a time, :mod:`berrymq._hook_calls`). Each of those
would leave a plugin listed as active whose hook is never called as meant; these checks
find them, and :class:`~berrymq.plugins.PluginHost` turns what they find into the
:class:`~berrymq.PluginError` naming the plugin.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pluggy

import berrymq.hookspecs
from berrymq._hook_calls import one_line

__all__ = ["RENAMED_HOOKS", "Problem", "hook_wrapper", "misspelled_hook", "unmarked_function"]

#: Hooks renamed to verbs during 0.4's development: a plugin that still implements a former
#: name is refused (as any unknown hook is), with its new name in the error.
RENAMED_HOOKS = {"berrymq_bus_started": "berrymq_start_bus",
                 "berrymq_bus_closing": "berrymq_close_bus",
                 "berrymq_message_sent": "berrymq_observe_message"}


@dataclass(frozen=True)
class Problem:
    """What is wrong with a loaded plugin: its name, the text (the plugin's error goes on
    from it), the hook concerned and the exception behind it, if any."""

    plugin: str
    text: str
    hook: str | None = None
    cause: BaseException | None = None


def unmarked_function(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """What is wrong when ``plugin`` has a function named ``berrymq_*`` without berryMQ's
    ``hookimpl`` (unmarked, or marked for another project's hooks): pluggy would pass over
    it, so the hook meant would never be called while the plugin is listed as active."""
    for attribute in sorted(dir(plugin)):
        if not attribute.startswith("berrymq_"):
            continue
        value = getattr(plugin, attribute, None)
        function = getattr(value, "__func__", value)
        if not inspect.isfunction(function):  # a module, a class, a constant
            continue
        if pm.parse_hookimpl_opts(plugin, attribute) is not None:
            continue
        others = sorted(key[:-len("_impl")] for key in vars(function)
                        if key.endswith("_impl") and key != "_impl")
        why = (f"is marked for the hooks of {', '.join(repr(o) for o in others)}, not "
               "berryMQ's" if others else "is not marked with @hookimpl")
        return (f"has a function {attribute} that {why} (from berrymq.hookspecs import "
                "hookimpl), so pluggy would never call it")
    return None


def misspelled_hook(pm: pluggy.PluginManager) -> Problem | None:
    """A hook implementation with no such hook (a misspelled or former name)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = exc.plugin
        name = (pm.get_name(plugin) if plugin is not None else None) or "?"
        renamed = [f"{old} is now {new}" for old, new in RENAMED_HOOKS.items()
                   if old in str(exc)]
        hooks = sorted(h for h in dir(berrymq.hookspecs) if h.startswith("berrymq_"))
        return Problem(name, f"implements a hook berryMQ does not have: {one_line(exc)}; "
                             f"{'; '.join(renamed) + '; ' if renamed else ''}berryMQ's hooks "
                             f"are {', '.join(hooks)}", cause=exc)
    return None


def hook_wrapper(pm: pluggy.PluginManager) -> Problem | None:
    """A hook wrapper (``wrapper=True``, ``hookwrapper=True``): every hook is called one
    plugin at a time (to blame a failure on the plugin that raised), so it would wrap
    nothing but itself, silently."""
    for plugin in pm.get_plugins():
        for caller in pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                    option = "wrapper=True" if impl.wrapper else "hookwrapper=True"
                    return Problem(
                        impl.plugin_name,
                        f"marks its hook {caller.name} with {option}; berryMQ calls each "
                        "plugin's hooks on their own, so a wrapper would wrap no other "
                        "plugin's: order it with tryfirst=True or trylast=True instead",
                        caller.name)
    return None

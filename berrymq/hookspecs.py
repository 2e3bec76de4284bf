"""The hooks through which plugins extend berryMQ, and the markers to implement them.

A plugin is a module (or object) registered under the entry point group ``berrymq``; it
implements any of these hooks with :data:`hookimpl`::

    from berrymq.hookspecs import hookimpl

    @hookimpl
    def berrymq_register_transports(registry):
        registry.add("tcp", TcpTransport)   # the scheme is this plugin's

Every hook name is ``berrymq_`` and a verb. Registry hooks are called once, when plugins
are loaded. Bus hooks are called for every bus that starts or closes, in the thread that
starts or closes it and never under the bus's lock. :func:`berrymq_observe_message` is
the only per-message hook, and the bus calls it only when some active plugin implements
it. A plugin implementing a hook that is not declared here (a misspelled name) is an
error naming the plugin and the hook, when plugins are loaded.

Every hook is called one plugin at a time, so that an exception is blamed on the plugin
that raised it: ``tryfirst=True`` and ``trylast=True`` order the plugins, and a hook
wrapper (``wrapper=True``, ``hookwrapper=True``), which would wrap no other plugin's
implementation, is refused when plugins are loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.cli import Commands
    from berrymq.message import Message
    from berrymq.registries import (
        ReceiverRegistry,
        SettingsSchema,
        SourceRegistry,
        StatusReport,
        TransportRegistry,
    )

__all__ = [
    "PROJECT_NAME",
    "berrymq_close_bus",
    "berrymq_declare_settings",
    "berrymq_register_commands",
    "berrymq_observe_message",
    "berrymq_register_receivers",
    "berrymq_register_sources",
    "berrymq_register_transports",
    "berrymq_report_status",
    "berrymq_start_bus",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "berrymq"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def berrymq_declare_settings(schema: SettingsSchema) -> None:
    """Called once when plugins are loaded, before the settings file is checked; declare
    the keys of the plugin's table in the settings file, so that unknown keys and wrong
    types are reported with the file and line.

    :param schema: call ``schema.add(plugin_name, key=type, ...)``, and
        ``schema.add_check(plugin_name, key, check)`` where a value of the right type may
        still be wrong (``check(value)`` returns the problem, or None); with ``path=True``
        for a key that names a file, which the check then gets relative to the settings
        file's folder.
    """


@hookspec
def berrymq_register_transports(registry: TransportRegistry) -> None:
    """Called once when plugins are loaded; add transport factories by URL scheme.

    :param registry: call ``registry.add(scheme, factory)`` for each scheme;
        ``factory(bus, settings)`` returns a :class:`berrymq.transports.base.Transport`,
        made with this plugin's settings. A name registered is the calling plugin's:
        ``plugin=`` may be left out, and when given it must be the plugin's own name
        (another plugin's is a :class:`~berrymq.PluginError`).
    """


@hookspec
def berrymq_register_commands(commands: Commands) -> None:
    """Called once when the ``berrymq`` command builds its parser, after the core's own
    commands (``plugins``, ``demo``, ``graph``) were added; add commands, or options to
    the commands that exist (as datasette's ``register_commands``).

    The JSON-RPC distribution adds ``serve``, ``send``, ``listen`` and the ``URL`` of
    ``graph`` here, and each transport plugin its own option of ``serve``
    (``berrymq_jsonrpc.cli.add_serve_option``; an option acted on once ``serve`` is
    serving, as ``jsonrpc-http``'s ``--monitor``, with ``add_serve_starter``). Their
    implementations run first (``tryfirst``), so any other plugin finds those commands
    with ``commands.get``; a command another outside plugin adds exists once that
    plugin's implementation ran (pluggy calls them last registered first: mark yours
    ``trylast`` to come after them).

    :param commands: call ``commands.add(name, run, help=...)`` for a new command (it
        returns the argparse parser to add arguments to; ``run(args)`` returns the exit
        status), or ``commands.get(name)`` for the parser of an existing one.
    """


@hookspec
def berrymq_register_receivers(registry: ReceiverRegistry) -> None:
    """Called once when plugins are loaded; add receiver kinds by name.

    The public API finds its receiver kinds here (``functions``, ``followers``,
    ``queues``), so that a disabled kind is reported by name.

    :param registry: call ``registry.add(name, kind)``; the name is the calling plugin's
        (as for :func:`berrymq_register_transports`).
    """


@hookspec
def berrymq_register_sources(registry: SourceRegistry) -> None:
    """Called once when plugins are loaded; add sources by name: classes whose objects
    send on a bus by themselves (``timer``, ``fileobserver``), so that a disabled one is
    reported by name when a program makes one.

    :param registry: call ``registry.add(name, source_class)``; the name is the calling
        plugin's (as for :func:`berrymq_register_transports`).
    """


@hookspec
def berrymq_start_bus(bus: Bus) -> None:
    """Called when a bus starts (when it is created, or by :meth:`Bus.start
    <berrymq.Bus.start>`), after the settings are applied to it; a plugin subscribes its
    own receivers or connects its transport here, keeping what it made in the bus's
    state (``bus.state(key)``, see :mod:`berrymq.state`).

    :param bus: the bus; ``bus.plugins.settings_for(name)`` gives the plugin's settings.
    """


@hookspec
def berrymq_close_bus(bus: Bus) -> None:
    """Called when a started bus is closed, after its connections and transports closed
    and before its state and subscriptions are dropped; a plugin releases what it
    acquired in :func:`berrymq_start_bus`. An exception is logged as a
    :class:`~berrymq.PluginError` naming the plugin; the close goes on.

    :param bus: the bus being closed.
    """


@hookspec
def berrymq_observe_message(bus: Bus, message: Message) -> None:
    """Called after each message was delivered locally and handed to transports (one sent
    with ``twitter`` or ``talk``, or received from another node), but only when some
    active plugin implements this hook (checked once when the bus starts).

    Implementations run on the sender's path: keep them quick and never raise (an
    exception reaches the sender as a :class:`~berrymq.PluginError` naming the plugin;
    the other plugins' implementations still see the message, and with the receivers'
    errors of ``raise_errors``, or other plugins' failures, it is raised in one
    :class:`ExceptionGroup` with them).

    :param bus: the bus the message was sent on.
    :param message: the message, as the receivers got it.
    """


@hookspec
def berrymq_report_status(bus: Bus, report: StatusReport) -> None:
    """Called by ``berrymq plugins`` (through :meth:`PluginHost.status
    <berrymq.plugins.PluginHost.status>`); add a line about the plugin's state
    (connected, buffering, ...).

    :param bus: the bus whose state is reported.
    :param report: call ``report.add(plugin_name, text)``.
    """

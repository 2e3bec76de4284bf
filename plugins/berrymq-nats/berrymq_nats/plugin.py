"""The ``nats`` plugin's hooks: settings, the ``nats://`` transport, activation, status."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from berrymq.hookspecs import hookimpl
from berrymq_nats.options import NUMBER_OPTIONS, credentials_problem, option_problem
from berrymq_nats.subjects import prefix_problem
from berrymq_nats.transport import NatsTransport, transport_of

if TYPE_CHECKING:
    from berrymq.bus import Bus
    from berrymq.registries import SettingsSchema, StatusReport, TransportRegistry

__all__ = [
    "PLUGIN",
    "berrymq_close_bus",
    "berrymq_declare_settings",
    "berrymq_register_transports",
    "berrymq_report_status",
    "berrymq_start_bus",
]

PLUGIN = "nats"
logger = logging.getLogger("berrymq.nats")

_number = (int, float)


@hookimpl
def berrymq_declare_settings(schema: SettingsSchema) -> None:
    schema.add(
        PLUGIN,
        servers=list,
        token=str,
        user=str,
        password=str,
        credentials=str,
        subject_prefix=str,
        connect_timeout=_number,
        reconnect_wait=_number,
        max_reconnect_attempts=int,
        buffer_limit=int,
        buffer_bytes=int,
        send_timeout=_number,
        ask_gather=_number,
        name=str,
    )
    for key in sorted(NUMBER_OPTIONS):
        schema.add_check(PLUGIN, key, functools.partial(option_problem, key))
    schema.add_check(PLUGIN, "subject_prefix", prefix_problem)
    schema.add_check(PLUGIN, "credentials", credentials_problem, path=True)


@hookimpl
def berrymq_register_transports(registry: TransportRegistry) -> None:
    registry.add("nats", NatsTransport, plugin=PLUGIN)


@hookimpl
def berrymq_start_bus(bus: Bus) -> None:
    """With ``servers`` in ``[berrymq.nats]``, join the bus to NATS in the background.

    The bus starts when it is created (or by ``Bus.start()``), and runs this in that
    thread, outside the bus's lock. It still does not wait for the connection: creating
    a bus should not take up to ``connect_timeout`` or fail because NATS is down; messages
    sent before the connection is made wait in the disconnect buffer, and a bad value in
    the settings is raised here, naming the file and key.
    """
    if not bus.plugins.settings_for(PLUGIN).get("servers"):
        return
    transport = bus.transport("nats")
    assert isinstance(transport, NatsTransport)
    try:
        transport.connect_broker(wait=False)
    except (ValueError, TypeError) as exc:  # a bad value in [berrymq.nats]: name the file
        settings = bus.plugins.settings
        key = next((k for k in settings.table(PLUGIN) if repr(k) in str(exc) or k in str(exc)),
                   "servers")
        raise settings.error(f"[{settings.table_name}.{PLUGIN}] {exc}", key, PLUGIN) from exc


@hookimpl
def berrymq_close_bus(bus: Bus) -> None:
    """Close the bus's bridge (sending what waits, while NATS is reachable)."""
    transport = transport_of(bus)
    if transport is not None:
        transport.close()


@hookimpl
def berrymq_report_status(bus: Bus, report: StatusReport) -> None:
    """With ``servers`` configured, make sure the bus has joined (``berrymq plugins`` is
    often the first use of a bus) and give the connection a moment, so the line shows
    the real state; the transport's own line then says it all."""
    settings = bus.plugins.settings_for(PLUGIN)
    existed = transport_of(bus) is not None  # then the core reports it already
    if not existed and settings.get("servers"):
        bus.start()
    transport = transport_of(bus)
    if transport is None:
        report.add(PLUGIN, "not connected (set servers in [berrymq.nats] or call "
                           "berrymq.connect_broker)")
        return
    bridge = transport.bridge
    if bridge is not None and not bridge.closed:
        bridge.wait_connected(bridge.options.connect_timeout)
    if not existed:
        report.add(PLUGIN, transport.status())

"""berrymq._activation: which installed plugins are active under the settings file and
``BERRYMQ_BLOCK_PLUGINS``, the reason ``berrymq plugins`` lists, and what a user is told to
do for a plugin that is not active."""

from __future__ import annotations

from pathlib import Path

import pytest

from berrymq._activation import PluginInfo, activation, how_to_get
from berrymq.settings import Settings

FILE = Path("/project/berrymq.toml")


@pytest.mark.parametrize(("settings", "blocked", "expected"), [
    (Settings(), set(), (True, "installed")),
    (Settings(path=FILE), set(), (True, f"not disabled in {FILE}")),
    (Settings(path=FILE, disable=("jsonrpc-tcp",)), set(), (False, f"disabled in {FILE}")),
    (Settings(path=FILE, plugins=("jsonrpc-tcp",)), set(), (True, f"listed in {FILE}")),
    (Settings(path=FILE, plugins=()), set(), (False, f"not in the plugins list in {FILE}")),
    (Settings(path=FILE, plugins=("jsonrpc-tcp",)), {"jsonrpc-tcp"},
     (False, "blocked by BERRYMQ_BLOCK_PLUGINS")),
])
def test_activation_and_its_reason(settings: Settings, blocked: set[str],
                                   expected: tuple[bool, str]) -> None:
    assert activation("jsonrpc-tcp", settings, blocked) == expected


def test_core_receivers_stay_active_outside_the_plugins_list() -> None:
    active, reason = activation("queues", Settings(path=FILE, plugins=()), set())
    assert active and "core receiver" in reason
    assert activation("queues", Settings(path=FILE, disable=("queues",)), set())[0] is False


def info(reason: str) -> PluginInfo:
    return PluginInfo("jsonrpc-tcp", "berrymq-jsonrpc-tcp", "0.4.0", "berrymq_jsonrpc_tcp",
                      False, reason)


def test_how_to_get_a_plugin_not_installed_names_its_distribution() -> None:
    hint = how_to_get([], Settings(), "jsonrpc-tcp", "berrymq-jsonrpc-tcp")
    assert "berrymq-jsonrpc-tcp" in hint


def test_how_to_get_a_disabled_plugin_names_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BERRYMQ_BLOCK_PLUGINS", raising=False)
    hint = how_to_get([info(f"disabled in {FILE}")], Settings(path=FILE), "jsonrpc-tcp", None)
    assert hint.endswith(f"enable it in {FILE}")


def test_how_to_get_a_blocked_plugin_says_to_unblock_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERRYMQ_BLOCK_PLUGINS", "jsonrpc-tcp")
    hint = how_to_get([info("blocked by BERRYMQ_BLOCK_PLUGINS")], Settings(path=FILE),
                      "jsonrpc-tcp", None)
    assert "remove 'jsonrpc-tcp' from the environment variable BERRYMQ_BLOCK_PLUGINS" in hint
    assert "enable it" not in hint

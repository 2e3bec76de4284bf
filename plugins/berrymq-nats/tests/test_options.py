"""Options and settings of the bridge (berrymq_nats.options): errors name the option,
the settings file and its line."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from berrymq_nats import BrokerOptions
from berrymq_nats import plugin as nats_plugin
from berrymq_nats.options import servers_problem

import berrymq
from berrymq import Bus, SettingsError
from berrymq.plugins import PluginHost
from berrymq.settings import load_settings


def test_settings_errors_name_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "berrymq.toml"
    config.write_text('[berrymq.nats]\nservers = ["nats://127.0.0.1:1"]\nbufer = 3\n',
                      encoding="utf-8")
    with pytest.raises(SettingsError, match=r"berrymq.toml:3: unknown key 'bufer'"):
        PluginHost(load_settings(config), entry_points=False,
                   extra_plugins=[("nats", nats_plugin)])
    config.write_text('[berrymq.nats]\nbuffer_limit = "many"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="buffer_limit must be an integer"):
        PluginHost(load_settings(config), entry_points=False,
                   extra_plugins=[("nats", nats_plugin)])


def test_bad_options_are_named(default_bus: Bus) -> None:
    with pytest.raises(TypeError, match="unknown NATS option 'bufer_limit'"):
        berrymq.connect_broker("nats://127.0.0.1:1", bufer_limit=3)
    with pytest.raises(ValueError, match="not a URL"):
        berrymq.connect_broker("nats://127.0.0.1:1,localhost:2")
    # (nats-py took it and failed each attempt for good: "invalid connect url option")
    with pytest.raises(ValueError, match=re.escape(
            "NATS server 'nats://127.0.0.1:99999' has an invalid port (0 to 65535)")):
        berrymq.connect_broker("nats://127.0.0.1:99999")
    with pytest.raises(ValueError, match="connect_timeout must be a positive, finite number"):
        berrymq.connect_broker("nats://127.0.0.1:1", connect_timeout=0)
    with pytest.raises(ValueError, match="subject_prefix"):
        berrymq.connect_broker("nats://127.0.0.1:1", subject_prefix="a.*")
    with pytest.raises(ValueError, match=r"subject_prefix is 1025 bytes long, over 1024: every "
                                         r"subject starts with it and must fit the NATS "
                                         r"server's control line"):
        berrymq.connect_broker("nats://127.0.0.1:1", subject_prefix="p" * 1025)
    with pytest.raises(ValueError, match="NATS option buffer_limit must be 1 or more, got 0"):
        berrymq.connect_broker("nats://127.0.0.1:1", buffer_limit=0)



@pytest.mark.parametrize("key", ["connect_timeout", "reconnect_wait", "send_timeout",
                                 "ask_gather"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0])
def test_seconds_are_positive_and_finite(key: str, value: float) -> None:
    """An infinite connect_timeout made nats-py raise a bare OverflowError; NaN passed
    every check and then read as no wait at all."""
    with pytest.raises(ValueError, match=f"{key} must be a positive, finite number of seconds"):
        BrokerOptions.build("nats://127.0.0.1:1", {key: value})


@pytest.mark.parametrize("key", ["connect_timeout", "reconnect_wait", "send_timeout",
                                 "ask_gather"])
def test_seconds_longer_than_any_wait_are_refused(key: str) -> None:
    """connect_timeout=1e10 raised OverflowError from connect_broker, yet the bridge it
    started stayed connected, delivering, with nothing to close it by."""
    with pytest.raises(ValueError, match=f"{key} must be at most 4611686018 seconds"):
        BrokerOptions.build("nats://127.0.0.1:1", {key: 1e10})


@pytest.mark.parametrize(("url", "problem"), [
    ("nats://", "names no host"),
    ("nats://:4222", "names no host"),
    ("nats://127.0.0.1:4222/jobs", "has a path, a query or a fragment"),
    ("tls://127.0.0.1:4222?x=1", "has a path, a query or a fragment"),
    ("nats://127.0.0.1:4222#top", "has a path, a query or a fragment"),
])
def test_a_server_url_nats_cannot_use_is_refused_at_once(tmp_path: Path, default_bus: Bus,
                                                         url: str, problem: str) -> None:
    """An outside audit: ``nats://`` (no host) passed, then connect_broker failed after
    2.5 s and ``serve`` retried for ever; a path or query was dropped without a word."""
    with pytest.raises(ValueError, match=re.escape(f"NATS server {url!r} {problem}")):
        berrymq.connect_broker(url)
    config = tmp_path / "berrymq.toml"
    config.write_text(f'[berrymq.nats]\nservers = ["{url}"]\n', encoding="utf-8")
    host = load(config)  # (servers are checked as the bus joins NATS, when it starts)
    with pytest.raises(SettingsError, match=re.escape(problem)) as info:
        Bus(plugins=host).close()
    assert "berrymq.toml:2: " in str(info.value), info.value


@pytest.mark.parametrize("url", ["wss://example.org/nats", "wss://example.org/ws?token=abc",
                                 "ws://127.0.0.1:8080/nats?x=1", "nats://[::1]:4222",
                                 "nats://[::1]", "tls://host:4222", "nats://host",
                                 "nats://user:pass@host:4222", "nats://tok@host"])
def test_urls_nats_py_takes_pass(url: str) -> None:
    """A WebSocket URL is an HTTP address: its path and query go to the server."""
    assert BrokerOptions.build(url, {}).servers == (url,)


@pytest.mark.parametrize("url", ["nats://user:s3cret@127.0.0.1:99999",
                                 "nats://user:s3/cret@127.0.0.1:4222", "nats://u:s3cret@[::1"])
def test_a_refused_url_is_quoted_without_its_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"^NATS server 'nats://\*\*\*@") as refused:
        BrokerOptions.build(url, {})
    assert "s3" not in str(refused.value)


def test_an_unreadable_server_url_is_named() -> None:
    assert servers_problem(["nats://127.0.0.1:1", "nats://[::1"]) == (
        "'nats://[::1' cannot be read: not a URL like 'nats://host:4222'")


@pytest.mark.parametrize(("line", "expected"), [
    ("connect_timeout = inf", "nats.connect_timeout must be a positive, finite number"),
    ("connect_timeout = 1e10", "nats.connect_timeout must be at most 4611686018 seconds"),
    ("max_reconnect_attempts = 0", "nats.max_reconnect_attempts must be -1 (never give up)"),
    ("buffer_limit = -3", "nats.buffer_limit must be 1 or more, got -3"),
    ("buffer_limit = 0", "nats.buffer_limit must be 1 or more, got 0 (no message could ever "
                         "wait to be sent: every one would be refused)"),
    ("buffer_bytes = -1", "nats.buffer_bytes must be 0 or more, got -1"),
    ('subject_prefix = "jobs.*"', "nats.subject_prefix 'jobs.*' is not a valid NATS subject"),
])
def test_a_bad_value_in_the_settings_file_is_named_with_its_line_when_plugins_load(
        tmp_path: Path, line: str, expected: str) -> None:
    """Checked when the plugins load (as ``berrymq plugins`` loads them), not first when a
    bus joins NATS."""
    config = tmp_path / "berrymq.toml"
    config.write_text(f'[berrymq.nats]\nservers = ["nats://127.0.0.1:1"]\n{line}\n',
                      encoding="utf-8")
    with pytest.raises(SettingsError, match=re.escape(expected)) as info:
        PluginHost(load_settings(config), entry_points=False,
                   extra_plugins=[("nats", nats_plugin)])
    assert "berrymq.toml:3: " in str(info.value), info.value


def load(config: Path) -> PluginHost:
    """Load the core's plugins and this one with the settings file ``config``."""
    return PluginHost(load_settings(config), entry_points=False,
                      extra_plugins=[("nats", nats_plugin)])


def test_credentials_are_checked_when_plugins_load(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``credentials`` file that is missing or not a ``.creds`` file is named, with
    the setting and the file's line, when the plugins load (as ``berrymq plugins`` loads
    them), not first when a bus joins NATS; a relative path is the settings file's."""
    folder = tmp_path / "conf"
    folder.mkdir()
    config = folder / "berrymq.toml"
    monkeypatch.chdir(tmp_path)  # where conf/'s files are not
    config.write_text('[berrymq.nats]\nservers = ["nats://127.0.0.1:1"]\n'
                      'credentials = "app.creds"\n', encoding="utf-8")
    creds = folder / "app.creds"
    with pytest.raises(SettingsError, match=re.escape(
            f"berrymq.toml:3: nats.credentials file {creds} cannot be read "
            "(No such file or directory)")):
        load(config)
    creds.write_text("-----BEGIN USER NKEY SEED-----\nSUAXXX\n------END USER NKEY SEED------\n",
                     encoding="utf-8")
    with pytest.raises(SettingsError, match=re.escape(
            f"berrymq.toml:3: nats.credentials file {creds} is not a NATS credentials file "
            "(no 'BEGIN NATS USER JWT' section with a value)")):
        load(config)
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJ.any.jwt\n------END NATS USER JWT------\n"
                     "-----BEGIN USER NKEY SEED-----\nSUANY\n------END USER NKEY SEED------\n",
                     encoding="utf-8")
    assert load(config).settings_for("nats")["credentials"] == "app.creds"  # kept as written
    absolute = tmp_path / "gone.creds"
    config.write_text(f'[berrymq.nats]\ncredentials = "{absolute}"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=re.escape(
            f"berrymq.toml:2: nats.credentials file {absolute} cannot be read")):
        load(config)


def test_defaults_and_bounds() -> None:
    options = BrokerOptions.build("nats://127.0.0.1:1", {})
    assert (options.buffer_limit, options.buffer_bytes, options.send_timeout) == (
        10_000, 64 * 1024 * 1024, 5.0)
    with pytest.raises(ValueError, match="buffer_bytes must be 0 or more"):
        BrokerOptions.build("nats://127.0.0.1:1", {"buffer_bytes": -1})
    with pytest.raises(TypeError, match="buffer_bytes must be an integer"):
        BrokerOptions.build("nats://127.0.0.1:1", {"buffer_bytes": 1.5})
    with pytest.raises(ValueError, match="send_timeout must be a positive, finite number"):
        BrokerOptions.build("nats://127.0.0.1:1", {"send_timeout": 0})

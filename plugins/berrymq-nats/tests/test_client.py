"""What the bridge hands to ``nats-py`` (berrymq_nats.client): the settings of
``[berrymq.nats]`` that no other test shows to take effect, each against a real
``nats-server`` started for the test (issue 8: a test per declared setting):

- ``token``, ``user`` and ``password``: a server that requires them lets the bridge in
  with the right ones, and refuses it, reported in its status, with wrong ones;
- ``credentials``: a ``.creds`` file for a server in operator mode (the operator, account
  and user JWTs are made here with ``nkeys``); a file that cannot be used is refused
  by name before ``nats-py`` sees it (it would loop forever on some);
- ``max_reconnect_attempts``: the bridge gives up after that many attempts more than
  the first, at the first connection and after a lost one, counted at a relay.

Each bus here takes its settings from a ``berrymq.toml`` written by the test, so the
settings file's keys are what is shown to reach the client. ``send_timeout`` is shown in
test_outbox, the other settings in test_bridge, test_outbox, test_inbound, test_asking.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import nkeys
import pytest
from berrymq_jsonrpc.status import metrics_text, status_snapshot
from berrymq_nats import BrokerOptions, NatsBridge
from berrymq_nats import plugin as nats_plugin
from berrymq_nats.testing import NatsServer, Recorder, bridge_of, settle
from berrymq_nats.transport import transport_of

import berrymq
from berrymq import Bus, SettingsError
from berrymq.plugins import PluginHost
from berrymq.settings import load_settings
from berrymq.testing import free_port

pytestmark = pytest.mark.broker

Configured = Callable[..., Bus]
Poll = Callable[..., None]
DENIED = "Authorization Violation"


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Configured]:
    """``configured(**table)``: a bus whose settings file has ``[berrymq.nats]`` = table
    (the bus starts, and so joins NATS in the background); all are closed after the test."""
    buses: list[Bus] = []

    def make(**table: Any) -> Bus:
        config = tmp_path / f"berrymq-{len(buses)}.toml"
        lines = [f"{key} = {json.dumps(value)}" for key, value in table.items()]
        config.write_text("[berrymq.nats]\n" + "\n".join(lines) + "\n", encoding="utf-8")
        host = PluginHost(load_settings(config), entry_points=False,
                          extra_plugins=[("nats", nats_plugin)])
        bus = Bus(raise_errors=True, plugins=host, name=f"configured{len(buses)}")
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def bridge(bus: Bus) -> NatsBridge:
    transport = transport_of(bus)
    assert transport is not None and transport.bridge is not None
    return transport.bridge


def crosses(sender: Bus, receiver: Bus) -> list[Any]:
    """Send one message from ``sender`` to a receiver on ``receiver``; what arrived."""
    got = Recorder()
    receiver.subscribe("auth:*", got, weak=False)
    settle(bridge(receiver))
    sender.twitter("auth:check", "crossed")
    return [m.args for m in got.wait(1, timeout=10)]


def assert_refused(bus: Bus, poll: Poll) -> None:
    """The bridge of ``bus`` was turned away by the server, and says so."""
    b = bridge(bus)
    # the status line as it is between two attempts (a later attempt may end in the reset
    # of the connection the server closes after refusing)
    poll(lambda: f"last error: Error: nats: '{DENIED}'" in b.status(),
         what="the server to refuse the bridge, and its status to say so")
    assert not b.wait_connected(0) and b.state.startswith("connecting")


def test_every_declared_setting_reaches_the_bridge(configured: Configured,
                                                   tmp_path: Path) -> None:
    creds = write_creds(tmp_path / "some.creds", "eyJ.any.jwt", b"SUANY")
    table: dict[str, Any] = {"servers": [f"nats://127.0.0.1:{free_port()}"], "token": "t", "user": "u",
                             "password": "p", "credentials": str(creds), "subject_prefix": "app.x",
                             "connect_timeout": 1.5, "reconnect_wait": 0.25,
                             "max_reconnect_attempts": 7, "buffer_limit": 11,
                             "buffer_bytes": 12345, "send_timeout": 0.75, "ask_gather": 0.05,
                             "name": "reader"}
    declared = set(configured().plugins.schema.tables["nats"])
    assert declared == table.keys() == {f.name for f in fields(BrokerOptions)}
    options = bridge(configured(**table)).options
    for key, value in table.items():
        assert getattr(options, key) == (tuple(value) if key == "servers" else value), key


# -- token, user and password -------------------------------------------------------------------


def test_token(nats_factory: Callable[..., NatsServer], configured: Configured,
               poll: Poll) -> None:
    server = nats_factory(args=("--auth", "s3cret-token")).start()
    a = configured(servers=[server.url], token="s3cret-token")
    b = configured(servers=[server.url], token="s3cret-token")
    assert crosses(a, b) == [("crossed",)]
    assert_refused(configured(servers=[server.url], token="wrong-token"), poll)
    assert_refused(configured(servers=[server.url]), poll)  # the server does require one
    # from code, waiting for the connection: the error says why there is none (the
    # server's refusal; on a loaded machine the reset of the connection it closes after
    # refusing can be the last thing the client saw when the wait ends)
    with pytest.raises(berrymq.ConnectionClosed,
                       match=f"last error: (Error: nats: '{DENIED}'|ConnectionResetError)"):
        bridge_of(configured(), server.url, token="wrong-token", connect_timeout=0.5)


@pytest.mark.parametrize(("user", "password"), [("berry", "wrong"), ("nobody", "p4ss")])
def test_user_and_password(nats_factory: Callable[..., NatsServer], configured: Configured,
                           poll: Poll, user: str, password: str) -> None:
    server = nats_factory(args=("--user", "berry", "--pass", "p4ss")).start()
    a = configured(servers=[server.url], user="berry", password="p4ss")
    b = configured(servers=[server.url], user="berry", password="p4ss")
    assert crosses(a, b) == [("crossed",)]
    assert_refused(configured(servers=[server.url], user=user, password=password), poll)


def test_a_password_in_a_server_url_is_never_shown(nats_factory: Callable[..., NatsServer],
                                                   configured: Configured,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """``nats://user:password@host`` lets the bridge in, and the node shows the server as
    ``nats://***@host`` in ``/status`` and ``/metrics``, its connections and its errors (an
    outside audit found the password in all of them: whoever could read ``/status`` had
    the broker's credentials too)."""
    server = nats_factory(args=("--user", "berry", "--pass", "p4ss-w0rd")).start()
    with_password = f"nats://berry:p4ss-w0rd@127.0.0.1:{server.port}"
    a = configured(servers=[with_password])
    b = configured(servers=[with_password])
    assert crosses(a, b) == [("crossed",)]
    shown = f"nats://***@127.0.0.1:{server.port}"
    assert [c.address for c in a.connections()] == [shown]
    snapshot = status_snapshot(a)
    seen = json.dumps(snapshot) + metrics_text(snapshot) + bridge(a).status()
    assert shown in seen and "p4ss-w0rd" not in seen
    wrong = f"nats://berry:p4ss-w0rd@127.0.0.1:{free_port()}"  # nobody there
    with caplog.at_level(logging.DEBUG, logger="berrymq"), pytest.raises(
            berrymq.ConnectionClosed, match=r"at nats://\*\*\*@127\.0\.0\.1") as refused:
        bridge_of(configured(), wrong, connect_timeout=0.5)
    assert "p4ss-w0rd" not in str(refused.value) + caplog.text


# -- credentials --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(prefix: int) -> nkeys.KeyPair:
    """A new NKey pair of one role (operator, account or user)."""
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def jwt(issuer: nkeys.KeyPair, subject: nkeys.KeyPair, claims: dict[str, Any]) -> str:
    """A NATS JWT (version 2) about ``subject``, signed by ``issuer`` as nats-server checks
    it: ``ed25519-nkey`` over ``header.payload``, base64url without padding."""
    body: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public_key.decode(),
                            "sub": subject.public_key.decode(), "name": claims["type"],
                            "nats": {**claims, "version": 2}}
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body).encode()).digest()
                                   ).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    return f"{head}.{payload}.{_b64(issuer.sign(f'{head}.{payload}'.encode()))}"


def write_creds(path: Path, user_jwt: str, seed: bytes) -> Path:
    """A ``.creds`` file as ``nsc`` writes it."""
    path.write_text(f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
                    "************************* IMPORTANT *************************\n\n"
                    f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n"
                    "------END USER NKEY SEED------\n", encoding="utf-8")
    return path


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def user_creds(path: Path, account: nkeys.KeyPair) -> Path:
    """The credentials of a new user of ``account``."""
    user = new_key(nkeys.PREFIX_BYTE_USER)
    claims = {"type": "user", "pub": {}, "sub": {}, **UNLIMITED}
    return write_creds(path, jwt(account, user, claims), bytes(user.seed))


@pytest.fixture
def operator_server(nats_factory: Callable[..., NatsServer], tmp_path: Path
                    ) -> tuple[NatsServer, nkeys.KeyPair]:
    """A nats-server in operator mode that trusts one account (the one returned): only
    clients with a user JWT that account signed get in."""
    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    limits = {**UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
              "leaf": -1}
    account_jwt = jwt(operator, account, {"type": "account", "limits": limits})
    config = tmp_path / "operator.conf"
    config.write_text(f'operator: "{jwt(operator, operator, {"type": "operator"})}"\n'
                      "resolver: MEMORY\n"
                      f'resolver_preload: {{\n  {account.public_key.decode()}: "{account_jwt}"\n}}\n',
                      encoding="utf-8")
    return nats_factory(args=("-c", str(config))).start(), account


def test_credentials(operator_server: tuple[NatsServer, nkeys.KeyPair], configured: Configured,
                     tmp_path: Path, poll: Poll) -> None:
    server, account = operator_server
    a = configured(servers=[server.url], credentials=str(user_creds(tmp_path / "a.creds", account)))
    b = configured(servers=[server.url], credentials=str(user_creds(tmp_path / "b.creds", account)))
    assert crosses(a, b) == [("crossed",)]
    stranger = user_creds(tmp_path / "stranger.creds", new_key(nkeys.PREFIX_BYTE_ACCOUNT))
    assert_refused(configured(servers=[server.url], credentials=str(stranger)), poll)
    assert_refused(configured(servers=[server.url]), poll)  # the server does require them


def test_a_relative_credentials_path_is_relative_to_the_settings_file(
        configured: Configured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = write_creds(tmp_path / "app.creds", "eyJ.any.jwt", b"SUANY")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where "app.creds" is not
    bus = configured(servers=[f"nats://127.0.0.1:{free_port()}"], credentials="app.creds")
    assert bridge(bus).options.credentials == str(creds)


def test_unusable_credentials_are_refused_by_name(tmp_path: Path, configured: Configured) -> None:
    missing = tmp_path / "missing.creds"
    with pytest.raises(SettingsError, match=rf"credentials file {missing} cannot be read "
                                            r"\(No such file"):
        configured(servers=[f"nats://127.0.0.1:{free_port()}"], credentials=str(missing))
    # nats-py reads the seed, then loops forever looking for the JWT: refused before
    seed_only = tmp_path / "seed-only.creds"
    seed_only.write_text("-----BEGIN USER NKEY SEED-----\nSUAXXX\n------END USER NKEY SEED------\n",
                         encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{seed_only} is not a NATS credentials file "
                                         r"\(no 'BEGIN NATS USER JWT' section"):
        BrokerOptions.build("nats://127.0.0.1:1", {"credentials": str(seed_only)})
    no_seed = write_creds(tmp_path / "no-seed.creds", "eyJ.x.y", b"")
    with pytest.raises(ValueError, match=r"no 'BEGIN USER NKEY SEED' section"):
        BrokerOptions.build("nats://127.0.0.1:1", {"credentials": str(no_seed)})


# -- max_reconnect_attempts ---------------------------------------------------------------------


def test_max_reconnect_attempts_at_the_first_connection(
    configured: Configured, proxy_factory: Callable[[int], Any], poll: Poll,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = proxy_factory(free_port())  # accepts, counting, and closes: no server behind
    bus = configured(servers=[relay.url], max_reconnect_attempts=2, reconnect_wait=0.05,
                     connect_timeout=1)
    b = bridge(bus)
    # the state says failed just before the outbox is closed (NatsBridge.failed): the
    # message sent below is refused only once it is
    poll(lambda: b.state.startswith("failed") and b.outbox.closed,
         what="the bridge to give up and close its outbox")
    assert b.state == ("failed: gave up after 3 attempts in a row at each server "
                       "(max_reconnect_attempts = 2)")
    assert relay.accepted == 3  # the first and two more; not tried again by the bridge
    assert "last error: Error: nats: empty response from server" in b.status()
    with caplog.at_level(logging.ERROR, "berrymq"):  # not held for a connection never to come
        bus.twitter("after:giving-up")
    assert "could not forward after:giving-up" in caplog.text
    assert "(max_reconnect_attempts = 2)) is closed" in caplog.text


def test_max_reconnect_attempts_after_a_lost_connection(
    nats_server: NatsServer, configured: Configured, proxy_factory: Callable[[int], Any],
    poll: Poll,
) -> None:
    relay = proxy_factory(nats_server.port)
    bus = configured(servers=[relay.url], max_reconnect_attempts=2, reconnect_wait=0.05)
    b = bridge(bus)
    assert b.wait_connected(10) and relay.accepted == 1
    nats_server.stop()  # the relay now accepts and closes each attempt
    poll(lambda: b.state.startswith("failed"), what="the bridge to give up")
    assert b.state == ("failed: the NATS client gave up after 3 attempts in a row at each "
                       "server (max_reconnect_attempts = 2)")
    assert relay.accepted == 1 + 3
    assert b.client is not None and b.client.is_closed  # nothing will try again


def test_max_reconnect_attempts_zero_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"max_reconnect_attempts must be -1 \(never give up\) "
                                         r"or 1 or more, got 0 \(nats-py would read 0"):
        BrokerOptions.build("nats://127.0.0.1:1", {"max_reconnect_attempts": 0})
    with pytest.raises(ValueError, match="got -2"):
        BrokerOptions.build("nats://127.0.0.1:1", {"max_reconnect_attempts": -2})


# -- connect_timeout, reconnect_wait and name --------------------------------------------------


def test_connect_timeout_bounds_one_attempt(
    configured: Configured, proxy_factory: Callable[[int], Any], poll: Poll,
) -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:  # never greets
        relay = proxy_factory(silent.getsockname()[1])
        b = bridge(configured(servers=[relay.url], connect_timeout=0.3,
                              max_reconnect_attempts=1, reconnect_wait=0.05))
        poll(lambda: b.state.startswith("failed"), what="the bridge to give up")
    first, second = relay.accepted_at
    assert 0.3 <= second - first < 1.9  # the default (2 s) would wait longer
    assert b.last_error == "TimeoutError" and "last error: TimeoutError" in b.status()


def test_reconnect_wait_spaces_the_attempts(
    configured: Configured, proxy_factory: Callable[[int], Any], poll: Poll,
) -> None:
    relay = proxy_factory(free_port())
    b = bridge(configured(servers=[relay.url], reconnect_wait=1.0, max_reconnect_attempts=1))
    poll(lambda: b.state.startswith("failed"), what="the bridge to give up")
    first, second = relay.accepted_at
    assert second - first >= 0.95  # the default (0.5 s) would try again sooner


def test_name_is_what_the_server_shows(nats_server: NatsServer, configured: Configured) -> None:
    b = bridge(configured(servers=[nats_server.url], name="reader-7"))
    assert b.wait_connected(10)
    names = [c.get("name") for c in nats_server.monitor_json("/connz")["connections"]]
    assert names == ["reader-7"]

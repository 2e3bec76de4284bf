"""The client against a node that answers oddly (found by an outside probe): an answer
that is valid JSON-RPC but not what the method promises is a malformed answer, named with
the address, never taken for success."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fake_node import WAIT, fake_node, normal
from helpers import wait_for

import berrymq
from berrymq import Bus

SCHEMES = ["tcp", "http"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("result", [12345, None, ["ok"], "OK", {"ok": True}])
def test_a_send_messages_answer_other_than_ok_is_not_an_acknowledgement(
        scheme: str, result: Any, berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    def answer(method: str, params: Any, rid: Any) -> Any:
        if method == "send_messages":
            return {"jsonrpc": "2.0", "result": result, "id": rid}
        return normal(method, params, rid)

    with fake_node(scheme, answer) as node, caplog.at_level(logging.ERROR):
        connection = berrymq.connect_oneway(node.url)
        berrymq.send_message("job:x", 1)
        assert berrymq.flush(WAIT) is False  # was True: 12345 counted as "ok"
        assert sum(connection.losses.values()) == 1
        # logged by the I/O thread as the link closes, maybe just after flush returned
        said = f"{node.url} answered send_messages with {result!r}, not 'ok'"
        assert wait_for(lambda: said in caplog.text), caplog.text

"""``berrymq status``: what it prints of a node's ``/status``, and what docs/status.md says
of both (the fields it shows, the loss reasons, ``--json``)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from berrymq_jsonrpc.outbox import NOT_SENT, REFUSED
from berrymq_jsonrpc.session_table import DROPPED_AT_CLOSE
from berrymq_jsonrpc.sessions import NOT_WRITABLE
from berrymq_jsonrpc.status import status_snapshot
from berrymq_jsonrpc.status_cli import _cmd_status, format_status
from probe_tools import refusing_node

from berrymq._losses import FORWARD_FAILED, HOP_LIMIT, WORKER_REFUSED
from berrymq.bus import Bus
from berrymq.cli import UsageError

TIMEOUT = 20.0
DOC = Path(__file__).resolve().parents[3] / "docs" / "status.md"


def test_status_shows_refusals_duplicates_and_a_connections_state(
        bus_factory: Callable[..., Bus]) -> None:
    node, _ = refusing_node(bus_factory)
    status = status_snapshot(node)
    assert status["refused"] == {"total": 1, "reasons": {"max_sessions": 1}}
    assert status["messages"]["duplicates"] == 1
    (connection,) = status["connections"]
    assert (connection["refused"], connection["state"]) == (1, "open")

    lines = format_status(status).splitlines()
    assert "refused:   1 (max_sessions: 1)" in lines
    (messages,) = [line for line in lines if line.startswith("messages:")]
    assert messages.endswith("  duplicates 1")
    table = lines[lines.index("connections:") + 1:lines.index("connections:") + 3]
    assert table[0].split() == ["ADDRESS", "STYLE", "AGE", "PENDING", "SENT", "LOST",
                                "REFUSED", "STATE"]
    assert table[1].split()[0] == connection["address"]
    assert table[1].split()[-2:] == ["1", "open"]


def test_status_of_a_quiet_node_says_none_was_refused(bus_factory: Callable[..., Bus]) -> None:
    node = bus_factory()
    node.transport("http").listen("http://127.0.0.1:0")
    lines = format_status(status_snapshot(node)).splitlines()
    assert "refused:   0" in lines
    assert next(line for line in lines if line.startswith("messages:")).endswith("duplicates 0")


def test_status_without_a_node_hints_at_an_http_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """It hinted at a tcp:// address, which status then refuses (it is served over HTTP)."""
    monkeypatch.delenv("BERRYMQ_URL", raising=False)
    args = argparse.Namespace(url=None, json=False, secret=None, timeout=TIMEOUT)
    with pytest.raises(UsageError, match=r"e\.g\. http://127\.0\.0\.1:8000"):
        _cmd_status(args)


def test_status_json_prints_the_document_indented_as_documented(
        bus_factory: Callable[..., Bus], capsys: pytest.CaptureFixture[str]) -> None:
    node = bus_factory()
    url = node.transport("http").listen("http://127.0.0.1:0")
    args = argparse.Namespace(url=url, json=True, secret=None, timeout=TIMEOUT)
    assert _cmd_status(args) == 0
    printed = capsys.readouterr().out
    document = json.loads(printed)
    assert printed == json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    assert document["server"]["node"] == node.node_id
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert "as the node sent it" not in text  # it is not byte for byte what the node sent
    assert "`--json` prints the document the node sent as indented JSON" in text


def _section(text: str, field: str) -> str:
    """The paragraph of ``field`` in the list of docs/status.md's ``/status`` fields."""
    match = re.search(rf"^`{field}`\n: (.*?)(?=\n\n)", text, re.S | re.M)
    assert match is not None, field
    return " ".join(match.group(1).split())


@pytest.mark.parametrize("reason", [
    REFUSED, NOT_WRITABLE, HOP_LIMIT, NOT_SENT, DROPPED_AT_CLOSE,
    FORWARD_FAILED.format("ERROR"), WORKER_REFUSED.format("QueueFull"),
])
def test_the_docs_name_every_loss_reason(reason: str) -> None:
    assert f"`{reason}`" in _section(DOC.read_text(encoding="utf-8"), "lost")


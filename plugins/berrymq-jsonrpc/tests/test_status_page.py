"""Issue 12 point 2: the live page ``/`` of a node, in a real headless Chromium.

The system's Chromium (``/usr/bin/chromium``) is driven by Playwright (never its own
browser download). Skipped where either is missing, except under
``BERRYMQ_REQUIRE_BROKERS=1`` (CI), where that is a failure. Set
``BERRYMQ_STATUS_SCREENSHOT=path.png`` to keep a picture of the page (docs/status.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from berrymq_nats.testing import NatsServer
from probe_tools import refusing_node, stop_process

from berrymq.identifier import Identifier
from berrymq.message import Message

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("BERRYMQ_REQUIRE_BROKERS") == "1"
TIMEOUT = 20.0
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture
def page() -> Iterator[Page]:
    missing = ("chromium is not installed (/usr/bin/chromium)" if CHROMIUM is None else
               "the playwright package is not installed" if sync_playwright is None else None)
    if missing is not None:
        if REQUIRED:
            pytest.fail(f"{missing}, and BERRYMQ_REQUIRE_BROKERS=1 requires it")
        pytest.skip(f"{missing}; set BERRYMQ_REQUIRE_BROKERS=1 to fail instead")
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            yield context.new_page()
        finally:
            browser.close()


def read_status(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + "/status", timeout=TIMEOUT) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


COUNTERS = ("messages-in", "messages-out", "bytes-in", "bytes-out", "lost", "sessions",
            "connections")


def test_the_live_page_shows_the_node(page: Page, serve_node: Callable[..., Any],
                                      bus_factory: Callable[..., Any]) -> None:
    node = serve_node("--http", "127.0.0.1:0", "--print", "page:*")
    url = node.urls["http"]
    transport = bus_factory().transport("http")
    queue = transport.connect_via_queue(url, Identifier("page:*"), 300)
    sender = transport.connect_oneway(url, 300)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))

    # Everything is read through locators: the page's Content-Security-Policy forbids
    # eval, so Playwright's page.evaluate cannot run there (and need not).
    page.goto(url + "/", timeout=TIMEOUT * 1000)
    counters = page.locator("#counters")
    wait = TIMEOUT * 1000
    expect(counters).not_to_have_attribute("data-updates", "0", timeout=wait)
    sent = 0
    for burst in (3, 8, 5):  # a few bursts, each seen by the page, so the charts have a shape
        for i in range(burst):
            sender.send(Message(Identifier("page:hello"), (sent + i,), {"from": "the test"}))
        sent += burst
        assert sender.flush(TIMEOUT)
        expect(counters).to_have_attribute("data-messages-in", str(sent), timeout=wait)
    assert queue.get(timeout=TIMEOUT).args == (0,)
    expect(page.locator("#recent tbody")).to_contain_text("page:hello", timeout=wait)
    expect(page.locator("#network text").first).to_be_attached(timeout=wait)

    # Quiescent now (no request is on its way to the node): once two more polls came back,
    # the page shows the final counters; pause it and compare them with /status.
    seen = int(counters.get_attribute("data-updates") or 0)
    expect(counters).to_have_attribute("data-updates", str(seen + 2), timeout=wait)
    page.locator("#pause").click()
    expect(page.locator("#pause")).to_have_text("resume")
    status = read_status(url)
    shown = {k: counters.get_attribute(f"data-{k}") for k in COUNTERS}
    assert shown == {k: str(v) for k, v in {
        "messages-in": status["messages"]["in"], "messages-out": status["messages"]["out"],
        "bytes-in": status["bytes"]["in"], "bytes-out": status["bytes"]["out"],
        "lost": status["lost"]["total"], "sessions": len(status["sessions"]),
        "connections": len(status["connections"]),
    }.items()}
    assert status["messages"] == status["messages"] | {"in": sent, "out": 1}
    assert page.locator("#messages-in").inner_text() == str(sent)
    assert "remote page:*" in page.locator("#queues").inner_text()
    assert "page:*" in page.locator("#network").text_content()  # type: ignore[operator]
    assert errors == [] and outside == []
    shot = os.environ.get("BERRYMQ_STATUS_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)


# -- what the page does when the node restarts, hangs, or refuses ------------------------------

CHARTS = ("chart-in", "chart-out", "chart-bytes")
W, H = 300, 70  # a chart's viewBox


def chart_points(page: Page, chart: str) -> list[tuple[float, float]]:
    """The points of the line drawn in ``chart`` (none before two samples)."""
    line = page.locator(f"#{chart} polyline")
    if line.count() == 0:
        return []
    points = line.get_attribute("points") or ""
    return [(float(x), float(y)) for x, y in (p.split(",") for p in points.split())]


def test_the_page_starts_its_charts_afresh_when_the_node_restarts(
        page: Page, serve_node: Callable[..., Any], bus_factory: Callable[..., Any],
        wait_for: Callable[..., Any]) -> None:
    first = serve_node("--http", "127.0.0.1:0")
    url = first.urls["http"]
    port = url.rsplit(":", 1)[1]
    page.goto(url + "/", timeout=TIMEOUT * 1000)
    wait = TIMEOUT * 1000
    counters, state = page.locator("#counters"), page.locator("#state")
    sender = bus_factory().transport("http").connect_oneway(url, 300)
    for i in range(40):  # a burst: the old node's rate is high
        sender.send(Message(Identifier("page:old"), (i,), {}))
    assert sender.flush(TIMEOUT)
    expect(counters).to_have_attribute("data-messages-in", "40", timeout=wait)
    expect(page.locator("#chart-in polyline")).to_be_attached(timeout=wait)
    old = read_status(url)["server"]
    first.stop()

    # The same address, another node, which nothing is sent to: its rates are all 0.
    second = serve_node("--http", f"127.0.0.1:{port}")
    assert second.urls["http"] == url
    expect(state).to_contain_text("node restarted", timeout=wait)
    expect(state).to_have_class("state")
    expect(counters).to_have_attribute("data-restarts", "1")
    expect(counters).to_have_attribute("data-messages-in", "0")
    # Once the new node has run longer than the old one did, and the page has polled it
    # again, its uptimes overlap the old node's: nothing the old node counted may show,
    # and no rate against the old node's totals (negative: below the chart).
    wait_for(lambda: read_status(url)["server"]["uptime_s"] > old["uptime_s"] + 1,
             what="the new node to outlive the old one")
    seen = int(counters.get_attribute("data-updates") or 0)
    expect(counters).to_have_attribute("data-updates", str(seen + 2), timeout=wait)
    expect(state).to_contain_text("node restarted")  # still said
    page.locator("#pause").click()
    expect(page.locator("#pause")).to_have_text("resume")
    assert read_status(url)["server"]["pid"] != old["pid"]
    assert counters.get_attribute("data-restarts") == "1"  # once, not at every poll
    for chart in CHARTS:
        points = chart_points(page, chart)
        assert len(points) >= 2, (chart, points)
        assert all(0 <= x <= W for x, _ in points), (chart, points)
        assert {y for _, y in points} == {H - 1}, (chart, points)  # rate 0, on the axis
        assert page.locator(f"#{chart} text").text_content() == "max 1/s"


def test_the_page_says_when_the_node_hangs_and_never_polls_twice_at_once(
        page: Page, serve_node: Callable[..., Any]) -> None:
    node = serve_node("--http", "127.0.0.1:0")
    url = node.urls["http"]
    polls = {"open": 0, "most": 0}  # the page's requests (/status, /network) under way

    def started(request: Any) -> None:
        if request.resource_type == "fetch":
            polls["open"] += 1
            polls["most"] = max(polls["most"], polls["open"])

    def ended(request: Any) -> None:
        if request.resource_type == "fetch":
            polls["open"] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    page.goto(url + "/", timeout=TIMEOUT * 1000)
    wait = TIMEOUT * 1000
    counters, state, pause = page.locator("#counters"), page.locator("#state"), page.locator("#pause")
    expect(counters).not_to_have_attribute("data-updates", "0", timeout=wait)
    pause.click()  # no poll starts from now on; wait for the one under way, if any
    expect(pause).to_have_text("resume")
    while polls["open"]:
        page.wait_for_event("requestfinished", timeout=wait)  # pumps the events too
    stop_process(node.process.pid)  # hung: it takes connections, answers nothing
    try:
        with page.expect_request(lambda r: r.url.endswith("/status"), timeout=wait):
            pause.click()  # resume: the next poll waits for the stopped node
        pause.click()
        pause.click()  # resumed again while that poll waits: no second one beside it
        expect(pause).to_have_text("pause")
        expect(state).to_contain_text("cannot reach the node", timeout=10_000)
        expect(state).to_have_class("state bad")
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
    expect(state).to_have_class("state", timeout=wait)  # a poll was answered again
    expect(state).to_contain_text("live · ")
    assert polls["most"] == 1


def test_the_page_shows_refusals_duplicates_and_its_connections_state(
        page: Page, bus_factory: Callable[..., Any]) -> None:
    node, url = refusing_node(bus_factory)
    status = read_status(url)
    (connection,) = status["connections"]
    page.goto(url + "/", timeout=TIMEOUT * 1000)
    wait = TIMEOUT * 1000
    counters = page.locator("#counters")
    expect(counters).not_to_have_attribute("data-updates", "0", timeout=wait)
    expect(page.locator("#refused")).to_have_text("1")
    expect(page.locator("#refused-reasons")).to_have_text("max_sessions: 1")
    expect(page.locator("#duplicates")).to_have_text("1")
    expect(counters).to_have_attribute("data-refused", "1")
    expect(counters).to_have_attribute("data-duplicates", "1")
    expect(page.locator("#connections thead th")).to_have_text(
        ["address", "style", "age", "pending", "sent", "lost", "refused", "state"])
    expect(page.locator("#connections tbody tr td")).to_have_text(
        [connection["address"], "oneway", re.compile(r"\d+s"), "0", "1", "0", "1", "open"])
    assert node.node_id == status["server"]["node"]


def test_the_page_shows_a_connected_nats_bridge_as_healthy(
        page: Page, bus_factory: Callable[..., Any], tmp_path: Path) -> None:
    """A NATS bridge's state is ``connected`` when all is well (a JSON-RPC connection's
    ``open``): the page painted it red, as a failing one (found by an outside audit)."""
    server = NatsServer(tmp_path).start()
    node = bus_factory()
    try:
        url = node.transport("http").listen("http://127.0.0.1:0")
        node.transport("nats").connect_broker(server.url)
        (row,) = read_status(url)["connections"]
        assert (row["address"], row["state"]) == (server.url, "connected")
        page.goto(url + "/", timeout=TIMEOUT * 1000)
        expect(page.locator("#counters")).not_to_have_attribute(
            "data-updates", "0", timeout=TIMEOUT * 1000)
        state = page.locator("#connections tbody tr td").last
        expect(state).to_have_text("connected")
        expect(state).not_to_have_class(re.compile(r"\bbad\b"))
    finally:
        node.close()  # (before its server stops: a bridge closing without one waits)
        server.stop()


def test_the_page_reads_a_node_whose_secret_is_past_ascii(
        page: Page, serve_node: Callable[..., Any]) -> None:
    """The page sends the secret of its address in a header, which fetch refuses for a
    letter past U+00FF (and sends é as Latin-1): it sends the secret's UTF-8, as curl
    does, which the node reads (found by an outside audit)."""
    secret = "pässwörd-密码"
    node = serve_node("--http", "127.0.0.1:0", env={"BERRYMQ_SECRET": secret})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{node.urls['http']}/?secret={urllib.parse.quote(secret)}",
              timeout=TIMEOUT * 1000)
    counters = page.locator("#counters")
    expect(counters).to_have_attribute("data-updates", re.compile(r"^(?:[2-9]|\d{2,})$"),
                                       timeout=TIMEOUT * 1000)
    expect(page.locator("#state")).not_to_have_class(re.compile(r"\bbad\b"))
    assert errors == []

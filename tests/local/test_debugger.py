"""The debugger page in a real headless Chromium (Debian's `chromium`, driven by Playwright), against the
local stack: events appear with their outcome per vendor, one opens to its exact request and the vendor's
answer, the filters narrow the list, and a dead letter is redriven from the page and then delivered.

With RELAY_SCREENSHOTS=<folder> (`make screenshots`) the test saves the screenshots the docs show."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from relay.ingest.signing import sign
from relay_tools.config_file import load_config
from relay_tools.dev import LocalStack
from relay_tools.faults import FaultPlan
from relay_tools.ui import Debugger

from ..conftest import FakeLambdaContext, web_event
from .test_local_stack import local_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 30_000
REJECTED = "web-2002"


def now_event(event_id: str, **fields) -> dict:
    return web_event(event_id=event_id, timestamp=int(time.time() * 1000) - 1000, **fields)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    path = local_config(tmp_path_factory.mktemp("ui"), stack_name="ui-test")
    config = load_config(path)
    quiet = FaultPlan(
        server_error=0, throttled=0, timeout=0, reset=0, drip=0, slow=0, crash=0, reject_ids=frozenset({REJECTED})
    )
    local = LocalStack(config, log=lambda line: None, faults=quiet).start()
    local.config_path = path
    yield local
    local.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.fail("the debugger's browser tests need Debian's chromium: apt-get install chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},  # the narrowest the page is laid out for
        )
        yield context
        context.close()


def post(stack: LocalStack, events: list[dict]) -> None:
    body = json.dumps({"events": events}).encode()
    secret = stack.config.ingest.secrets[0].get_secret_value()
    headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(body, secret)}
    response = httpx.post(stack.ingest_url, content=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text


def shoot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("RELAY_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_events_appear_open_filter_and_a_dead_letter_is_redriven(stack, browser, tmp_path):
    from playwright.sync_api import expect

    requests_from_elsewhere: list[str] = []
    page = browser.new_page()
    page.on(
        "request", lambda r: None if r.url.startswith(stack.debugger_url) else requests_from_elsewhere.append(r.url)
    )
    page.goto(stack.debugger_url)
    expect(page.locator("#status")).to_contain_text("updated", timeout=WAIT_MS)

    post(stack, [now_event("web-2001", name="generate_lead", value=30, currency="USD"), now_event(REJECTED)])
    delivered = page.locator('tr[data-event-id="web-2001"] td[data-vendor="applovin"] .badge')
    expect(delivered).to_have_text("delivered", timeout=WAIT_MS)
    expect(page.locator('tr[data-event-id="web-2001"] td[data-vendor="appsflyer"] .badge')).to_have_text("skipped")
    dead = page.locator(f'tr[data-event-id="{REJECTED}"] td[data-vendor="applovin"] .badge')
    expect(dead).to_have_text("dead_lettered", timeout=WAIT_MS)
    expect(page.locator('#coverage tr[data-vendor="applovin"]')).to_contain_text("100 %")
    shoot(page, "debugger-events", tmp_path)

    # one event: the exact request, and the vendor's answer
    page.locator('tr[data-event-id="web-2001"]').click()
    part = page.locator('.vendor-part[data-vendor="applovin"]')
    expect(part.locator("h3 .badge")).to_have_text("delivered", timeout=WAIT_MS)
    request = part.locator("pre.request")
    expect(request).to_contain_text("POST http://127.0.0.1:")
    expect(request).to_contain_text('"dedupe_id": "web-2001"')
    expect(request).to_contain_text('"client_ip_address": "203.0.113.0"')  # truncated to its /24
    expect(request).to_contain_text("Authorization: ***")
    expect(part.locator("pre.response").first).not_to_be_empty()
    shoot(page, "debugger-event", tmp_path)

    # filters: AppLovin's dead letters only
    page.select_option("#connection", "applovin")
    page.select_option("#outcome", "dead_lettered")
    expect(page.locator("#events tbody tr")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#events tbody tr")).to_have_attribute("data-event-id", REJECTED)
    page.select_option("#connection", "")
    page.select_option("#outcome", "")
    expect(page.locator("#events tbody tr")).to_have_count(2, timeout=WAIT_MS)

    # the dead letter: listed with its reason, redriven from the page once the vendor takes it
    dlq = page.locator('.vendor-dlq[data-vendor="applovin"]')
    expect(dlq.locator(".count")).to_have_text("1 message(s)", timeout=WAIT_MS)
    expect(dlq.locator(".letter")).to_contain_text(REJECTED)
    expect(dlq.locator(".letter")).to_contain_text("rejected")
    shoot(page, "debugger-dlq", tmp_path)
    stack.faults.reject_ids = frozenset()
    dlq.locator("button.redrive").click()
    expect(dlq.locator(".count")).to_have_text("0 message(s)", timeout=WAIT_MS)
    expect(dead).to_have_text("delivered", timeout=WAIT_MS)
    page.locator(f'tr[data-event-id="{REJECTED}"]').click()
    attempts = page.locator('.vendor-part[data-vendor="applovin"] table.attempts tbody tr')
    expect(attempts.last).to_contain_text("200", timeout=WAIT_MS)
    assert attempts.count() >= 2  # the 400 it was dead-lettered for, and the delivery after the redrive
    assert requests_from_elsewhere == []  # every asset from the relay: no CDN, no network


def test_search_a_single_letter_redrive_and_purge_and_the_refused_panel(stack, browser, tmp_path):
    """At 1,280 px: search by event id, the name column and filter, local times with UTC on hover, long ids
    wrapping in their cell, the chart, one dead letter opened, redriven and another purged on its own, and a
    refused request in its panel, opening to the event it named."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the purge's confirmation
    page.goto(stack.debugger_url)
    expect(page.locator("#status")).to_contain_text("updated", timeout=WAIT_MS)
    long_id = "long-" + "x" * 123  # 128 characters, not one place to break
    stack.faults.reject_ids = frozenset({"single-1", "single-2"})
    post(stack, [now_event("search-me-1", name="generate_lead"), now_event(long_id), now_event("single-1")])
    post(stack, [now_event("single-2")])
    dlq = page.locator('.vendor-dlq[data-vendor="applovin"]')
    expect(dlq.locator(".count")).to_have_text("2 message(s)", timeout=WAIT_MS)
    # a refused request: a body signed with another secret, naming its event
    raw = json.dumps({"events": [now_event("refused-1")]}).encode()
    forged = {"Content-Type": "application/json", "X-Relay-Signature": sign(raw, "not-it")}
    refused = httpx.post(stack.ingest_url, content=raw, timeout=30, headers=forged)
    assert refused.status_code == 401
    row = page.locator(f'#refusals tbody tr[data-request-id="{refused.json()["request_id"]}"]')
    expect(row).to_contain_text("signature_mismatch", timeout=WAIT_MS)
    expect(row).to_contain_text("refused-1")
    shoot(page, "debugger-refused", tmp_path)
    row.click()
    expect(page.locator("#detail-head")).to_have_text("never accepted", timeout=WAIT_MS)
    expect(page.locator("#detail-refused")).to_contain_text("Refused 1 time(s)")
    expect(page.locator("#detail-refused")).to_contain_text("HTTP 401 signature_mismatch")

    # search, the name column and its filter, times local with UTC on hover
    page.fill("#q", "search-me")
    expect(page.locator("#events tbody tr")).to_have_count(1, timeout=WAIT_MS)
    found = page.locator('tr[data-event-id="search-me-1"]')
    expect(found.locator("td.name")).to_have_text("generate_lead")
    assert found.locator("time").get_attribute("title").endswith(" UTC")
    page.fill("#q", "")
    expect(page.locator('#name option[value="generate_lead"]')).to_have_count(1, timeout=WAIT_MS)
    page.select_option("#name", "generate_lead")
    expect(page.locator(f'#events tbody tr[data-event-id="{long_id}"]')).to_have_count(0, timeout=WAIT_MS)
    names = page.locator("#events tbody td.name").all_text_contents()
    assert names and set(names) == {"generate_lead"}, names
    page.select_option("#name", "")
    # a 128-character id wraps in its cell: nothing is wider than the window
    expect(page.locator(f'tr[data-event-id="{long_id}"]')).to_have_count(1, timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    for table in ("#events", "#refusals", "#coverage"):  # each table within its panel
        fits = f"(t => t.scrollWidth <= t.closest('section').clientWidth)(document.querySelector('{table}'))"
        assert page.evaluate(fits), table
    expect(page.locator('.chart-vendor[data-vendor="applovin"] rect.o-delivered').first).to_be_attached()
    expect(page.locator('.chart-vendor[data-vendor="applovin"] rect.o-dead_lettered').first).to_be_attached()

    # one dead letter opened (its reason and the vendor's answer), redriven alone; another purged alone
    one = dlq.locator('.letter[data-event-id="single-1"]')
    expect(one).to_contain_text("rejected")
    one.locator("button.open").click()
    expect(one.locator(".letter-detail")).to_be_visible()
    expect(one.locator(".letter-detail pre.response")).not_to_have_text("(none)")
    stack.faults.reject_ids = frozenset()
    one.locator("button.redrive-one").click()
    expect(dlq.locator(".count")).to_have_text("1 message(s)", timeout=WAIT_MS)
    expect(dlq.locator(".letter")).to_have_attribute("data-event-id", "single-2")
    single = page.locator('tr[data-event-id="single-1"] td[data-vendor="applovin"] .badge')
    expect(single).to_have_text("delivered", timeout=WAIT_MS)
    dlq.locator('.letter[data-event-id="single-2"] button.purge-one').click()
    expect(dlq.locator(".count")).to_have_text("0 message(s)", timeout=WAIT_MS)
    expect(page.locator('tr[data-event-id="single-2"] td[data-vendor="applovin"] .badge')).to_have_text(
        "dead_lettered"
    )  # purged: never delivered, and the page does not pretend otherwise
    page.close()


def test_the_page_api_refuses_other_hosts_and_requests_without_its_token(stack):
    base = stack.debugger_url
    assert httpx.get(base + "ui/api/events").status_code == 403  # no token
    page = httpx.get(base)
    token = page.text.split('name="relay-token" content="', 1)[1].split('"', 1)[0]
    assert httpx.get(base + "ui/api/events", headers={"X-Relay-UI": token}).status_code == 200
    rebound = httpx.get(base, headers={"Host": f"attacker.example:{base.rsplit(':', 1)[1].rstrip('/')}"})
    assert rebound.status_code == 403 and token not in rebound.text
    posted = httpx.post(base + "ui/api/dlq/applovin/purge", headers={"X-Relay-UI": "wrong"})
    assert posted.status_code == 403
    assert httpx.get(base + "ui/static/../../dev.py").status_code == 404


def test_the_deployed_api_does_not_serve_the_page(stack):
    """The ingest function itself answers / with a 404: only `relay dev` and `relay ui` serve the page."""
    from relay_tools.apigw import http_api_event
    from relay_tools.functions import ingest_handler

    assert Debugger.serves("/") and not Debugger.serves("/v1/events")
    response = ingest_handler()(http_api_event("GET", "/", {}, b""), FakeLambdaContext())
    assert response["statusCode"] == 404


def test_relay_ui_serves_the_same_page_on_its_own_port(stack):
    """`relay ui` (here with --config: the local stack; --stack NAME reads a deployed one's Outputs)."""
    import signal
    import subprocess
    import sys

    post(stack, [now_event("web-2003")])
    command = [sys.executable, "-m", "relay_tools.cli", "ui", "--config", stack.config_path, "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("debugger: http://127.0.0.1:"), first + proc.stderr.read()
        url = first.split()[1]
        page = httpx.get(url)
        assert page.status_code == 200 and "S2S Relay debugger" in page.text
        token = page.text.split('name="relay-token" content="', 1)[1].split('"', 1)[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = httpx.get(url + "ui/api/events", headers={"X-Relay-UI": token}).json()["events"]
            if any(e["event_id"] == "web-2003" for e in events):
                break
            time.sleep(0.5)
        assert any(e["event_id"] == "web-2003" for e in events)
        assert httpx.get(url + "ui/static/app.js").headers["content-type"].startswith("text/javascript")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_purge_through_the_page_api_empties_that_dlq_only(stack):
    base = stack.debugger_url
    token = httpx.get(base).text.split('name="relay-token" content="', 1)[1].split('"', 1)[0]
    headers = {"X-Relay-UI": token}
    sqs = stack.clients["sqs"]
    for logical in ("AdRollDeadLetterQueue", "AppsFlyerDeadLetterQueue"):
        sqs.send_message(QueueUrl=stack.stack.physical[logical], MessageBody='{"event_id": "left-over"}')
    assert httpx.get(base + "ui/api/dlq", headers=headers).json()["adroll"]["count"] == 1
    answer = httpx.post(base + "ui/api/dlq/adroll/purge", headers=headers, content=b"{}")
    assert answer.status_code == 200 and answer.json() == {"purged": True}
    dlq = httpx.get(base + "ui/api/dlq", headers=headers).json()
    assert dlq["adroll"]["count"] == 0 and dlq["appsflyer"]["count"] == 1
    assert dlq["appsflyer"]["letters"][0]["event_id"] == "left-over"
    assert httpx.post(base + "ui/api/dlq/nobody/purge", headers=headers).status_code == 404
    assert httpx.post(base + "ui/api/dlq/adroll/redrive", headers=headers, content=b"{not json").status_code == 400


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    """The local stack of relay.connections.example.toml: sources eu and us, a connection eu and us per vendor."""
    folder = tmp_path_factory.mktemp("ui-regions")
    path = local_config(folder, "ui-regions", example="relay.connections.example.toml")
    local = LocalStack(load_config(path), log=lambda line: None).start()
    yield local
    local.stop()


def post_as(stack: LocalStack, source: str, events: list[dict]) -> None:
    body = json.dumps({"events": events}).encode()
    secret = stack.config.source(source).secrets[0].get_secret_value()
    headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(body, secret), "X-Relay-Source": source}
    response = httpx.post(stack.ingest_url, content=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text


def test_the_page_shows_each_events_source_and_filters_by_connection(regions, browser):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(regions.debugger_url)
    expect(page.locator("#status")).to_contain_text("updated", timeout=WAIT_MS)
    post_as(regions, "eu", [now_event("order-1")])
    post_as(regions, "us", [now_event("order-1"), now_event("order-2")])  # the same id: another source's event
    rows = page.locator('#events tbody tr[data-event-id="order-1"]')
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    eu = page.locator('tr[data-event-id="order-1"][data-source="eu"]')
    expect(eu.locator("td.source")).to_have_text("eu")
    expect(eu.locator('td[data-vendor="applovin"] [data-connection="applovin.eu"] .badge')).to_have_text(
        "delivered", timeout=WAIT_MS
    )
    expect(eu.locator('[data-connection^="applovin.us"]')).to_have_count(0)
    # the connection filter: us-pixel's events only
    expect(page.locator('#connection option[value="applovin.us"]')).to_have_count(1, timeout=WAIT_MS)
    page.select_option("#connection", "applovin.us")
    expect(page.locator("#events tbody tr")).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator('#events tbody tr[data-source="eu"]')).to_have_count(0)
    page.select_option("#connection", "")
    # the source filter: eu's events only
    expect(page.locator('#source option[value="eu"]')).to_have_count(1, timeout=WAIT_MS)
    page.select_option("#source", "eu")
    expect(page.locator("#events tbody tr")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#events tbody tr")).to_have_attribute("data-source", "eu")
    page.select_option("#source", "")
    # one event of one source opens to that source's journey
    page.locator('tr[data-event-id="order-1"][data-source="us"]').click()
    expect(page.locator("#detail-head")).to_contain_text("from source us", timeout=WAIT_MS)
    expect(page.locator('.vendor-part[data-vendor="applovin.us"] h3 .badge')).to_have_text("delivered")
    expect(page.locator('.vendor-part[data-vendor="applovin.eu"]')).to_have_count(0)
    page.close()

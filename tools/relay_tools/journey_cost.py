"""What the events' journeys cost in DynamoDB write units (relay.journey), measured on journeys built by the
relay's own code: the sample events mapped by each vendor's adapter with the example configuration, each
event with its own id, identifiers and value (so that compression is not flattered by repeated hashes).

An item is billed one write unit per KB (its key and attribute names included), and its copy in the
`journeys` index (keys only) one more."""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import httpx

from relay.delivery.forwarding import Forwarder
from relay.delivery.outcomes import Outcome
from relay.journey import JourneyTable
from relay.journey.record import ingest_journey, invocation_journey
from relay.models.event import parse_event
from relay.queued.routing import Router

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = {"applovin": "web_purchase.json", "adroll": "web_purchase.json", "appsflyer": "ios_app_purchase.json"}
ITEM_OVERHEAD_BYTES = 160  # the key, status, vendor, index keys, expiration and attribute names of an item
INDEX_UNITS = 1  # the item's copy in the journeys index: keys only, under 1 KB
SETTLE_RECORD_BYTES = 200  # the ingest's batch record without a journey (key, status, counts, expiration)
VENDOR_ANSWER = '{"status":"ok"}'
FIXED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the events' time, so that the figures do not change
FIXED_NOW = datetime.fromtimestamp(FIXED_MS / 1000 + 60, UTC)


def raw_events(sample: str, n: int, tag: str = "order", last_ms: int = FIXED_MS) -> list[dict]:
    """`n` events like the sample, each with its own id, value and identifiers (so that compression is not
    flattered by repeated hashes), a second apart up to `last_ms`."""
    data = json.loads((ROOT / "events" / "samples" / sample).read_text())
    events = []
    for i in range(n):
        one = json.loads(json.dumps(data))
        one["event_id"] = f"{tag}-{i:07d}"
        one["value"] = f"{10 + i * 1.37:.2f}"
        user = one.setdefault("user", {})
        user["email"] = f"customer{i}@example.com"
        if "phone" in user:
            user["phone"] = f"+1650555{i:04d}"
        if "ip" in user:
            user["ip"] = f"203.0.{i % 250}.{i % 200 + 1}"
        one["timestamp"] = last_ms - i * 1000
        events.append(one)
    return events


def _events(sample: str, n: int) -> list:
    # at a fixed time: the same figures on every run
    return [parse_event(one, now=FIXED_NOW, max_event_age_days=36500) for one in raw_events(sample, n)]


@functools.cache
def _router() -> Router:
    from relay_tools.config_file import load_config

    return Router(load_config(ROOT / "relay.example.toml"))


def _units(blob_bytes: int) -> int:
    return math.ceil((blob_bytes + ITEM_OVERHEAD_BYTES) / 1024) + INDEX_UNITS


@functools.cache
def vendor_journey_units(vendor: str, events: int) -> int:
    """Write units of one vendor-function invocation's journey item for `events` delivered events: the
    relay's own Forwarder delivers them to a vendor answering 200 (httpx.MockTransport), one request at a
    time and at a fixed clock (the same item on every run), and its requests make the item."""
    forwarder = Forwarder(
        vendor,
        _router().config,
        httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, text=VENDOR_ANSWER))),
        max_workers=1,
        clock=lambda: 0.0,
        wall_clock=lambda: 0.0,
    )
    try:
        results = forwarder.deliver({f"m{i}": e for i, e in enumerate(_events(SAMPLES[vendor], events))}, _ample)
    finally:
        forwarder.close()
    assert all(d.outcome == Outcome.FORWARDED for d in results.values()), results
    data = invocation_journey(vendor, 0.0, forwarder.stats, forwarder.last[1], results)
    return _units(len(JourneyTable("t").item(vendor, "0" * 32, data)["data"]["B"]))


def _ample() -> int:
    return 60_000  # ms left: every request may start


@functools.cache
def ingest_journey_units(events: int) -> int:
    """Write units one ingest request's journey adds for `events` queued events: it rides on the request's
    batch record (relay.aws.ledger.settle), so what it adds to that item, and its copy in the index."""
    router = _router()
    entries, names = [], {}
    for e in _events(SAMPLES["applovin"], events):
        outcomes = router.route(e)
        entries.append({"event_id": e.event_id, "destinations": Router.destinations(outcomes)})
        names[e.event_id] = e.name
    data = ingest_journey(0.0, {"request_id": "x" * 36, "source_ip": "198.51.100.7"}, entries, {}, names)
    blob = len(JourneyTable("t").attributes("0" * 32, data)["data"]["B"])
    alone = math.ceil(SETTLE_RECORD_BYTES / 1024)
    return math.ceil((SETTLE_RECORD_BYTES + ITEM_OVERHEAD_BYTES + blob) / 1024) - alone + INDEX_UNITS

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

from relay.journey import JourneyTable
from relay.journey.record import Call, event_outcome, ingest_journey, vendor_journey
from relay.models.event import parse_event
from relay.queued.routing import Router
from relay.vendors import Mapped

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = {"applovin": "web_purchase.json", "adroll": "web_purchase.json", "appsflyer": "ios_app_purchase.json"}
ITEM_OVERHEAD_BYTES = 160  # the key, status, vendor, index keys, expiration and attribute names of an item
INDEX_UNITS = 1  # the item's copy in the journeys index: keys only, under 1 KB
SETTLE_RECORD_BYTES = 200  # the ingest's batch record without a journey (key, status, counts, expiration)
VENDOR_ANSWER = '{"status":"ok"}'
FIXED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the events' time, so that the figures do not change
FIXED_NOW = datetime.fromtimestamp(FIXED_MS / 1000 + 60, UTC)


def _events(sample: str, n: int) -> list:
    data = json.loads((ROOT / "events" / "samples" / sample).read_text())
    events = []
    for i in range(n):
        one = json.loads(json.dumps(data))
        one["event_id"] = f"order-{i:07d}"
        one["value"] = f"{10 + i * 1.37:.2f}"
        user = one.setdefault("user", {})
        user["email"] = f"customer{i}@example.com"
        if "phone" in user:
            user["phone"] = f"+1650555{i:04d}"
        if "ip" in user:
            user["ip"] = f"203.0.{i % 250}.{i % 200 + 1}"
        one["timestamp"] = FIXED_MS - i * 1000  # fixed: the same figures on every run
        events.append(parse_event(one, now=FIXED_NOW, max_event_age_days=36500))
    return events


@functools.cache
def _router() -> Router:
    from relay_tools.config_file import load_config

    return Router(load_config(ROOT / "relay.example.toml"))


def _units(blob_bytes: int) -> int:
    return math.ceil((blob_bytes + ITEM_OVERHEAD_BYTES) / 1024) + INDEX_UNITS


@functools.cache
def vendor_journey_units(vendor: str, events: int) -> int:
    """Write units of one vendor-function invocation's journey item for `events` delivered events."""
    router = _router()
    adapter = router.adapters[vendor]
    parsed = _events(SAMPLES[vendor], events)
    mapped = [(f"m{i}", e, router.route_one(e, vendor)) for i, e in enumerate(parsed)]
    by_target: dict[str, list[tuple[str, Mapped]]] = {}
    for key, _, outcome in mapped:
        assert isinstance(outcome, Mapped), outcome
        by_target.setdefault(outcome.target, []).append((key, outcome))
    calls = []
    for items in by_target.values():
        for start in range(0, len(items), adapter.max_batch):
            chunk = items[start : start + adapter.max_batch]
            request = adapter.build_request(chunk[0][1].target, [o.payload for _, o in chunk])
            calls.append(Call(0.0, 1, 200, 50.0, VENDOR_ANSWER, request, tuple(k for k, _ in chunk)))
    from relay.delivery.outcomes import Delivery, Outcome

    ids = {key: e.event_id for key, e, _ in mapped}
    delivered = event_outcome(Delivery(True, Outcome.FORWARDED, status=200), False, None)
    outcomes = dict.fromkeys(ids.values(), delivered)
    data = vendor_journey(vendor, 0.0, calls, outcomes, ids, {"forwarded": events, "identifiers": {}})
    return _units(len(JourneyTable("t").item(vendor, "0" * 32, data)["data"]["B"]))


@functools.cache
def ingest_journey_units(events: int) -> int:
    """Write units one ingest request's journey adds for `events` queued events: it rides on the request's
    batch record (relay.aws.ledger.settle), so what it adds to that item, and its copy in the index."""
    router = _router()
    entries = []
    for e in _events(SAMPLES["applovin"], events):
        outcomes = router.route(e)
        entries.append({"event_id": e.event_id, "destinations": Router.destinations(outcomes)})
    data = ingest_journey(0.0, {"request_id": "x" * 36, "source_ip": "198.51.100.7"}, entries, {})
    blob = len(JourneyTable("t").attributes("0" * 32, data)["data"]["B"])
    alone = math.ceil(SETTLE_RECORD_BYTES / 1024)
    return math.ceil((SETTLE_RECORD_BYTES + ITEM_OVERHEAD_BYTES + blob) / 1024) - alone + INDEX_UNITS

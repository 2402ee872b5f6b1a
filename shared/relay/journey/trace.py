"""An event's journey from its event_id: `relay trace`, GET /v1/events/{event_id} and the debugger page.

The ingest's claim (``s2s-relay.ingest#<digest>``) names the request's batch, whose record carries its
journey; each vendor's claim of the event, or of its bundle, names the batch that holds it and the batches
before (``trail``); a dead-lettered event's record names the batches that tried it. One GetItem per claim
and one BatchGetItem for every journey item they name.

Event ids are scoped per source (docs/connections.md): the records read are those of one source's event, the
namespaces of relay.models.names.ledger_name.

The answer (`trace_event`)::

    {"event_id", "source", "accepted_at", "request_id",
     "vendors": {"<connection>": {"outcome", "reason"?, "errors"?, "next_attempt_at"?,
                 "attempts": [{"at", "attempt", "status", "latency_ms", "response"}], "request"}}}

`refused`: the requests that named the event and were refused (relay.journey.refusals), newest first, each
``{"request_id", "at", "status", "reason", "error", "rejected"?, "signature"?, ...}``; an event the relay only
refused is answered with them alone (no `accepted_at`, no `vendors`).

`vendors` is keyed by connection id (``applovin``: the vendor's default connection; ``applovin.eu``).

`outcome` is one of delivered, skipped, invalid, dead_lettered, pending; `request` is the last request that
carried the event (method, URL, headers with secrets masked, the body as sent with IP addresses truncated).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from relay.aws.ledger import (
    CLAIMED,
    DEAD_LETTERED_STATE,
    INGEST,
    QUEUED_FOR,
    REQUEUED,
    batch_key,
    bundle_key,
    claim_key,
)
from relay.journey import JourneyTable, iso, journey_key
from relay.journey.erasure import FORGOTTEN
from relay.journey.record import DEAD_LETTERED, DELIVERED, INVALID, PENDING, SKIPPED
from relay.journey.refusals import RefusalLog
from relay.models.names import DEFAULT, VENDORS, ledger_name

QUEUED = "queued for this vendor; no invocation has received it yet"
IN_FLIGHT = "an invocation is sending it now"


def _get(table: JourneyTable, key: str) -> dict[str, Any] | None:
    return table.client.get_item(TableName=table.table_name, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")


def batches_of(*items: dict[str, Any] | None) -> list[str]:
    """The batches named by claims and dead-letter records: each's trail, then its own batch."""
    out: list[str] = []
    for item in items:
        if not item:
            continue
        out += [v["S"] for v in item.get("trail", {}).get("L", [])]
        if "batch" in item:
            out.append(item["batch"]["S"])
    return list(dict.fromkeys(out))


def trace_event(
    table: JourneyTable, event_id: str, source: str = DEFAULT, connections: Iterable[str] = VENDORS
) -> dict[str, Any] | None:
    """The journey of `source`'s event `event_id`; None when the relay holds no record of it (never accepted,
    older than the ledger's horizon, or erased by `relay forget`). `connections`: where to look when the
    ingest's records are gone (the configuration's connections)."""
    ingest_name = ledger_name(INGEST, source)
    ingest = _get(table, claim_key(ingest_name, event_id))
    if ingest and FORGOTTEN in ingest:  # erased (`relay forget`): the relay tells nothing of it
        return None
    accepted: dict[str, Any] = {}
    head: dict[str, Any] = {}
    if ingest and "batch" in ingest:
        key = batch_key(ingest_name, ingest["batch"]["S"])  # the request's batch record carries its journey
        journey = table.get([key]).get(key)
        if journey:
            accepted = journey["events"].get(event_id, {})
            head = {k: journey.get(k) for k in ("accepted_at", "request_id")}
    queued_for = set(ingest[QUEUED_FOR]["S"].split(",")) if ingest and QUEUED_FOR in ingest else set()
    named = queued_for | set(accepted.get("destinations", [])) | set(accepted.get("skipped", {}))
    named |= set(accepted.get("invalid", {}))
    wanted = sorted(named) if ingest else list(dict.fromkeys(connections))
    claims_of = {c: _vendor_claims(table, ledger_name(c, source), event_id, accepted.get("bundle")) for c in wanted}
    refused = RefusalLog(table).of_event(event_id, source)
    refused = [{k: v for k, v in r.items() if k not in ("written_at", "event_ids")} for r in refused]
    if not ingest and not any(any(claims) for claims in claims_of.values()):
        empty = {"accepted_at": None, "request_id": None, "vendors": {}, "refused": refused}
        return {"event_id": event_id, "source": source, **empty} if refused else None
    keys = [journey_key(ledger_name(c, source), b) for c, claims in claims_of.items() for b in batches_of(*claims)]
    journeys = table.get(keys) if keys else {}
    out = {
        "event_id": event_id,
        "source": source,
        "accepted_at": head.get("accepted_at"),
        "request_id": head.get("request_id"),
        "vendors": {},
        "refused": refused,
    }
    for connection, claims in claims_of.items():
        if not ingest and not any(claims):
            continue
        namespace = ledger_name(connection, source)
        runs = {b: journeys[k] for b in batches_of(*claims) if (k := journey_key(namespace, b)) in journeys}
        requeued = (ingest or {}).get(f"{REQUEUED}{connection}")
        at = float(requeued["N"]) if requeued else None
        trace = vendor_trace(table, event_id, (connection, namespace), accepted, claims, runs, at)
        out["vendors"][connection] = trace
    return out


def _vendor_claims(
    table: JourneyTable, namespace: str, event_id: str, bundle: str | None
) -> tuple[dict[str, Any] | None, ...]:
    """A connection's record of the event (a claim or a dead letter), and of its bundle's claim."""
    own = _get(table, claim_key(namespace, event_id))
    shared = _get(table, bundle_key(namespace, bundle)) if bundle else None
    return own, shared


def vendor_trace(
    table: JourneyTable,
    event_id: str,
    where: tuple[str, str],
    accepted: dict[str, Any],
    claims: tuple[dict[str, Any] | None, ...],
    runs: dict[str, dict[str, Any]],
    requeued_at: float | None = None,
) -> dict[str, Any]:
    """One vendor's part of the journey: its outcome from the latest invocation that said one, every request
    that carried the event, and the last of them. `runs`: the journey items of the batches that held its
    claim, by batch; when the batch that holds it now left none (in flight, or its journey not written), the
    ledger says how it stands. `requeued_at`: when a fixed resend queued the event for a vendor that had found
    it invalid (its journey goes on from there, with the errors found before). `where`: the connection, and
    the ledger namespace of its claims of this source's events."""
    vendor, namespace = where
    fixed = {}
    if requeued_at is not None:
        fixed = {"requeued": {"at": iso(requeued_at), "earlier_errors": accepted.get("invalid", {}).get(vendor, [])}}
    elif vendor in accepted.get("skipped", {}):
        return {"outcome": SKIPPED, "reason": accepted["skipped"][vendor], "attempts": [], "request": None}
    elif vendor in accepted.get("invalid", {}):
        return {"outcome": INVALID, "errors": accepted["invalid"][vendor], "attempts": [], "request": None}
    attempts, request = [], None
    latest: dict[str, Any] | None = None
    for run in sorted(runs.values(), key=lambda r: r["written_at"]):
        for call in run.get("requests", []):
            if event_id in call.get("events", []):
                attempts.append({k: call[k] for k in ("at", "attempt", "status", "latency_ms", "response")})
                request = {k: call[k] for k in ("method", "url", "headers")} | {"body": _body(call["body"])}
        if event_id in run.get("events", {}):
            latest = run["events"][event_id]
    own = claims[0] or {}
    holder = next((c for c in claims if c and c.get("status", {}).get("S") == CLAIMED), None)
    if latest is None or (holder is not None and holder["batch"]["S"] not in runs):
        latest = _from_ledger(table, namespace, event_id, holder)
    if own.get("status", {}).get("S") == DEAD_LETTERED_STATE and latest.get("outcome") != DEAD_LETTERED:
        latest = {"outcome": DEAD_LETTERED, "reason": own.get("why", {}).get("S", "")}
    return {**latest, **fixed, "attempts": attempts, "request": request}


def _body(text: Any) -> Any:
    """A request body as the journey keeps it (its serialized text) as JSON again, when it is JSON."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _from_ledger(table: JourneyTable, namespace: str, event_id: str, holder: dict[str, Any] | None) -> dict[str, Any]:
    """The outcome the ledger alone tells (no journey item names it: the journey is off, or was not written):
    the batch record of the claim's batch (`holder`) lists what it did not deliver."""
    if holder is None:
        return {"outcome": PENDING, "reason": QUEUED}
    record = _get(table, batch_key(namespace, holder["batch"]["S"]))
    if record is None:
        return {"outcome": PENDING, "reason": IN_FLIGHT}
    listed = {name: {v["S"] for v in record.get(name, {}).get("L", [])} for name in ("failed", "moved")}
    if event_id in listed["moved"]:
        return {"outcome": DEAD_LETTERED, "reason": "moved to the dead-letter queue"}
    if event_id in listed["failed"]:
        return {"outcome": PENDING, "reason": "not delivered yet; kept for a retry"}
    return {"outcome": DELIVERED, "reason": "the ledger records it delivered (no journey item was kept)"}

"""The ArchiveFunction's logic: Amazon Data Firehose's data transformation of the ingest's archive messages
(relay.archive.outgoing) into the archive's lines, one JSON object per event (docs/archive.md, "Schema"):

    {"v": 1, "event_id": "o-1001", "name": "purchase", "accepted_at": "2026-12-07T06:00:00.123Z",
     "timestamp": "2026-12-07T05:59:58.000Z", "value": 113.56, "currency": "USD",
     "connections": ["applovin", "adroll.eu"], "bundle": "3f...", "user_id": "u-1",
     "email_sha256": "…", "phone_sha256": "…",
     "event": "{…the event's JSON without its personal fields…}", "sealed": {"key": "…", "data": "…"}}

Each record's lines go under its source's and day's partition (Firehose's dynamic partitioning, keys from this
function). A record that is not an archive message (the ingest publishes every one: something else published
with the `archive` attribute) is dropped, counted (ArchiveRecordsFailed) and named in the log, never its
content: handed back as ProcessingFailed, Firehose would keep it as received, personal fields in clear.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pydantic_core

from relay.archive import FORMAT, SEALED_FIELDS
from relay.archive.sealing import Sealer
from relay.models import pii
from relay.models.fields import _timestamp


class NotAnArchiveMessage(ValueError):
    """A Firehose record that does not hold an archive message; names the field."""


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transform(event: Mapping[str, Any], sealer: Sealer) -> dict[str, Any]:
    """A Firehose transformation event in, its answer out (one answer per record, in order)."""
    from relay.observability import MetricUnit, logger, metrics

    out = []
    archived = failed = 0
    for record in event.get("records", []):
        try:
            data, keys = archive_record(base64.b64decode(record["data"]), sealer)
        except (NotAnArchiveMessage, ValueError) as exc:
            logger.error("not an archive message", extra={"record": record.get("recordId"), "error": str(exc)})
            out.append({"recordId": record["recordId"], "result": "Dropped", "data": record["data"]})
            failed += 1
            continue
        archived += data.count(b"\n")
        encoded = base64.b64encode(data).decode()
        partition = {"partitionKeys": keys}
        out.append({"recordId": record["recordId"], "result": "Ok", "data": encoded, "metadata": partition})
    metrics.add_metric("EventsArchived", MetricUnit.Count, archived)
    if failed:
        metrics.add_metric("ArchiveRecordsFailed", MetricUnit.Count, failed)
    return {"records": out}


def archive_record(raw: bytes, sealer: Sealer) -> tuple[bytes, dict[str, str]]:
    """One archive message (or its SNS envelope) as the archive's lines, and its partition keys."""
    message = pydantic_core.from_json(raw)
    if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
        message = pydantic_core.from_json(message["Message"])  # an SNS envelope: raw message delivery off
    if not isinstance(message, dict) or message.get("archive") != FORMAT:
        raise NotAnArchiveMessage(f"archive: must be {FORMAT}")
    source, at, events = message.get("source"), message.get("accepted_at"), message.get("events")
    if not isinstance(source, str) or not isinstance(at, int | float) or not isinstance(events, list):
        raise NotAnArchiveMessage("source, accepted_at, events: must be a string, a number and a list")
    accepted = datetime.fromtimestamp(at, UTC)
    lines = [pydantic_core.to_json(archive_line(one, accepted, sealer)) + b"\n" for one in events]
    return b"".join(lines), {"source": source, "dt": accepted.strftime("%Y-%m-%d")}


def archive_line(one: Mapping[str, Any], accepted: datetime, sealer: Sealer) -> dict[str, Any]:
    """One event's line: its personal fields sealed, its email and phone as SHA-256 digests."""
    event = one.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
        raise NotAnArchiveMessage("events[].event.event_id: must be a string")
    user = dict(event.get("user") or {})
    personal = {k: user.pop(k) for k in SEALED_FIELDS if user.get(k) is not None}
    kept = {**event, "user": user} if user else {k: v for k, v in event.items() if k != "user"}
    line: dict[str, Any] = {
        "v": FORMAT,
        "event_id": event["event_id"],
        "name": event.get("name"),
        "accepted_at": iso(accepted),
        "timestamp": iso(_timestamp(event["timestamp"])) if event.get("timestamp") is not None else None,
        "value": _number(event.get("value")),
        "currency": event.get("currency"),
        "connections": list(one.get("connections") or []),
        "bundle": one.get("bundle"),
        "user_id": user.get("id"),
        "email_sha256": pii.hash_email(personal["email"]) if "email" in personal else None,
        "phone_sha256": _phone_digest(personal.get("phone"), user.get("country")),
        "event": pydantic_core.to_json(kept).decode("utf-8"),
    }
    if personal:
        line["sealed"] = sealer.seal(personal, event["event_id"])
    return {k: v for k, v in line.items() if v is not None}


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _phone_digest(phone: Any, country: Any) -> str | None:
    """The phone's SHA-256 of its digits, country code included (as AppLovin and AppsFlyer take it; a phone sent
    already hashed: that digest); what `relay forget --phone-sha256` finds."""
    if not isinstance(phone, str):
        return None
    try:
        return pii.hash_phone_digits(phone, country if isinstance(country, str) else None)
    except pii.PhoneError:
        return None

"""Requests the ingest refused (docs/troubleshooting.md, "Refused requests"): `relay refused`, `relay trace`,
GET /v1/requests/{request_id} and the debugger page read what this module writes.

Items of the idempotency table, beside the journeys, read through its ``journeys`` index (hash key
``journey_minute``, range key ``at``):

- ``s2s-relay.refused#<request_id>``: the refusal (``data``, zlib-compressed JSON: `Refusal.data`), under the
  index key ``refused#<hour>`` (UTC, ``YYYY-MM-DDTHH``): `recent` reads an hour's refusals with one Query;
- ``s2s-relay.refused#<request_id>#<n>``: one per event id the request's body named, under the index key
  ``refused@<source>#<digest of the event id>``: `of_event` reads an event's refusals with one Query.

A refusal holds no body and no value the client sent: its status, reason, the message the client got, the
field errors (names and rules, never values), the source the request named, the event ids it could read and,
for a signature, the diagnosis. Items live `KEEP_SECONDS` (7 days, DynamoDB's TTL on ``expiration``).

Bounded under a flood: each container writes at most `RATE_ITEMS` items a second (a burst of `BURST_ITEMS`),
a refusal and its event pointers together or not at all; the refusals left out are counted in the next
refusal written (``not_recorded``) and in the metric ``RefusalsNotRecorded``. The metric ``RequestsRefused``
(dimension ``reason``) counts every refusal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.aws.ledger import KEY_PREFIX
from relay.journey import AT, INDEX, MINUTE, JourneyTable, encode, iso
from relay.models.event import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST

KEEP_SECONDS = 7 * 86_400
RATE_ITEMS = 10.0  # items written a second per container under a flood
BURST_ITEMS = 200.0  # what a quiet container may write at once: two refusals of 100 events
MAX_EVENT_IDS = 100  # event ids kept (and pointed to) per refusal: a request holds at most 100 events
REFUSED = "REFUSED"  # the items' status
UNKNOWN_SOURCE_MAX = 64  # characters of a source name no source of the relay has, as kept

# Why a request was refused: a refusal's `reason` and the metric's dimension, with its HTTP status and what it
# means (docs/ingest-api.md renders this table)
REASONS: dict[str, tuple[int, str]] = {
    "body_too_large": (413, f"the body is over {MAX_BODY_BYTES:,} bytes"),
    "unknown_source": (401, "`X-Relay-Source` names no source of this relay"),
    "signature_missing": (401, "no `X-Relay-Signature` header"),
    "signature_malformed": (401, "the header is not `t=<unix seconds>,v1=<64 lower-case hex>`"),
    "signature_milliseconds": (401, "`t` is in milliseconds; the relay takes unix seconds"),
    "signature_stale": (401, "`t` is outside the tolerance (`skew_seconds`: how far from the relay's clock)"),
    "signature_mismatch": (401, "no active signing secret of the source made this signature over these bytes"),
    "signature_replayed": (401, "the same signature over the same body was used before (a replay; ReplayGuard=true)"),
    "content_type": (415, "`Content-Type` is not `application/json` (UTF-8)"),
    "invalid_json": (400, "not JSON the relay reads (duplicate keys, NaN, too deep, a huge integer, not UTF-8)"),
    "invalid_body": (400, 'not `{"events": [...]}`, or no events'),
    "too_many_events": (413, f"more than {MAX_EVENTS_PER_REQUEST} events"),
    "invalid_events": (400, "no event valid: each one's field errors are kept (`rejected`)"),
    "invalid_event_id": (400, "a GET's event id is not one (empty, too long, not printable)"),
    "invalid_request_id": (400, "a GET's request id is not one"),
}


def record_key(request_id: str) -> str:
    return f"{KEY_PREFIX}.refused#{request_id}"


def hour_key(at: float) -> str:
    return f"refused#{datetime.fromtimestamp(at, UTC):%Y-%m-%dT%H}"


def event_key(source: str, event_id: str) -> str:
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"refused@{source}#{digest}"


@dataclass(slots=True)
class Refusal:
    """One refused request, as kept (nothing the client sent but its event ids and the source's name)."""

    request_id: str
    at: float
    status: int
    reason: str
    error: str  # the message the client got
    source: str
    method: str = "POST"
    source_known: bool = True
    event_ids: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {index, event_id, errors: [{field, message}]}
    signature: dict[str, Any] | None = None  # {"diagnosis", "skew_seconds"?}
    not_recorded: int = 0  # refusals this container left out (the rate) since the one before this

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "at": iso(self.at),
            "method": self.method,
            "status": self.status,
            "reason": self.reason,
            "error": self.error,
            "source": self.source,
            "source_known": self.source_known,
            "event_ids": self.event_ids[:MAX_EVENT_IDS],
        }
        if self.rejected:
            out["rejected"] = self.rejected
        if self.signature:
            out["signature"] = self.signature
        if self.not_recorded:
            out["not_recorded"] = self.not_recorded
        return out


class Budget:
    """A token bucket of item writes: `RATE_ITEMS` a second, at most `BURST_ITEMS` at once."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, rate: float = RATE_ITEMS, burst: float = BURST_ITEMS
    ):
        self.clock, self.rate, self.burst = clock, rate, burst
        self.tokens, self.last = burst, clock()

    def available(self) -> float:
        """The items that may be written now."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return self.tokens

    def take(self, items: int) -> bool:
        if items > self.available():
            return False
        self.tokens -= items
        return True


class RefusalLog:
    """Writes refusals within the container's budget and reads them back (`recent`, `of_event`, `get`)."""

    def __init__(self, table: JourneyTable, budget: Budget | None = None):
        self.table = table
        self.budget = budget or Budget()
        self.left_out = 0  # refusals not written since the last one that was

    def items(self, refusal: Refusal) -> list[dict[str, Any]]:
        now = refusal.at
        common = {"status": {"S": REFUSED}, AT: {"N": str(int(now * 1000))}}
        common["expiration"] = {"N": str(int(now) + KEEP_SECONDS)}
        key = record_key(refusal.request_id)
        out = [{"id": {"S": key}, MINUTE: {"S": hour_key(now)}, "data": {"B": encode(refusal.data())}, **common}]
        for n, event_id in enumerate(dict.fromkeys(refusal.event_ids[:MAX_EVENT_IDS])):
            pointer = {"id": {"S": f"{key}#{n}"}, MINUTE: {"S": event_key(refusal.source, event_id)}}
            out.append(pointer | common)
        return out

    def leave_out(self) -> bool:
        """A refusal not written (the budget is spent): the next one written says so. Returns False."""
        self.left_out += 1
        return False

    def write(self, refusal: Refusal) -> bool:
        """Write `refusal` if the budget allows; False when left out or DynamoDB refused (best effort: the
        client's answer never waits on it beyond these calls)."""
        refusal.not_recorded = self.left_out
        items = self.items(refusal)
        if not self.budget.take(len(items)):
            return self.leave_out()
        try:
            for start in range(0, len(items), 25):
                requests = {self.table.table_name: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
                for _ in range(2):  # what DynamoDB left unprocessed (throttling) is tried once more
                    requests = self.table.client.batch_write_item(RequestItems=requests).get("UnprocessedItems")
                    if not requests:
                        break
        except Exception:  # noqa: BLE001 - a trace for people: the refusal's answer stands without it
            return self.leave_out()
        self.left_out = 0
        return True

    def _query(self, hash_key: str, since_ms: int = 0) -> list[tuple[int, dict[str, Any]]]:
        found, start = [], None
        while True:
            response = self.table.client.query(
                TableName=self.table.table_name,
                IndexName=INDEX,
                KeyConditionExpression="#m = :m AND #at >= :since",
                ExpressionAttributeNames={"#m": MINUTE, "#at": AT},
                ExpressionAttributeValues={":m": {"S": hash_key}, ":since": {"N": str(since_ms)}},
                **({"ExclusiveStartKey": start} if start else {}),
            )
            found += [(int(i[AT]["N"]), i) for i in response.get("Items", [])]
            start = response.get("LastEvaluatedKey")
            if not start:
                return found

    def _records(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """The refusals under `keys` that are kept (DynamoDB's TTL deletes expired items within days, so an
        expired one is left out here), newest first."""
        unique = list(dict.fromkeys(keys))
        found = self.table.get(unique) if unique else {}
        oldest = (self.table.clock() - KEEP_SECONDS) * 1000
        kept = [found[k] for k in unique if k in found and found[k]["written_at"] >= oldest]
        return sorted(kept, key=lambda d: d["written_at"], reverse=True)

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The refusal of request `request_id`, when one is kept."""
        found = self._records([record_key(request_id)])
        return found[0] if found else None

    def of_event(self, event_id: str, source: str) -> list[dict[str, Any]]:
        """The kept refusals of requests that named `source`'s event `event_id`, newest first."""
        since = int((self.table.clock() - KEEP_SECONDS) * 1000)
        pointers = self._query(event_key(source, event_id), since)
        return self._records(item["id"]["S"].rsplit("#", 1)[0] for _, item in pointers)

    def recent(self, since: float, source: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The refusals written since `since` (unix seconds, at most 7 days back), newest first; `source`:
        only those of requests that named it."""
        now = self.table.clock()
        start = max(since, now - KEEP_SECONDS)
        hours, at = [], datetime.fromtimestamp(start, UTC).replace(minute=0, second=0, microsecond=0)
        while at.timestamp() <= now:
            hours.append(at.timestamp())
            at += timedelta(hours=1)
        keys: list[tuple[int, str]] = []
        for hour in reversed(hours):
            keys += [(t, i["id"]["S"]) for t, i in self._query(hour_key(hour), int(start * 1000))]
            if len(keys) >= limit and source is None:
                break
        out = self._records(key for _, key in sorted(keys, reverse=True))
        return [r for r in out if source is None or r.get("source") == source][:limit]

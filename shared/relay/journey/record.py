"""What the ingest and the vendor functions write of each event's journey (relay.journey)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from relay.delivery.outcomes import Delivery, Outcome
from relay.journey import MAX_RESPONSE_BYTES, iso, mask_ips_text, packed, truncate_ip
from relay.models.names import DEFAULT

if TYPE_CHECKING:
    from relay.vendors import VendorRequest

DELIVERED, SKIPPED, INVALID, DEAD_LETTERED, PENDING = "delivered", "skipped", "invalid", "dead_lettered", "pending"
# an event's outcome at a vendor, as `relay trace`, GET /v1/events/{event_id} and the debugger page say it
OUTCOMES = {
    DELIVERED: "the vendor answered 2xx to a request that carried it (`status`); never sent again",
    SKIPPED: "the relay does not send it to this vendor (`reason`: consent, configuration, the vendor's rules)",
    INVALID: "it breaks this vendor's rules (`errors`: field and rule); not queued for this vendor",
    DEAD_LETTERED: "in the vendor's DLQ (`reason`: the vendor refused it, or it kept failing for the retry window)",
    PENDING: "not delivered yet: queued, in flight, or waiting for a retry (`reason`, `next_attempt_at`)",
}


@dataclass(frozen=True, slots=True)
class Call:
    """One vendor request as made: when, which try of it, the vendor's answer, and the events it carried."""

    at: float  # seconds since the epoch
    attempt: int
    status: int | None  # None: no answer (a timeout, a connection error)
    latency_ms: float
    response: str
    request: VendorRequest
    keys: tuple[str, ...]  # the events' keys in the batch (QueuedEvent.key)
    body: str | None = None  # journey_body(request), when made while the vendor answered (else made here)

    def as_dict(self, event_ids: Mapping[str, str]) -> dict[str, Any]:
        """The request for the journey: the body as sent (its serialized text, IP addresses truncated),
        secret headers masked, and the event_ids it carried."""
        request = self.request
        return {
            "at": iso(self.at),
            "attempt": self.attempt,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "response": mask_ips_text(self.response[:MAX_RESPONSE_BYTES]),
            "method": request.method,
            "url": request.url,
            "headers": request.masked_headers(),
            "body": journey_body(request) if self.body is None else self.body,
            "events": [event_ids[k] for k in self.keys if k in event_ids],
        }


def journey_body(request: VendorRequest) -> str:
    """The body of a vendor request as a journey keeps it: its text, IP addresses truncated."""
    return mask_ips_text(request.content.decode("utf-8", "replace"))


def early_body(request: VendorRequest) -> str:
    """journey_body, made while the vendor answers, and compressed then when it is long (relay.journey.packed):
    what the invocation does for its journey once the answer is in is what the answer decides."""
    return packed(journey_body(request))


class Requests(Protocol):
    """What an invocation's journey reads of its sending (relay.delivery.sending.Stats)."""

    calls: list[Call]  # every vendor request made
    identifiers: Mapping[str, int]  # identifier kind -> forwarded events carrying it


def ingest_journey(
    at: float,
    origin: Mapping[str, str | None],
    entries: Iterable[Mapping[str, Any]],
    bundle_of: Mapping[str, str],
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An ingest request's journey: `origin` its request id and the caller's address, `entries` the
    accepted entries of the events it queued (their destinations, skipped and invalid reasons), `names` each
    event's name (the debugger page's column)."""
    names = names or {}
    source = origin.get("source_ip")
    events = {}
    for entry in entries:
        event_id = entry["event_id"]
        event = events[event_id] = {"destinations": list(entry.get("destinations", []))}
        for key in ("skipped", "invalid"):
            if key in entry:
                event[key] = entry[key]
        if event_id in bundle_of:
            event["bundle"] = bundle_of[event_id]
        if event_id in names:
            event["name"] = names[event_id]
    return {
        "kind": "ingest",
        "accepted_at": iso(at),
        "request_id": origin.get("request_id"),
        **({"source": origin["source"]} if origin.get("source") not in (None, DEFAULT) else {}),
        "source_ip": truncate_ip(source) if source else None,
        "events": events,
    }


def event_outcome(delivery: Delivery, moved: bool, next_attempt: float | None) -> dict[str, Any] | None:
    """One event's outcome at the vendor after an invocation; None when the invocation says nothing new
    (a duplicate: an earlier journey item has its outcome)."""
    if delivery.outcome == Outcome.DUPLICATE:
        return None
    if delivery.ok:
        if delivery.outcome == Outcome.SKIPPED:
            return {"outcome": SKIPPED, "reason": delivery.reason}
        return {"outcome": DELIVERED, "status": delivery.status}
    if moved:
        return {"outcome": DEAD_LETTERED, "reason": f"{delivery.outcome.value}: {delivery.reason}"}
    out: dict[str, Any] = {"outcome": PENDING, "reason": f"{delivery.outcome.value}: {delivery.reason}"}
    if next_attempt is not None:
        out["next_attempt_at"] = iso(next_attempt)
    return out


def invocation_journey(
    vendor: str,
    at: float,
    stats: Requests,
    claimed: Mapping[str, str],
    results: Mapping[str, Delivery],
    moved: Collection[str] = (),
    next_attempts: Mapping[str, float] | None = None,
    source: str = DEFAULT,
) -> dict[str, Any]:
    """A vendor-function invocation's journey (one lane's: `vendor` is its connection, `source` the source
    whose events it delivered): every request it made (`stats.calls`), each event it claimed
    (`claimed`: event key -> event_id) with its outcome (`moved`: the keys dead-lettered; `next_attempts`:
    when each key kept for a retry comes back), and the identifiers of what the vendor took (the match
    quality)."""
    next_attempts = next_attempts or {}
    outcomes = {}
    for key, event_id in claimed.items():
        outcome = event_outcome(results[key], key in moved, next_attempts.get(key))
        if outcome is not None:
            outcomes[event_id] = outcome
    forwarded = sum(results[key].outcome == Outcome.FORWARDED for key in claimed)
    return {
        "kind": "vendor",
        "vendor": vendor,
        **({"source": source} if source != DEFAULT else {}),
        "at": iso(at),
        "requests": [call.as_dict(claimed) for call in sorted(stats.calls, key=lambda c: c.at)],
        "events": outcomes,
        "match": {"forwarded": forwarded, "identifiers": dict(stats.identifiers)},
    }

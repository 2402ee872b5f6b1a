"""What travels from the ingest through SNS and SQS to the vendor functions (README "Queued message").

The ingest validates an event and maps it for every vendor anyway (to know its destinations); the message
it publishes carries those vendor payloads, so a vendor function sends what it reads without validating
and mapping the event a second time — which cost two thirds of its CPU per event — and the queues and
DLQs hold what each vendor is sent (emails and phones hashed), not the event as the client sent it:

    {"event_id": "o-1001", "name": "purchase",
     "payloads": {"applovin": {...}, "adroll": {...}},   # one per destination, exactly as mapped
     "targets": {"appsflyer": "id123456789"}}             # the request group, when a vendor has one

A message without "payloads" is a canonical event (what relays before this format queued, and what
`relay dlq redrive` may bring back from an old DLQ): vendor functions still validate and map those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core

from .model import MAX_EVENT_ID_LENGTH, Event, event_id_of
from .vendors import Mapped, Outcome


class QueuedMessageError(ValueError):
    """A message body that is neither a queued message nor a canonical event; names the field."""


@dataclass(frozen=True, slots=True)
class Queued:
    """One vendor's part of a queued message."""

    event_id: str
    mapped: Mapped


def queued_body(event: Event, outcomes: Mapping[str, Outcome]) -> str:
    """The message for `event`, carrying the payload of every vendor it was mapped for."""
    payloads: dict[str, Any] = {}
    targets: dict[str, str] = {}
    for vendor, outcome in outcomes.items():
        if isinstance(outcome, Mapped):
            payloads[vendor] = outcome.payload
            if outcome.target:
                targets[vendor] = outcome.target
    message: dict[str, Any] = {"event_id": event.event_id, "name": event.name, "payloads": payloads}
    if targets:
        message["targets"] = targets
    # pydantic-core's serializer: a quarter of json.dumps' time, and the same JSON values
    return pydantic_core.to_json(message).decode("utf-8")


def parse_queued(body: str | bytes, vendor: str) -> Queued | Event:
    """`vendor`'s part of a message body, or the canonical event of an older message. Raises
    QueuedMessageError (or pydantic's ValidationError for a canonical event) when it is neither."""
    try:
        message = pydantic_core.from_json(body or b"")
    except ValueError:
        raise QueuedMessageError("(body): is not JSON") from None
    if not isinstance(message, dict):
        raise QueuedMessageError("(body): must be a JSON object")
    if "payloads" not in message:
        return Event.model_validate(message)
    event_id = event_id_of(message)
    if event_id is None:
        raise QueuedMessageError(f"event_id: must be a string of 1 to {MAX_EVENT_ID_LENGTH} characters")
    payloads = message["payloads"]
    payload = payloads.get(vendor) if isinstance(payloads, dict) else None
    if payload is not None and not isinstance(payload, dict):
        raise QueuedMessageError(f"payloads.{vendor}: must be a JSON object")
    if payload is None:
        carried = ", ".join(sorted(payloads)) if isinstance(payloads, dict) else ""
        raise QueuedMessageError(f"payloads.{vendor}: missing; the message carries payloads for: {carried or 'none'}")
    targets = message.get("targets") or {}
    target = targets.get(vendor, "") if isinstance(targets, dict) else None
    if not isinstance(target, str):
        raise QueuedMessageError(f"targets.{vendor}: must be a string")
    return Queued(event_id, Mapped(payload, target))

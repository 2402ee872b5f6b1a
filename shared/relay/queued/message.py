"""What travels from the ingest through SNS and SQS to the vendor functions (docs/decisions/0005).

The ingest validates an event and maps it for every vendor anyway (to know its destinations); the message
it publishes carries those vendor payloads, so a vendor function sends what it reads without validating
and mapping the event a second time, and the queues and
DLQs hold what each vendor is sent (emails and phones hashed), not the event as the client sent it:

    {"event_id": "o-1001", "name": "purchase",
     "payloads": {"applovin": {...}, "adroll": {...}},   # one per destination, exactly as mapped
     "targets": {"appsflyer": "id123456789"}}             # the request group, when a vendor has one

A message without "payloads" is a canonical event (what relays before this format queued, and what
`relay dlq redrive` may bring back from an old DLQ): vendor functions still validate and map those.

The ingest puts up to EVENTS_PER_MESSAGE events of one request that go to the same vendors in one
message, a **bundle**: ``{"bundle": <id>, "events": [<message>, <message>, ...]}`` (SQS and SNS bill per message, so a
bundle of ten costs a tenth). A vendor function handles each event of a
bundle on its own: claims, outcome, dead letter (whose body is that event's own message).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import ValidationError

from relay.models.event import Event, event_id_of
from relay.models.fields import MAX_EVENT_ID_LENGTH
from relay.vendors import Mapped, MappingResult

# events per SNS message (bundle); the vendor functions' SQS BatchSize in template.yaml is sized so that an
# invocation carries at most 100 events (test_template checks it)
EVENTS_PER_MESSAGE = 10
BUNDLE_ID_LENGTH = 32
_BUNDLE_ID = re.compile(f"[0-9a-f]{{{BUNDLE_ID_LENGTH}}}")


class QueuedMessageError(ValueError):
    """A message body that is neither a queued message nor a canonical event; names the field."""


@dataclass(frozen=True, slots=True)
class Queued:
    """One vendor's part of a queued message."""

    event_id: str
    mapped: Mapped


def queued_body(event: Event, outcomes: Mapping[str, MappingResult]) -> str:
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


def bundle_id(event_ids: Sequence[str]) -> str:
    """A bundle's id: a digest of its events' ids, so the same events published again (an ingest that
    died after publishing, retried by its client) make the same bundle, which vendor functions know. The
    digest is taken over the ids as a JSON array, an encoding no two different lists of ids share (a
    separator could also appear inside an id)."""
    encoded = pydantic_core.to_json(list(event_ids))
    return hashlib.sha256(encoded).hexdigest()[:BUNDLE_ID_LENGTH]


def bundle_body(bundle: str, bodies: Sequence[str]) -> str:
    """One message carrying several events' messages (each made by queued_body)."""
    return '{"bundle":"' + bundle + '","events":[' + ",".join(bodies) + "]}"


def bundle_size(sizes: Sequence[int]) -> int:
    """Bytes of bundle_body for messages of these UTF-8 sizes (without building it)."""
    return len('{"bundle":"","events":[]}') + BUNDLE_ID_LENGTH + sum(sizes) + max(len(sizes) - 1, 0)


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One event of an SQS record: the record's only one (`key` = the SQS message id) or the i-th of a
    bundle (`key` = "<message id>#<i>"). `body` is that event's own message (what its dead letter
    carries); `error` says why it could not be read (then `event` is None)."""

    key: str
    message_id: str
    source: str | dict[str, Any]  # the record's body, or the bundle's JSON object for this event
    event: Queued | Event | None = None
    error: str | None = None
    bundle: str | None = None  # the id of the bundle it came in

    @property
    def body(self) -> str:
        """The event's own message (serialized only when needed: for a dead letter)."""
        return self.source if isinstance(self.source, str) else pydantic_core.to_json(self.source).decode("utf-8")


def parse_message(message_id: str, body: str, vendor: str) -> list[QueuedEvent]:
    """The events of an SQS record's body: a bundle's, or the one of a queued message or canonical event.
    A body that cannot be read at all is one QueuedEvent with its error; so is each unreadable event of a bundle."""
    try:
        message = pydantic_core.from_json(body or b"")
    except ValueError:
        return [QueuedEvent(message_id, message_id, body, error="not a queued message: (body): is not JSON")]
    if not is_bundle(message):
        return [_queued_event(message_id, message_id, body, message, vendor, None)]
    bundle = message["bundle"]
    if not isinstance(bundle, str) or not _BUNDLE_ID.fullmatch(bundle):
        error = f"not a queued message: bundle: must be {BUNDLE_ID_LENGTH} lower-case hex digits (bundle_id)"
        return [QueuedEvent(message_id, message_id, body, error=error)]
    return [
        _queued_event(f"{message_id}#{i}", message_id, one, one, vendor, bundle)
        for i, one in enumerate(message["events"])
    ]


def message_id_of(key: str) -> str:
    """The SQS message id in a QueuedEvent's key ("<message id>", or "<message id>#<index>" in a bundle)."""
    return key.split("#", 1)[0]


def is_bundle(message: Any) -> bool:
    return isinstance(message, dict) and set(message) == {"bundle", "events"} and isinstance(message["events"], list)


def _queued_event(key: str, message_id: str, source: Any, message: Any, vendor: str, bundle: str | None) -> QueuedEvent:
    try:
        return QueuedEvent(key, message_id, source, _from_message(message, vendor), bundle=bundle)
    except QueuedMessageError as exc:
        return QueuedEvent(key, message_id, source, error=f"not a queued message: {exc}", bundle=bundle)
    except ValidationError as exc:
        from relay.models.errors import from_validation_error

        errors = "; ".join(map(str, from_validation_error(exc)))
        return QueuedEvent(key, message_id, source, error=f"not a canonical event: {errors}", bundle=bundle)


def parse_queued(body: str | bytes, vendor: str) -> Queued | Event:
    """`vendor`'s part of a message body, or the canonical event of an older message. Raises
    QueuedMessageError (or pydantic's ValidationError for a canonical event) when it is neither."""
    try:
        message = pydantic_core.from_json(body or b"")
    except ValueError:
        raise QueuedMessageError("(body): is not JSON") from None
    return _from_message(message, vendor)


def _from_message(message: Any, vendor: str) -> Queued | Event:
    if not isinstance(message, dict):
        raise QueuedMessageError("(body): must be a JSON object")
    if "payloads" not in message:
        return Event.model_validate(message)
    event_id = event_id_of(message)
    if event_id is None:
        raise QueuedMessageError(f"event_id: must be 1 to {MAX_EVENT_ID_LENGTH} printable characters")
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

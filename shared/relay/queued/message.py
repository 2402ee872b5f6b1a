"""What travels from the ingest through SNS and SQS to the vendor functions (docs/decisions/0005).

The ingest validates an event and maps it for every vendor anyway (to know its destinations); the message
it publishes carries those vendor payloads, so a vendor function sends what it reads without validating
and mapping the event a second time, and the queues and
DLQs hold what each vendor is sent (emails and phones hashed), not the event as the client sent it:

    {"event_id": "o-1001", "name": "purchase",
     "payloads": {"applovin": {...}, "adroll.eu": {...}},  # one per connection, exactly as mapped
     "targets": {"appsflyer": "id123456789"},              # the request group, when a vendor has one
     "source": "eu",                                       # the source that sent it, unless "default"
     "replay": "0f3a..."}                                  # `relay replay --again`'s id: claimed apart

A vendor function delivers each connection of its vendor the message carries (relay.models.names: the
connection named default is keyed by its vendor alone, as every message was before connections).

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
from relay.models.names import DEFAULT, is_name, is_replay_id, vendor_of
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


def queued_body(event: Event, outcomes: Mapping[str, MappingResult], source: str = DEFAULT) -> str:
    """The message for `event` from `source`, carrying the payload of every connection it was mapped for."""
    payloads: dict[str, Any] = {}
    targets: dict[str, str] = {}
    for connection, outcome in outcomes.items():
        if isinstance(outcome, Mapped):
            payloads[connection] = outcome.payload
            if outcome.target:
                targets[connection] = outcome.target
    message: dict[str, Any] = {"event_id": event.event_id, "name": event.name, "payloads": payloads}
    if targets:
        message["targets"] = targets
    if source != DEFAULT:
        message["source"] = source
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
    """One event of an SQS record for one connection: the record's only one (`key` = the SQS message id) or
    the i-th of a bundle (`key` = "<message id>#<i>"), followed by "~<connection>" for a connection not named
    default. `body` is that event's own message for that connection (what its dead letter carries); `error`
    says why it could not be read (then `event` is None)."""

    key: str
    message_id: str
    source: str | dict[str, Any]  # the record's body, or the JSON object of this event for this connection
    event: Queued | Event | None = None
    error: str | None = None
    bundle: str | None = None  # the id of the bundle it came in
    connection: str = ""  # the connection it is for (its vendor alone: the one named default)
    sent_by: str = DEFAULT  # the source that sent it (event ids are scoped per source)
    replay: str = ""  # the id of the `relay replay --again` that queued it (its claims are that replay's)

    @property
    def body(self) -> str:
        """The event's own message (serialized only when needed: for a dead letter)."""
        return self.source if isinstance(self.source, str) else pydantic_core.to_json(self.source).decode("utf-8")


def parse_message(message_id: str, body: str, vendor: str) -> list[QueuedEvent]:
    """The events of an SQS record's body, one per connection of `vendor` each carries: a bundle's, or the one
    of a queued message or canonical event. A body that cannot be read at all is one QueuedEvent with its
    error; so is each unreadable event of a bundle."""
    try:
        message = pydantic_core.from_json(body or b"")
    except ValueError:
        return [_unreadable(message_id, message_id, body, vendor, "not a queued message: (body): is not JSON")]
    if not is_bundle(message):
        return _queued_events(message_id, message_id, body, message, vendor, None)
    bundle = message["bundle"]
    if not isinstance(bundle, str) or not _BUNDLE_ID.fullmatch(bundle):
        error = f"not a queued message: bundle: must be {BUNDLE_ID_LENGTH} lower-case hex digits (bundle_id)"
        return [_unreadable(message_id, message_id, body, vendor, error)]
    return [
        queued
        for i, one in enumerate(message["events"])
        for queued in _queued_events(f"{message_id}#{i}", message_id, one, one, vendor, bundle)
    ]


def message_id_of(key: str) -> str:
    """The SQS message id in a QueuedEvent's key ("<message id>", "<message id>#<index>" in a bundle, either
    followed by "~<connection>")."""
    return key.split("~", 1)[0].split("#", 1)[0]


def is_bundle(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and "bundle" in message  # (a queued message has none: no set built for it)
        and message.keys() == {"bundle", "events"}
        and isinstance(message["events"], list)
    )


def _unreadable(
    key: str, message_id: str, source: Any, vendor: str, error: str, bundle: str | None = None
) -> QueuedEvent:
    return QueuedEvent(key, message_id, source, error=error, bundle=bundle, connection=vendor)


def _queued_events(
    key: str, message_id: str, source: Any, message: Any, vendor: str, bundle: str | None
) -> list[QueuedEvent]:
    try:
        parts = _from_message(message, vendor)
    except QueuedMessageError as exc:
        return [_unreadable(key, message_id, source, vendor, f"not a queued message: {exc}", bundle)]
    except ValidationError as exc:
        from relay.models.errors import from_validation_error

        errors = "; ".join(map(str, from_validation_error(exc)))
        return [_unreadable(key, message_id, source, vendor, f"not a canonical event: {errors}", bundle)]
    sent_by, replay = (
        (message.get("source", DEFAULT), message.get("replay", "")) if "payloads" in message else (DEFAULT, "")
    )
    if len(parts) == 1 and parts[0][0] == vendor:  # the default connection alone: the key and body as they were
        return [
            QueuedEvent(
                key, message_id, source, parts[0][1], bundle=bundle, connection=vendor, sent_by=sent_by, replay=replay
            )
        ]
    return [
        QueuedEvent(
            key if connection == vendor else f"{key}~{connection}",
            message_id,
            _narrowed(message, connection) if len(parts) > 1 else source,
            event,
            bundle=bundle,
            connection=connection,
            sent_by=sent_by,
            replay=replay,
        )
        for connection, event in parts
    ]


def _narrowed(message: dict[str, Any], connection: str) -> dict[str, Any]:
    """The message with `connection`'s payload alone (its dead letter's body)."""
    out = {**message, "payloads": {connection: message["payloads"][connection]}}
    targets = message.get("targets")
    if isinstance(targets, dict):
        out["targets"] = {k: v for k, v in targets.items() if k == connection}
        if not out["targets"]:
            del out["targets"]
    return out


def parse_queued(body: str | bytes, vendor: str) -> Queued | Event:
    """`vendor`'s part of a message body (its first connection's), or the canonical event of an older message.
    Raises QueuedMessageError (or pydantic's ValidationError for a canonical event) when it is neither."""
    try:
        message = pydantic_core.from_json(body or b"")
    except ValueError:
        raise QueuedMessageError("(body): is not JSON") from None
    return _from_message(message, vendor)[0][1]


def _from_message(message: Any, vendor: str) -> list[tuple[str, Queued | Event]]:
    """(connection, its part) for each connection of `vendor` the message carries."""
    if not isinstance(message, dict):
        raise QueuedMessageError("(body): must be a JSON object")
    if "payloads" not in message:
        return [(vendor, Event.model_validate(message))]
    event_id = event_id_of(message)
    if event_id is None:
        raise QueuedMessageError(f"event_id: must be 1 to {MAX_EVENT_ID_LENGTH} printable characters")
    if "source" in message and not is_name(message["source"]):
        raise QueuedMessageError("source: must be a source's name (relay.models.names)")
    if "replay" in message and not is_replay_id(message["replay"]):
        raise QueuedMessageError("replay: must be a replay's id, 16 lower-case hex digits (relay.models.names)")
    payloads = message["payloads"]
    mine = sorted([c for c in payloads if vendor_of(c) == vendor]) if isinstance(payloads, dict) else []
    if not mine:
        carried = ", ".join(sorted(payloads)) if isinstance(payloads, dict) else ""
        raise QueuedMessageError(f"payloads.{vendor}: missing; the message carries payloads for: {carried or 'none'}")
    targets = message.get("targets") or {}
    out: list[tuple[str, Queued | Event]] = []
    for connection in mine:
        payload = payloads[connection]
        if not isinstance(payload, dict):
            raise QueuedMessageError(f"payloads.{connection}: must be a JSON object")
        target = targets.get(connection, "") if isinstance(targets, dict) else None
        if not isinstance(target, str):
            raise QueuedMessageError(f"targets.{connection}: must be a string")
        out.append((connection, Queued(event_id, Mapped(payload, target))))
    return out

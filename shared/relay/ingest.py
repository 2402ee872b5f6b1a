"""The ingest endpoint's logic: verify, validate, route, publish (README "Ingest API").

Framework-free: the IngestFunction handler turns the API Gateway event into (raw body, headers)
and this module's result back into an HTTP response.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import jsonbody
from .aws import SNS_MAX_BYTES, Message, ReplayGuard, SnsPublisher
from .config import RelayConfig
from .errors import FieldError
from .model import MAX_EVENTS_PER_REQUEST, EventParseError, event_id_of, parse_event
from .queued import EVENTS_PER_MESSAGE, bundle_body, bundle_size, queued_body
from .routing import Router
from .signing import HEADER, SignatureError, SignatureMismatch, verify
from .vendors import Invalid, Skipped

MAX_BODY_BYTES = 1_048_576
JSON_TYPES = ("application/json",)


@dataclass(slots=True)
class IngestResult:
    status: int
    body: dict[str, Any]
    received: int = 0
    rejected: int = 0
    published: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    secret_mismatch: bool = False  # refused because no configured secret made the signature


def _error(status: int, message: str, **extra: Any) -> IngestResult:
    return IngestResult(status, {"error": message, **extra})


def _json_content_type(value: str | None) -> bool:
    if not value:
        return False
    media, _, params = value.partition(";")
    if media.strip().lower() not in JSON_TYPES:
        return False
    charset = params.strip().lower()
    return not charset.startswith("charset=") or charset in ("charset=utf-8", 'charset="utf-8"')


class Ingest:
    def __init__(
        self,
        config: RelayConfig,
        publisher: SnsPublisher,
        clock: Callable[[], float] = time.time,
        replay_guard: ReplayGuard | None = None,
        events_per_message: int = EVENTS_PER_MESSAGE,
    ):
        self.config = config
        self.events_per_message = events_per_message
        self.router = Router(config)
        self.publisher = publisher
        self.clock = clock
        self.replay_guard = replay_guard

    def handle(self, raw: bytes, headers: Mapping[str, str]) -> IngestResult:
        """`headers` with lower-case names (as API Gateway HTTP APIs deliver them)."""
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
        now = self.clock()
        try:
            signed_at = verify(
                raw,
                headers.get(HEADER.lower()),
                [s.get_secret_value() for s in self.config.ingest.secrets],
                self.config.ingest.tolerance_seconds,
                now=now,
            )
        except SignatureError as exc:
            result = _error(401, str(exc))
            result.secret_mismatch = isinstance(exc, SignatureMismatch)
            return result
        replay_key = f"replay#{signed_at}#{hashlib.sha256(raw).hexdigest()}"
        if self.replay_guard and not self.replay_guard.claim(
            replay_key, signed_at + 2 * self.config.ingest.tolerance_seconds, now
        ):
            return _error(401, "signature already used: sign every request anew (replayed requests are refused)")
        result = self._checked(raw, headers, now)
        if result.status == 503 and self.replay_guard:
            self.replay_guard.release(replay_key)  # the client resends as told: let the same request through
        return result

    def _checked(self, raw: bytes, headers: Mapping[str, str], now: float) -> IngestResult:
        if not _json_content_type(headers.get("content-type")):
            return _error(415, "Content-Type must be application/json (UTF-8)")
        try:
            data = jsonbody.loads(raw)
        except jsonbody.JsonBodyError as exc:
            return _error(400, str(exc))
        if not isinstance(data, dict) or not isinstance(data.get("events"), list) or set(data) != {"events"}:
            return _error(400, 'body must be a JSON object {"events": [ ... ]}')
        raw_events = data["events"]
        if len(raw_events) > MAX_EVENTS_PER_REQUEST:
            return _error(413, f"{len(raw_events)} events; at most {MAX_EVENTS_PER_REQUEST} per request")
        if not raw_events:
            return _error(400, "events: must hold at least one event")
        return self._accept(raw_events, datetime.fromtimestamp(now, UTC))

    def _accept(self, raw_events: list[Any], now: datetime) -> IngestResult:
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        singles: list[tuple[str, Message]] = []  # (event_id, the event's own message)
        seen: dict[str, int] = {}
        for index, raw_event in enumerate(raw_events):
            try:
                event = parse_event(raw_event, now=now, max_event_age_days=self.config.ingest.max_event_age_days)
            except EventParseError as exc:
                rejected.append(self._rejection(index, event_id_of(raw_event), exc.errors))
                continue
            if event.event_id in seen:
                error = FieldError(
                    "event_id", f"repeats the event_id of events[{seen[event.event_id]}] in this request"
                )
                rejected.append(self._rejection(index, event.event_id, [error]))
                continue
            seen[event.event_id] = index
            outcomes = self.router.route(event)
            destinations = Router.destinations(outcomes)
            entry: dict[str, Any] = {"index": index, "event_id": event.event_id, "destinations": destinations}
            skipped = {v: o.reason for v, o in outcomes.items() if isinstance(o, Skipped)}
            invalid = {v: [e.as_dict() for e in o.errors] for v, o in outcomes.items() if isinstance(o, Invalid)}
            if skipped:
                entry["skipped"] = skipped
            if invalid:
                entry["invalid"] = invalid
            if destinations:
                message = Message(str(index), queued_body(event, outcomes), destinations)
                if message.size > SNS_MAX_BYTES:
                    error = FieldError("(event)", f"is {message.size} bytes once serialized; at most {SNS_MAX_BYTES}")
                    rejected.append(self._rejection(index, event.event_id, [error]))
                    continue
                singles.append((event.event_id, message))
            accepted.append(entry)
        messages, members = bundles(singles, self.events_per_message)
        failed = self.publisher.publish(messages) if messages else []
        if failed:
            ids = [event_id for message_id in failed for event_id in members[message_id]]
            result = _error(
                503,
                "could not enqueue every event; resend the request (event_id makes resends safe)",
                not_enqueued=ids,
            )
            result.headers["Retry-After"] = "1"
            return result
        status = 202 if accepted else 400
        return IngestResult(
            status,
            {"accepted": accepted, "rejected": rejected},
            received=len(accepted) + len(rejected),
            rejected=len(rejected),
            published=len(singles),
        )

    @staticmethod
    def _rejection(index: int, event_id: str | None, errors: list[FieldError]) -> dict[str, Any]:
        return {"index": index, "event_id": event_id, "errors": [e.as_dict() for e in errors]}


def bundles(singles: list[tuple[str, Message]], per_message: int) -> tuple[list[Message], dict[str, list[str]]]:
    """Put events that go to the same vendors together, up to `per_message` and SNS_MAX_BYTES per message
    (relay.queued); returns the messages and the event_ids each carries. A message of one event is that
    event's own message."""
    groups: dict[str, list[tuple[str, Message]]] = {}
    for single in singles:
        groups.setdefault(single[1].attribute, []).append(single)
    messages: list[Message] = []
    members: dict[str, list[str]] = {}

    def close(part: list[tuple[str, Message]]) -> None:
        first = part[0][1]
        if len(part) == 1:
            message = first
        else:
            message = Message(first.id, bundle_body([m.body for _, m in part]), first.destinations)
        messages.append(message)
        members[message.id] = [event_id for event_id, _ in part]

    for group in groups.values():
        part: list[tuple[str, Message]] = []
        for single in group:
            overhead = single[1].size - single[1].body_size
            sizes = [m.body_size for _, m in part] + [single[1].body_size]
            if part and (len(part) == per_message or bundle_size(sizes) + overhead > SNS_MAX_BYTES):
                close(part)
                part = []
            part.append(single)
        if part:
            close(part)
    return messages, members

"""The ingest endpoint's logic: verify, validate, route, publish (docs/ingest-api.md).

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

from relay.aws.clients import AWS_CALL_MAX_MS
from relay.aws.ledger import INGEST, Claim, DeliveryLedger
from relay.aws.replay import ReplayGuard
from relay.aws.sns import Message, SnsPublisher
from relay.ingest import jsonbody
from relay.ingest.archiving import Archiver, Queued
from relay.ingest.bundling import bundles, plan_bundles
from relay.ingest.reading import EventReader
from relay.ingest.signing import HEADER, SignatureError, SignatureMismatch, verify
from relay.journey import JourneyTable
from relay.journey.record import ingest_journey
from relay.models.config import RelayConfig
from relay.models.errors import FieldError
from relay.models.event import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST
from relay.models.names import DEFAULT, SOURCE_HEADER, ledger_name, vendor_of
from relay.queued.message import EVENTS_PER_MESSAGE, bundle_body
from relay.queued.routing import Router

DEFAULT_REMAINING_MS = 10_000  # when not called from Lambda (tests, the benchmark): the IngestFunction's Timeout


@dataclass(slots=True)
class IngestResult:
    status: int
    body: dict[str, Any]
    received: int = 0
    rejected: int = 0
    published: int = 0
    duplicates: int = 0  # accepted events the relay had queued before (a client's resend): not queued again
    ledger_error: bool = False  # the events were published but their claims could not be settled
    headers: dict[str, str] = field(default_factory=dict)
    secret_mismatch: bool = False  # refused because no configured secret made the signature
    source: str | None = None  # the source that signed it (None: refused before a source was known)
    reason: str | None = None  # why it was refused (relay.journey.refusals.REASONS); None when it was not
    signature: dict[str, Any] | None = None  # a refused signature's diagnosis (relay.journey.refusals)


def _error(status: int, message: str, reason: str | None = None, **extra: Any) -> IngestResult:
    return IngestResult(status, {"error": message, **extra}, reason=reason)


def _unavailable(what: str, event_ids: list[str] | None) -> IngestResult:
    """A 503 the client answers by resending the request: the event_ids make resends safe. `event_ids`
    None: the events were not read yet, the whole request is to be resent."""
    if event_ids is None:
        result = _error(503, f"{what}; resend the whole request, signed anew (event_id makes resends safe)")
    else:
        result = _error(503, f"{what}; resend the request (event_id makes resends safe)", not_enqueued=event_ids)
    result.headers["Retry-After"] = "1"
    return result


def _refused_signature(exc: SignatureError, source: str) -> IngestResult:
    """The 401 of a signature no active secret made, with its diagnosis (relay.journey.refusals)."""
    result = _error(401, str(exc), f"signature_{exc.diagnosis}")
    result.secret_mismatch, result.source = isinstance(exc, SignatureMismatch), source
    result.signature = {"diagnosis": exc.diagnosis}
    if exc.skew_seconds is not None:
        result.signature["skew_seconds"] = exc.skew_seconds
    return result


class Ingest:
    def __init__(
        self,
        config: RelayConfig,
        publisher: SnsPublisher,
        clock: Callable[[], float] = time.time,
        replay_guard: ReplayGuard | None = None,
        events_per_message: int = EVENTS_PER_MESSAGE,
        ledger: DeliveryLedger | None = None,
        journeys: JourneyTable | None = None,
        archiver: Archiver | None = None,
    ):
        self.config = config
        self.archiver = archiver  # each request's published events to the archive too (relay.archive)
        # each request's journey item (relay.journey), unless [delivery] journey is off
        self.journeys = journeys if config.delivery.journey else None
        self.events_per_message = events_per_message
        self.router = Router(config)
        self.reader = EventReader(config, self.router)
        # each source's signing secrets; its claims are the ledger's under its own name (event ids per source)
        self.secrets = {n: [s.get_secret_value() for s in c.secrets] for n, c in config.source_configs().items()}
        # the ingest's claims ("ingest", and "ingest@<source>" per source): each event queued once, whatever the
        # client resends
        self._ledgers = {DEFAULT: ledger} if ledger else {}
        self.publisher = publisher
        self.clock = clock
        self.replay_guard = replay_guard

    def handle(
        self,
        raw: bytes,
        headers: Mapping[str, str],
        remaining_ms: int | Callable[[], int] = DEFAULT_REMAINING_MS,
        origin: Mapping[str, str | None] | None = None,
    ) -> IngestResult:
        """`headers` with lower-case names (as API Gateway HTTP APIs deliver them); `remaining_ms` the
        invocation's time left (Lambda's `get_remaining_time_in_millis`, or a number of ms from now): the
        claims of its events last that long if it dies, and no AWS call starts that could outlast it — the
        request is answered 503 instead. `origin`: the request's id and the caller's address (the journey's)."""
        if not callable(remaining_ms):
            started, budget = time.monotonic(), remaining_ms
            remaining_ms = lambda: int(budget - (time.monotonic() - started) * 1000)  # noqa: E731
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", "body_too_large")
        now = self.clock()
        source = headers.get(SOURCE_HEADER.lower()) or DEFAULT
        secrets = self.secrets.get(source)
        if secrets is None:
            return _error(401, f"{SOURCE_HEADER}: names no source of this relay", "unknown_source")
        try:
            signed_at = verify(raw, headers.get(HEADER.lower()), secrets, self.config.ingest.tolerance_seconds, now=now)
        except SignatureError as exc:
            return _refused_signature(exc, source)
        replay_key = ""
        if self.replay_guard:  # a replay is the same body signed at the same second for the same source
            scope = "" if source == DEFAULT else f"{source}#"
            replay_key = f"replay#{scope}{signed_at}#{hashlib.sha256(raw).hexdigest()}"
            try:
                first = self.replay_guard.claim(replay_key, signed_at + 2 * self.config.ingest.tolerance_seconds, now)
            except Exception:  # noqa: BLE001 - throttled or unavailable: nothing was accepted, the client resends
                return _unavailable("could not check the request against replays", None)
            if not first:
                why = "signature already used: sign every request anew (replayed requests are refused)"
                result = _error(401, why, "signature_replayed")
                result.signature, result.source = {"diagnosis": "replayed"}, source
                return result
        result = self._checked(raw, headers, now, remaining_ms, {**(origin or {}), "source": source})
        result.source = source
        if result.status == 503 and self.replay_guard:
            try:  # the client resends as told: let the same request through
                self.replay_guard.release(replay_key)
            except Exception:  # noqa: BLE001 - the resend is refused as a replay until the key expires
                result.body["error"] += "; sign the resend anew (this signature stays used)"
        return result

    def _checked(
        self,
        raw: bytes,
        headers: Mapping[str, str],
        now: float,
        remaining_ms: Callable[[], int],
        origin: Mapping[str, str | None],
    ) -> IngestResult:
        if not jsonbody.json_content_type(headers.get("content-type")):
            return _error(415, "Content-Type must be application/json (UTF-8)", "content_type")
        overflowed: list[bool] = []
        try:
            data = jsonbody.loads(raw, non_finite=overflowed)
        except jsonbody.JsonBodyError as exc:
            return _error(400, str(exc), "invalid_json")
        if not isinstance(data, dict) or not isinstance(data.get("events"), list) or set(data) != {"events"}:
            return _error(400, 'body must be a JSON object {"events": [ ... ]}', "invalid_body")
        raw_events = data["events"]
        if len(raw_events) > MAX_EVENTS_PER_REQUEST:
            why = f"{len(raw_events)} events; at most {MAX_EVENTS_PER_REQUEST} per request"
            return _error(413, why, "too_many_events")
        if not raw_events:
            return _error(400, "events: must hold at least one event", "invalid_body")
        suspect = jsonbody.Suspect(jsonbody.may_hold_uncarried(raw), bool(overflowed))
        return self._accept(raw_events, datetime.fromtimestamp(now, UTC), remaining_ms, suspect, origin)

    def _accept(
        self,
        raw_events: list[Any],
        now: datetime,
        remaining_ms: Callable[[], int] = lambda: DEFAULT_REMAINING_MS,
        suspect: jsonbody.Suspect | None = None,
        origin: Mapping[str, str | None] | None = None,
    ) -> IngestResult:
        """Validate, claim and publish the request's events. `suspect`: what the body may hold that no event
        may (`jsonbody.Suspect`): each event is then looked at, and one holding it is refused, naming the field.
        `origin["source"]`: the source that signed the request (the connections it may reach, its ledger)."""
        source = (origin or {}).get("source") or DEFAULT
        ledger = self._ledger_of(source)
        names: dict[str, str] = {}  # each valid event's name (its journey's)
        accepted, rejected, singles = self._read_all(raw_events, now, suspect or jsonbody.Suspect(), source, names)
        ids = [event_id for event_id, _ in singles]
        if singles and remaining_ms() < AWS_CALL_MAX_MS:  # each call below must fit in what is left
            return _unavailable("too little time left to queue the events", ids)
        batch = DeliveryLedger.new_batch() if ledger else ""
        try:
            claims, recorded = self._claim(ledger, singles, remaining_ms, batch)
        except Exception:  # noqa: BLE001 - DynamoDB unavailable: nothing was queued, the client resends
            return _unavailable("could not record the events", ids)
        duplicates = {event_id for event_id, claim in claims.items() if claim is Claim.DUPLICATE}
        resent = [(e, m) for e, m in singles if e in duplicates]
        requeued, failed, queued_before = self._queue_for_more(ledger, resent, remaining_ms, now.timestamp())
        for entry in accepted:
            if entry["event_id"] in duplicates:
                entry["duplicate"] = True
                if entry["event_id"] in requeued:
                    entry["queued_now"] = requeued[entry["event_id"]]
        fresh = [(event_id, m) for event_id, m in singles if claims.get(event_id, Claim.CLAIMED) is Claim.CLAIMED]
        not_published, bundle_of = self._publish(fresh, remaining_ms, recorded)
        failed += not_published
        archiving = None
        if self.archiver is not None:  # what is queued now, and the resends whose claims were read
            queued = Queued(raw_events, singles, fresh, queued_before, requeued, set(failed), recorded)
            archiving = self.archiver.start(source, now.timestamp(), queued.events())
        journey = self._journey(batch, now, origin or {}, accepted, fresh, set(failed), (bundle_of, names))
        # anything but queued now or before: another request holds the claim (never dropped in silence)
        settled = (Claim.CLAIMED, Claim.DUPLICATE)
        in_flight = [event_id for event_id in ids if claims.get(event_id, Claim.CLAIMED) not in settled]
        not_queued = [e for e in failed if e not in duplicates]
        ledger_error = self._settle(ledger, batch, fresh, not_queued, journey, in_flight)
        if self.archiver is not None:
            self.archiver.finish(archiving, remaining_ms)
        if failed or in_flight:
            return _unavailable("could not enqueue every event", failed + in_flight)
        return IngestResult(
            202 if accepted else 400,
            {"accepted": accepted, "rejected": rejected},
            received=len(accepted) + len(rejected),
            rejected=len(rejected),
            published=len(fresh),
            duplicates=len(duplicates),
            ledger_error=ledger_error,
            reason=None if accepted else "invalid_events",
        )

    def _read_all(
        self, raw_events: list[Any], now: datetime, suspect: jsonbody.Suspect, source: str, names: dict[str, str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[str, Message]]]:
        """The request's events read (relay.ingest.reading): the accepted entries, the rejections, and each
        event to queue with its own message."""
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        singles: list[tuple[str, Message]] = []  # (event_id, the event's own message)
        seen: dict[str, int] = {}
        for index, raw_event in enumerate(raw_events):
            entry, message, errors = self.reader.read(index, raw_event, now, suspect, seen, source, names)
            if errors:
                why = {k: entry[k] for k in ("invalid", "skipped") if k in entry}  # each connection's, when routed
                rejected.append({**self._rejection(index, entry["event_id"], errors), **why})
                continue
            accepted.append(entry)
            if message is not None:
                singles.append((entry["event_id"], message))
        return accepted, rejected, singles

    def _ledger_of(self, source: str) -> DeliveryLedger | None:
        """The ledger of `source`'s events: the ingest's claims under the source's name (relay.models.names)."""
        base = self._ledgers.get(DEFAULT)
        if base is None:
            return None
        if source not in self._ledgers:
            self._ledgers[source] = base.scoped(ledger_name(INGEST, source))
        return self._ledgers[source]

    def _claim(
        self,
        ledger: DeliveryLedger | None,
        singles: list[tuple[str, Message]],
        remaining_ms: Callable[[], int],
        batch: str,
    ) -> tuple[dict[str, Claim], Mapping[str, str]]:
        """Claim the events in the ledger, each with the bundle it is to be published in (planned now, before
        anything is published: a resend publishes it in the same one, docs/decisions/0008); returns the claims
        and the bundle each claim records. Raises when DynamoDB refuses the transaction (nothing written)."""
        planned = plan_bundles(singles, self.events_per_message)
        if not (ledger and singles):
            return {}, planned
        vendors = {event_id: list(m.connections) for event_id, m in singles}
        claims = ledger.claim_many([e for e, _ in singles], remaining_ms(), batch, vendors, planned)
        return claims, ledger.bundle_of

    def _queue_for_more(
        self,
        ledger: DeliveryLedger | None,
        resent: list[tuple[str, Message]],
        remaining_ms: Callable[[], int],
        now: float,
    ) -> tuple[dict[str, list[str]], list[str], dict[str, frozenset[str]]]:
        """Publish resent events to the vendors they now reach and were not queued for (a client fixed what
        a vendor found invalid); returns those vendors per event_id, the event_ids that could not be, and the
        connections each resent event whose claim was read had been queued for (its bundle: `bundle_of`).

        Each goes as a message of its own, published before it is recorded: the vendor function claims it
        by event_id, so a concurrent resend doing the same, or a record that failed to be written (the next
        resend publishes again), still reaches the vendor once."""
        if not (ledger and resent) or remaining_ms() < AWS_CALL_MAX_MS:
            return {}, [], {}
        more: dict[str, list[str]] = {}
        known: dict[str, frozenset[str]] = {}
        earlier: dict[str, frozenset[str]] = {}
        messages: list[Message] = []
        ids: dict[str, str] = {}  # PublishBatch entry id -> event_id (an entry id is [A-Za-z0-9_-]{1,80})
        for event_id, message in resent:
            try:
                before = ledger.queued_for(event_id)
            except Exception:  # noqa: BLE001, S112 - it stays a duplicate; the client may send it again
                continue
            if before is not None:
                known[event_id] = before
            new = sorted(set(message.connections) - before) if before is not None else []
            if new and before is not None:
                more[event_id], earlier[event_id] = new, before
                ids[f"r{len(ids)}"] = event_id
                bundle = ledger.bundle_of.get(event_id)  # the event's one identity at every vendor
                body = bundle_body(bundle, [message.body]) if bundle else message.body
                vendors = list(dict.fromkeys(vendor_of(c) for c in new))
                messages.append(Message(f"r{len(ids) - 1}", body, vendors, connections=tuple(new)))
        failed = [ids[i] for i in self.publisher.publish(messages)] if messages else []
        for event_id in failed:
            more.pop(event_id, None)
        for event_id, vendors in more.items():
            try:
                ledger.add_queued_for(event_id, earlier[event_id], vendors, now)
            except Exception:  # noqa: BLE001, S112 - the next resend publishes again; the vendor claims it once
                continue
        return more, failed, known

    def _publish(
        self, fresh: list[tuple[str, Message]], remaining_ms: Callable[[], int], recorded: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """Publish the claimed events, each in the bundle its claim records (`recorded`); returns the event_ids
        that were not published, and the bundle of each event published in one."""
        messages, members = bundles(fresh, self.events_per_message, recorded)
        if messages and remaining_ms() < AWS_CALL_MAX_MS:  # the claims took long: publish nothing, settle them
            return [event_id for event_id, _ in fresh], {}
        failed = [event_id for message_id in self.publisher.publish(messages) for event_id in members[message_id]]
        bundle_of = {e: recorded[e] for e, _ in fresh if e in recorded} if self.journeys is not None else {}
        return failed, bundle_of

    def _journey(
        self,
        batch: str,
        now: datetime,
        origin: Mapping[str, str | None],
        accepted: list[dict[str, Any]],
        fresh: list[tuple[str, Message]],
        failed: set[str],
        kept: tuple[Mapping[str, str], Mapping[str, str]],
    ) -> dict[str, Any] | None:
        """The request's journey (the events queued now), as attributes of its batch record; None when off.
        `kept`: each event's bundle and name, by event_id."""
        queued = {event_id for event_id, _ in fresh} - failed
        if self.journeys is None or not queued or not batch:
            return None
        entries = [entry for entry in accepted if entry["event_id"] in queued]
        bundle_of, names = kept
        return self.journeys.attributes(batch, ingest_journey(now.timestamp(), origin, entries, bundle_of, names))

    def _settle(
        self,
        ledger: DeliveryLedger | None,
        batch: str,
        fresh: list[tuple[str, Message]],
        failed: list[str],
        journey: dict[str, Any] | None = None,
        in_flight: list[str] | None = None,
    ) -> bool:
        """Record what was published (with the request's `journey`) and release what was not; True when the
        ledger could not be written. `in_flight`: the events this request did not claim, listed as not
        delivered by this batch (a claim whose write happened though DynamoDB's answer was lost names this
        batch: the resend takes it over)."""
        if not (ledger and (fresh or in_flight)):
            return False
        not_published = set(failed)
        published = {e: None for e, _ in fresh if e not in not_published}
        try:  # a resend of what was not published is then claimed anew in one transaction, and published
            ledger.release(batch, failed)
            failed_listed: list[str] = []
        except Exception:  # noqa: BLE001 - listed as failed instead: the resend takes those claims over
            failed_listed = failed
        try:
            ledger.settle(batch, published, failed_listed + (in_flight or []), extra=journey)
        except Exception:  # noqa: BLE001 - published all the same; the claims run out with their lease
            return True
        return False

    @staticmethod
    def _rejection(index: int, event_id: str | None, errors: list[FieldError]) -> dict[str, Any]:
        return {"index": index, "event_id": event_id, "errors": [e.as_dict() for e in errors]}

"""`relay replay`: archived events queued again through the relay's own delivery path (docs/archive.md).

Each archived event is routed with the stack's current configuration (the connections its source may reach now)
and mapped for each connection anew, then queued to the events topic as the ingest would queue it, in its own
message: under the bundle the ingest published it in, so each vendor function's claim of it is the one its
first delivery made, and an event a connection delivered is dropped there, never sent twice. Before queuing,
the replay asks the ledger (which remembers deliveries as long as the archive keeps events) and leaves out what
a connection delivered already; what it queues is its own delivery's to decide.

`--again` queues once more what connections delivered (a vendor that acknowledged events and lost them): each
event in a message naming the replay, whose claims are the replay's own (relay.models.names.ledger_name), so
the replay sends each event to each connection once, however often it is run with the same arguments, and a
killed replay run again resumes. A checkpoint file keeps which objects a run finished and its tallies.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from relay.archive.reading import ArchivedEvent, ArchiveLineError
from relay.archive.sealing import Opener, SealError
from relay.aws.ledger import INGEST, DeliveryLedger
from relay.aws.sns import Message, SnsPublisher
from relay.models.event import EventParseError, parse_event
from relay.models.names import ledger_name, normal_connection, vendor_of
from relay.queued.message import bundle_body, queued_body
from relay.queued.routing import Router
from relay.vendors import ADAPTERS, Invalid, Mapped, Skipped
from relay_tools.archive_store import ArchiveStack

COLUMNS = ("sent", "delivered", "too_old", "invalid", "skipped")
NO_AGE_LIMIT_DAYS = 36_500  # an archived event is replayed at any age its vendors take


@dataclass(frozen=True)
class ReplayRequest:
    since: datetime
    until: datetime
    sources: tuple[str, ...] = ()  # none: every source the archive holds
    connections: tuple[str, ...] = ()  # none: every connection each event's source may reach now
    event_ids: tuple[str, ...] = ()
    again: bool = False
    max_age_days: int | None = None  # an age limit of the user's own, beyond the vendors' documented ones
    until_now: bool = False  # --until was not given: "until now" is the replay's (a run resumed later is the same)

    @property
    def replay_id(self) -> str:
        """The replay's identity: a digest of what it replays (a run with the same arguments is the same
        replay; --dry-run, --rate and output options are not part of it)."""
        data = asdict(self)
        data["since"] = self.since.isoformat()
        data["until"] = "now" if self.until_now else self.until.isoformat()
        for key in ("sources", "connections", "event_ids"):
            data[key] = sorted(data[key])
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Tally:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # connection -> column -> events
    too_old: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0  # archived events read that matched
    superseded: int = 0  # archived under an identity the event no longer has (its id accepted anew since)

    def add(self, connection: str, column: str) -> None:
        self.counts.setdefault(connection, dict.fromkeys(COLUMNS, 0))[column] += 1


class Checkpoint:
    """What a replay's runs have done: the objects finished and the tallies, written after each object."""

    def __init__(self, path: Path, replay_id: str):
        self.path, self.replay_id = path, replay_id
        self.done: set[str] = set()
        self.tally = Tally()
        self.finished = False
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("replay") == replay_id and not data.get("finished"):
                self.done = set(data["done"])
                self.tally = Tally(
                    data["counts"], data["too_old"], data["invalid"], data["events"], data.get("superseded", 0)
                )

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"replay": self.replay_id, "finished": self.finished, "done": sorted(self.done), **asdict(self.tally)}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.path)


class RateLimit:
    """At most `per_second` events queued a second (the replay's share beside live traffic)."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / per_second
        self.clock, self.sleep = clock, sleep
        self.next = clock()

    def take(self, events: int) -> None:
        now = self.clock()
        if self.next > now:
            self.sleep(self.next - now)
        self.next = max(self.next, now) + events * self.interval


class Replay:
    def __init__(
        self,
        request: ReplayRequest,
        archive: ArchiveStack,
        checkpoint: Checkpoint,
        *,
        dry_run: bool = False,
        rate: float = 50.0,
        now: datetime | None = None,
        progress: Callable[[int, int, Tally], None] | None = None,
    ):
        self.request, self.archive, self.checkpoint = request, archive, checkpoint
        self.dry_run = dry_run
        self.now = now or datetime.now(UTC)
        self.router = Router(archive.config)
        self.configured = frozenset(archive.config.sections())  # what a skip is counted against
        self.opener: Opener = archive.opener
        self.publisher = SnsPublisher(archive.topic_arn, archive.clients["sns"])
        self.limit = RateLimit(rate)
        self.progress = progress or (lambda done, total, tally: None)
        self._ledgers: dict[str, DeliveryLedger] = {}
        self._seen: set[tuple[str, str]] = set()
        self.unpublished = 0

    @property
    def tally(self) -> Tally:
        return self.checkpoint.tally

    def run(self) -> Tally:
        keys = self.object_keys()
        todo = [k for k in keys if k not in self.checkpoint.done]
        for i, key in enumerate(todo):
            self.replay_object(key)
            self.checkpoint.done.add(key)
            if not self.dry_run:
                self.checkpoint.save()
            self.progress(len(keys) - len(todo) + i + 1, len(keys), self.tally)
        self.checkpoint.finished = True
        if not self.dry_run:
            self.checkpoint.save()
        return self.tally

    def object_keys(self) -> list[str]:
        """The archive's objects that may hold events of the window: a day more on each side (an object's day is
        when its events were accepted; an object may be written a little after midnight)."""
        first = (self.request.since - timedelta(days=1)).date()
        last = (self.request.until + timedelta(days=1)).date()
        sources = self.request.sources or tuple(self.archive.sources())
        return [k for s in sources for k in self.archive.keys(s, first, last)]

    def replay_object(self, key: str) -> None:
        batch: list[tuple[Message, int]] = []
        for item in self.archive.events(key):
            if isinstance(item, ArchiveLineError) or not self.matches(item):
                continue
            message = self.plan(item)
            if message is not None:
                batch.append(message)
            if len(batch) == 10:
                self.publish(batch)
                batch = []
        self.publish(batch)

    def matches(self, archived: ArchivedEvent) -> bool:
        request = self.request
        if not request.since <= archived.accepted_at < request.until:
            return False
        if request.event_ids and archived.event_id not in request.event_ids:
            return False
        if (archived.source, archived.event_id, archived.bundle) in self._seen:
            return False  # in the archive twice (a resend): replayed once
        self._seen.add((archived.source, archived.event_id, archived.bundle))
        return True

    def plan(self, archived: ArchivedEvent) -> tuple[Message, int] | None:
        """The message queuing `archived` to the connections that are to get it (None: none is)."""
        self.tally.events += 1
        remembered, bundle = self._ledger(ledger_name(INGEST, archived.source)).claimed_bundle(archived.event_id)
        if remembered and bundle != archived.bundle:
            self.tally.superseded += 1  # its id was accepted anew since: that event's own line is the one to replay
            return None
        try:
            event = parse_event(archived.event(self.opener), now=self.now, max_event_age_days=NO_AGE_LIMIT_DAYS)
        except (EventParseError, SealError) as exc:
            return self._invalid(archived, archived.connections, str(exc))
        outcomes = self.router.route(event, archived.source)
        wanted = {normal_connection(c) for c in self.request.connections}
        sendable: dict[str, Mapped] = {}
        for connection, outcome in outcomes.items():
            if wanted and connection not in wanted:
                continue
            if isinstance(outcome, Invalid):
                self._invalid(archived, [connection], outcome.reason)
            elif isinstance(outcome, Skipped):
                if connection in self.configured or connection in wanted:
                    self.tally.add(connection, "skipped")
            elif not remembered or self.too_old(archived, connection):
                if not remembered:
                    self._forgotten(archived, connection)
                self.tally.add(connection, "too_old")
            elif self.delivered(archived, connection):
                self.tally.add(connection, "delivered")
            else:
                sendable[connection] = outcome
        for connection in sorted(wanted - set(outcomes)):
            self.tally.add(connection, "skipped")  # the source may not reach it
        if not sendable:
            return None
        return self.message(archived, event, sendable), len(sendable)

    def message(self, archived: ArchivedEvent, event: Any, sendable: dict[str, Mapped]) -> Message:
        body = queued_body(event, sendable, archived.source)
        if self.request.again:
            body = body[:-1] + f',"replay":"{self.request.replay_id}"}}'
        elif archived.bundle:  # its identity at each vendor: the bundle it was first published in
            body = bundle_body(archived.bundle, [body])
        vendors = sorted({vendor_of(c) for c in sendable})
        return Message(f"m{len(self._seen)}", body, vendors, connections=tuple(sendable))

    def too_old(self, archived: ArchivedEvent, connection: str) -> bool:
        limits = [ADAPTERS[vendor_of(connection)].max_event_age_days, self.request.max_age_days]
        days = min((d for d in limits if d is not None), default=None)
        if days is None:
            return False
        age = self.now - archived.timestamp
        if age <= timedelta(days=days):
            return False
        self.tally.too_old.append(
            {
                "event_id": archived.event_id,
                "source": archived.source,
                "connection": connection,
                "age_days": round(age / timedelta(days=1), 1),
                "limit_days": days,
            }
        )
        return True

    def _forgotten(self, archived: ArchivedEvent, connection: str) -> None:
        """The ledger no longer remembers the event (an object S3 has not yet deleted past its expiry): sending it
        could send it twice, so it is listed instead."""
        self.tally.too_old.append(
            {
                "event_id": archived.event_id,
                "source": archived.source,
                "connection": connection,
                "age_days": round((self.now - archived.timestamp) / timedelta(days=1), 1),
                "limit_days": None,
            }
        )

    def _ledger(self, namespace: str) -> DeliveryLedger:
        if namespace not in self._ledgers:
            clients = self.archive.clients["dynamodb"]
            self._ledgers[namespace] = DeliveryLedger(
                namespace, self.archive.table, clients, clock=lambda: self.now.timestamp()
            )
        return self._ledgers[namespace]

    def delivered(self, archived: ArchivedEvent, connection: str) -> bool:
        replay = self.request.replay_id if self.request.again else ""
        bundle = None if self.request.again else archived.bundle
        ledger = self._ledger(ledger_name(connection, archived.source, replay))
        return ledger.was_delivered(archived.event_id, bundle)

    def _invalid(self, archived: ArchivedEvent, connections: Iterable[str], why: str) -> None:
        for connection in connections:
            self.tally.add(connection, "invalid")
        self.tally.invalid.append({"event_id": archived.event_id, "source": archived.source, "reason": why})
        return None

    def publish(self, batch: list[tuple[Message, int]]) -> None:
        if not batch:
            return
        events = sum(n for _, n in batch)
        if self.dry_run:
            self._count_sent([m for m, _ in batch])
            return
        self.limit.take(events)
        failed = set(self.publisher.publish([m for m, _ in batch]))
        self.unpublished += sum(n for m, n in batch if m.id in failed)
        self._count_sent([m for m, _ in batch if m.id not in failed])

    def _count_sent(self, messages: list[Message]) -> None:
        for message in messages:
            for connection in message.connections:
                self.tally.add(connection, "sent")


def default_checkpoint(stack: str, replay_id: str) -> Path:
    return Path(".relay") / "replays" / f"{stack}-{replay_id}.json"


def print_summary(tally: Tally, out: TextIO, dry_run: bool) -> None:
    head = "would send" if dry_run else "sent"
    rows = [("connection", head, "already delivered", "too old", "invalid", "skipped")]
    for connection in sorted(tally.counts):
        c = tally.counts[connection]
        rows.append((connection, *(str(c[k]) for k in COLUMNS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ),
            file=out,
        )
    for old in tally.too_old:
        why = f"the limit is {old['limit_days']}" if old["limit_days"] else "the ledger no longer remembers it"
        print(
            f"too old: {old['event_id']} ({old['source']}) for {old['connection']}: {old['age_days']} days, {why}",
            file=out,
        )
    if tally.superseded:
        print(f"{tally.superseded} archived event(s) superseded: their ids were accepted anew since", file=out)
    for bad in tally.invalid:
        print(f"invalid: {bad['event_id']} ({bad['source']}): {bad['reason']}", file=out)


def progress_bar(err: TextIO) -> Callable[[int, int, Tally], None]:
    """A progress bar on a terminal (stderr); nothing otherwise."""
    if not err.isatty():
        return lambda done, total, tally: None

    def show(done: int, total: int, tally: Tally) -> None:
        width = 30
        filled = width * done // max(total, 1)
        sent = sum(c["sent"] for c in tally.counts.values())
        err.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} objects  {tally.events} events  {sent} sent"
        )
        if done == total:
            err.write("\n")
        err.flush()

    return show


def parse_time(value: str, name: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: must be an ISO-8601 time such as 2026-12-01T00:00:00Z, not {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)

"""`relay forget`: a person's events erased from the archive, the journeys and the ledger's personal fields
(docs/operations.md, "Erasure").

A person is named the ways the relay keeps them: a user id, the SHA-256 of their normalised email, the SHA-256
of their phone's digits (`--email`/`--phone` are hashed here, never sent or written anywhere). Every archive
object holding one of their events is written again without it (or deleted when nothing is left), and so is
every object Firehose kept under errors/ (records as the ingest sent them, when the transformation failed);
then each of those events' journey items is rewritten without it (relay.journey.erasure), a dead letter's
reason is dropped, and the ingest's claim is marked forgotten, so `relay trace`, GET /v1/events/{id} and the
debugger page tell nothing of it. The vendors' claims stay: a client that sends the event again is not
delivered twice.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from relay.archive import PREFIX
from relay.archive.reading import object_lines, read_line, source_of_key
from relay.aws.ledger import DEAD_LETTERED_STATE, INGEST, batch_key, bundle_key, claim_key
from relay.journey import decode, fitted, journey_key
from relay.journey.erasure import FORGOTTEN, erase_events
from relay.journey.trace import batches_of
from relay.models import pii
from relay.models.names import ledger_name
from relay_tools.archive_store import ArchiveStack

ERRORS_PREFIX = "errors/"


@dataclass(frozen=True)
class Person:
    user_ids: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()  # SHA-256 of the normalised email
    phones: frozenset[str] = frozenset()  # SHA-256 of the digits, country code included

    def __bool__(self) -> bool:
        return bool(self.user_ids or self.emails or self.phones)

    def matches_line(self, line: dict[str, Any]) -> bool:
        return (
            line.get("user_id") in self.user_ids
            or line.get("email_sha256") in self.emails
            or line.get("phone_sha256") in self.phones
        )

    def matches_event(self, event: dict[str, Any]) -> bool:
        """An event as the ingest sent it (personal fields in clear): the same digests, made here."""
        user = event.get("user") if isinstance(event.get("user"), dict) else {}
        if user.get("id") in self.user_ids:
            return True
        email, phone = user.get("email"), user.get("phone")
        if isinstance(email, str) and pii.hash_email(email) in self.emails:
            return True
        try:
            return isinstance(phone, str) and pii.hash_phone_digits(phone, user.get("country")) in self.phones
        except pii.PhoneError:
            return False


def person(
    user_ids: Iterable[str],
    emails: Iterable[str],
    email_digests: Iterable[str],
    phones: Iterable[str],
    phone_digests: Iterable[str],
    country: str | None = None,
) -> Person:
    """Raises ValueError naming the option whose value is not what it should be."""
    for digest in [*email_digests, *phone_digests]:
        if not pii.as_sha256(digest):
            raise ValueError("--email-sha256/--phone-sha256: must be 64 hex digits (a SHA-256)")
    hashed_phones = []
    for phone in phones:
        try:
            hashed_phones.append(pii.hash_phone_digits(phone, country))
        except pii.PhoneError as exc:
            raise ValueError(f"--phone: {exc}") from None
    for email in emails:
        if not pii.looks_like_email(email):
            raise ValueError("--email: must be an email address")
    return Person(
        frozenset(user_ids),
        frozenset([pii.hash_email(e) for e in emails] + [d.lower() for d in email_digests]),
        frozenset(hashed_phones + [d.lower() for d in phone_digests]),
    )


@dataclass
class Erasure:
    events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (source, event_id) -> its line
    objects_rewritten: int = 0
    objects_deleted: int = 0
    error_records: int = 0  # events taken out of Firehose's error objects
    journey_items: int = 0
    claims_forgotten: int = 0
    dead_letter_reasons: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "events": [{"source": s, "event_id": e} for s, e in sorted(self.events)],
            "objects_rewritten": self.objects_rewritten,
            "objects_deleted": self.objects_deleted,
            "error_records": self.error_records,
            "journey_items": self.journey_items,
            "claims_forgotten": self.claims_forgotten,
            "dead_letter_reasons": self.dead_letter_reasons,
        }


class Forget:
    def __init__(self, archive: ArchiveStack, who: Person, dry_run: bool = False):
        self.archive, self.who, self.dry_run = archive, who, dry_run
        self.s3, self.ddb = archive.clients["s3"], archive.clients["dynamodb"]
        self.result = Erasure()

    def run(self) -> Erasure:
        for key in self._keys(PREFIX):
            self._archive_object(key)
        for key in self._keys(ERRORS_PREFIX):
            self._error_object(key)
        if not self.dry_run:
            for (source, event_id), line in self.result.events.items():
                self._ledger(source, event_id, line)
        return self.result

    def _keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.archive.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def _archive_object(self, key: str) -> None:
        source = source_of_key(key)
        kept, found = [], False
        for raw in object_lines(self.archive.body(key)):
            line = json.loads(raw)
            if self.who.matches_line(line):
                self.result.events[(source, str(line["event_id"]))] = read_line(raw, source).line
                found = True
            else:
                kept.append(raw)
        if found:
            self._write(key, kept)

    def _error_object(self, key: str) -> None:
        kept, found = [], False
        for raw in object_lines(self.archive.body(key)):
            record = json.loads(raw)
            message = json.loads(base64.b64decode(record.get("rawData", "")) or b"{}")
            events = message.get("events") if isinstance(message, dict) else None
            if not isinstance(events, list):
                kept.append(raw)
                continue
            left = [e for e in events if not (isinstance(e, dict) and self.who.matches_event(e.get("event") or {}))]
            self.result.error_records += len(events) - len(left)
            found |= len(left) != len(events)
            if left:
                record["rawData"] = base64.b64encode(json.dumps({**message, "events": left}).encode()).decode()
                kept.append(json.dumps(record).encode())
        if found:
            self._write(key, kept)

    def _write(self, key: str, kept: list[bytes]) -> None:
        if kept:
            self.result.objects_rewritten += 1
            if not self.dry_run:
                self.archive.replace(key, gzip.compress(b"".join(line + b"\n" for line in kept)))
        else:
            self.result.objects_deleted += 1
            if not self.dry_run:
                self.s3.delete_object(Bucket=self.archive.bucket, Key=key)

    def _ledger(self, source: str, event_id: str, line: dict[str, Any]) -> None:
        """The event's journey items rewritten, its dead letters' reasons dropped, its ingest claim forgotten."""
        ingest = ledger_name(INGEST, source)
        claim = self._get(claim_key(ingest, event_id))
        if claim and "batch" in claim:
            self._journey(batch_key(ingest, claim["batch"]["S"]), event_id)
        connections = set(line.get("connections") or []) | set(self.archive.config.sections())
        for connection in sorted(connections):
            namespace = ledger_name(connection, source)
            own = self._get(claim_key(namespace, event_id))
            shared = self._get(bundle_key(namespace, line["bundle"])) if line.get("bundle") else None
            for batch in batches_of(own, shared):
                self._journey(journey_key(namespace, batch), event_id)
            if own and own.get("status", {}).get("S") == DEAD_LETTERED_STATE and "why" in own:
                self._update(own["id"]["S"], "REMOVE why")
                self.result.dead_letter_reasons += 1
        if claim:
            self._update(claim["id"]["S"], f"SET {FORGOTTEN} = :t", {":t": {"BOOL": True}})
            self.result.claims_forgotten += 1

    def _journey(self, key: str, event_id: str) -> None:
        item = self._get(key)
        if not item or "data" not in item:
            return
        data, changed = erase_events(decode(item["data"]["B"]), {event_id})
        if changed:
            self._update(key, "SET #d = :d", {":d": {"B": fitted(data)}}, {"#d": "data"})
            self.result.journey_items += 1

    def _get(self, key: str) -> dict[str, Any] | None:
        table = self.archive.table
        return self.ddb.get_item(TableName=table, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")

    def _update(
        self, key: str, expression: str, values: dict[str, Any] | None = None, names: dict[str, str] | None = None
    ) -> None:
        self.ddb.update_item(
            TableName=self.archive.table,
            Key={"id": {"S": key}},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(id)",  # never creates a record
            **({"ExpressionAttributeValues": values} if values else {}),
            **({"ExpressionAttributeNames": names} if names else {}),
        )

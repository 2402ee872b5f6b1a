"""Exactly-once bookkeeping on DynamoDB: a claim per event or bundle, one record per batch.

Who claims what: the ingest (``vendor`` INGEST) claims every event it queues, once for all vendors
(`claim_many`: one TransactWriteItems per request, items reduced to key, status, batch, lease and
expiration), so a client's resend is stopped before it is queued;
a vendor function claims each message it receives — a bundle (`claim_bundle`, one claim for its events)
or a lone event (`claim`) — since SQS may deliver a message again (docs/decisions/0002).

The records (relay.aws.records): a **claim** per vendor and event, or per bundle (relay.aws.bundle_claims),
holding a **batch** and a **lease**; a **batch** record per invocation, listing what it did not deliver and
what it moved to the DLQ. The ingest's claims: relay.aws.ingest_claims.

An event is delivered once its claim names a batch whose record exists and does not list it. So a
delivery costs one write per event and vendor plus one per batch of up to 100 events, where Powertools
Idempotency's in-progress and completed records cost two per event. What it guarantees is the same: an
invocation that dies before writing its batch record leaves claims whose lease runs out, and then the
events are sent again (the window in which a crash can duplicate is the same as between Powertools'
in-progress and completed).

The key is a hash of ``[vendor, event_id]`` only: a resend of the same event_id with another body is still
a duplicate. A delivered event is remembered for the dedupe horizon (`dedupe_horizon_seconds`); so is an
event the relay moved to the DLQ, with the SQS message id it moved: a redelivery of that very message (an
invocation that failed after the move) is neither sent nor dead-lettered again, while any other message
with the event (`relay dlq redrive`, a client's resend) takes the record over and is sent anew.

Every write is conditional on the state it expects (docs/decisions/0008): a claim on the record's absence
or on the record it takes over being unchanged, a batch record on its absence, a release on the batch it
deletes, a dead letter on the claim being this batch's (or absent), the ingest's queued-for list on its
earlier value. No write overwrites a delivered record or a claim it does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from relay.aws.bundle_claims import BundleClaims
from relay.aws.ingest_claims import IngestClaims
from relay.aws.records import (
    CLAIMED,
    COMPLETED_TTL_SECONDS,
    DAY_SECONDS,
    DEAD_LETTERED_STATE,
    INGEST,
    KEY_PREFIX,
    MAX_LISTED_FAILURES,
    MAX_TRAIL,
    QUEUED_FOR,
    REQUEUED,
    SETTLED,
    Claim,
    _set,
    batch_key,
    bundle_key,
    claim_key,
    dedupe_horizon_seconds,
)

__all__ = [
    "COMPLETED_TTL_SECONDS",
    "DAY_SECONDS",
    "INGEST",
    "KEY_PREFIX",
    "QUEUED_FOR",
    "REQUEUED",
    "Claim",
    "DeliveryLedger",
    "batch_key",
    "bundle_key",
    "claim_key",
    "dedupe_horizon_seconds",
]


class DeliveryLedger(IngestClaims, BundleClaims):
    """The ledger of one vendor (or the ingest): its claims, and the records that settle them."""

    def settle(
        self,
        batch: str,
        delivered: Mapping[str, int | None],
        failed: Iterable[str],
        moved: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """After sending, one write: `delivered` event_id -> HTTP status, `failed` the claimed event_ids that
        were not delivered (listed, so a retry can take their claims over), `moved` those dead-lettered
        instead (done with, not delivered); `extra`: more attributes for the record (the ingest's journey of
        the request, relay.journey). Raises if the record cannot be written: the batch's claims then run out
        with their lease."""
        failed = list(dict.fromkeys(failed))
        moved = list(dict.fromkeys(moved))
        if len(failed) > MAX_LISTED_FAILURES:
            raise ValueError(f"a batch lists at most {MAX_LISTED_FAILURES} failed events, not {len(failed)}")
        statuses = sorted({str(s) for s in delivered.values() if s is not None})
        self.client.put_item(
            TableName=self.table_name,
            ConditionExpression="attribute_not_exists(id)",  # a batch is settled once
            Item={
                "id": {"S": self.batch_key(batch)},
                "status": {"S": SETTLED},
                "vendor": {"S": self.vendor},
                "delivered": {"N": str(len(delivered))},
                "http": {"L": [{"S": s} for s in statuses]},
                "failed": {"L": [{"S": e} for e in failed]},
                **({"moved": {"L": [{"S": e} for e in moved]}} if moved else {}),
                **(extra or {}),
                "expiration": {"N": str(int(self.clock()) + self.horizon_seconds)},
            },
        )

    def dead_lettered(
        self, event_id: str, message_id: str, outcome: str, trail: Sequence[str] = (), batch: str | None = None
    ) -> bool:
        """After the move to the DLQ: a redelivery of this message is then dropped, not moved twice. `trail`:
        the batches that tried it (its journey); `batch`: the invocation's, whose claim the record replaces.
        Written only over no record, this batch's own claim or an earlier dead letter: False when another
        claim holds the event (it was delivered, or is in flight, from another message; the letter's
        redrive then finds it a duplicate)."""
        from botocore.exceptions import ClientError

        extra = {"trail": {"L": [{"S": b} for b in trail[-MAX_TRAIL - 1 :]]}} if trail else {}
        item = self._event_record(
            event_id, DEAD_LETTERED_STATE, self.clock(), message_id={"S": message_id}, why={"S": outcome}, **extra
        )
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(id) OR #s = :dead OR #b = :batch",
                ExpressionAttributeNames={"#s": "status", "#b": "batch"},
                ExpressionAttributeValues={":dead": {"S": DEAD_LETTERED_STATE}, ":batch": {"S": batch or "-"}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def claimed_bundle(self, event_id: str) -> tuple[bool, str | None]:
        """(whether this namespace remembers the event, the bundle its claim records): `relay replay` checks an
        archived event's identity against the ingest's claim (an id accepted anew after the ledger forgot it is
        another event, under another bundle)."""
        key = {"id": {"S": claim_key(self.vendor, event_id)}}
        item = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
        if not item or int(item.get("expiration", {}).get("N", "0")) < self.clock():
            return False, None
        return True, item["bundle"]["S"] if "bundle" in item else None

    def was_delivered(self, event_id: str, bundle: str | None = None) -> bool:
        """Whether this namespace delivered the event: its claim (or its bundle's, when it was published in one)
        is settled by a batch that does not list it failed or moved. What `relay replay` asks before queuing an
        event again; in doubt (a claim in flight, or one whose invocation died) False: the vendor function's own
        claim of what the replay queues decides, and never sends twice."""
        key = self.bundle_key(bundle) if bundle else claim_key(self.vendor, event_id)
        item = self.client.get_item(TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
        if not item or item.get("status", {}).get("S") != CLAIMED:
            return False
        if bundle and (event_id not in _set(item, "events") or event_id in _set(item, "owed") | _set(item, "moved")):
            return False
        if bundle and "pending" in item and event_id not in _set(item, "pending"):
            return True  # delivered by an earlier batch of the bundle
        settled = self._batch_record(item["batch"]["S"])
        return settled is not None and event_id not in _set(settled, "failed") | _set(settled, "moved")

    @staticmethod
    def delivered_events(items: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
        """(vendor, event_id) -> HTTP status(es) of every delivered event among scanned table items; `vendor` is
        the claims' namespace: the connection, and "@<source>" for a source other than default
        (relay.models.names.ledger_name)."""
        items = list(items)
        batches = {
            item["id"]["S"].split(".batch#", 1)[1]: item
            for item in items
            if item.get("status", {}).get("S") == SETTLED and ".batch#" in item["id"]["S"]
        }
        dead = {
            (item["vendor"]["S"], item["event_id"]["S"])
            for item in items
            if item.get("status", {}).get("S") == DEAD_LETTERED_STATE
        }
        out = {}
        for item in items:
            namespace = item.get("vendor", {}).get("S", INGEST)
            if item.get("status", {}).get("S") != CLAIMED or namespace.split("@", 1)[0] == INGEST:
                continue  # the ingest's claims (written without `vendor` by claim_many) say nothing of vendors
            settled = batches.get(item["batch"]["S"])
            if settled is None:
                continue
            done = {v["S"] for name in ("failed", "moved") for v in settled.get(name, {}).get("L", [])}
            http = "/".join(v["S"] for v in settled.get("http", {}).get("L", []))
            vendor = item["vendor"]["S"]
            events = [v["S"] for v in item["events"]["L"]] if "events" in item else [item["event_id"]["S"]]
            for event_id in events:
                if event_id not in done and (vendor, event_id) not in dead:
                    out[(vendor, event_id)] = http
        return out

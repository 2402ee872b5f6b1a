"""The ledger's records on DynamoDB and the claim of one event (relay.aws.ledger tells the whole story).

Two kinds of record in the idempotency table (hash key `id`, TTL attribute `expiration`):

- a **claim** per vendor and event, ``s2s-relay.<vendor>#<md5 of [vendor, event_id]>``, written with a
  conditional put before the event is sent: only one invocation holds it. It names its **batch** (one
  vendor-function invocation) and a **lease**, the invocation's remaining time: until then the event is
  in flight.
- a **batch** record, ``s2s-relay.<vendor>.batch#<batch id>``, written once after every event of the
  batch was sent or failed. It lists the events that were *not* delivered (a retry takes their claims
  over) and, apart, those moved to the DLQ. A bundle's claim (``s2s-relay.<vendor>.bundle#<id>``,
  relay.aws.bundle_claims) lists its events.

`LedgerTable` holds what every claim needs: the keys, the records' items, the conditional put, and `claim`,
the claim of one event (a vendor function's lone event; the ingest's, one by one, when its transaction is
refused).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Self

from relay.models.environment import DAY_SECONDS, SQS_MAX_RETENTION_SECONDS

if TYPE_CHECKING:
    from relay.models.environment import FunctionEnvironment

HORIZON_MARGIN_SECONDS = DAY_SECONDS  # beyond the longest path, for clock skew and slow TTL deletion
DEFAULT_DEAD_LETTER_RETENTION_SECONDS = SQS_MAX_RETENTION_SECONDS  # the DLQs' in template.yaml
MAX_FUTURE_SKEW_SECONDS = 300  # an event may be stamped this far ahead (relay.models.event.MAX_FUTURE_SKEW)


def dedupe_horizon_seconds(
    max_event_age_days: int,
    dead_letter_retention_seconds: int = DEFAULT_DEAD_LETTER_RETENTION_SECONDS,
    archive_retention_days: int = 0,
) -> int:
    """How long the ledger remembers an event: longer than any path by which it can come back.

    - a client's resend: the ingest accepts an event until it is `max_event_age_days` old (plus the
      future skew it allows), and its first claim was written after it happened;
    - a message coming back to a vendor function: SQS redelivers from the queue, `relay dlq redrive`
      from the DLQ, never later than the DLQ's retention after it was first queued (for standard queues
      SQS counts retention from the original enqueue time);
    - `relay replay`: any event the archive still holds (`archive_retention_days`, 0 when there is no archive)
      is sent again only to connections that have not delivered it (docs/decisions/0010).
    """
    longest = max(
        max_event_age_days * DAY_SECONDS + MAX_FUTURE_SKEW_SECONDS,
        dead_letter_retention_seconds,
        archive_retention_days * DAY_SECONDS,
    )
    return longest + HORIZON_MARGIN_SECONDS


# with the template's defaults (MaxEventAgeDays 7): 15 days
COMPLETED_TTL_SECONDS = dedupe_horizon_seconds(7)
KEY_PREFIX = "s2s-relay"
CLAIMED, DEAD_LETTERED_STATE, SETTLED = "CLAIMED", "DEAD_LETTERED", "SETTLED"
# failures one batch record lists (its DynamoDB item stays under 400 KB; an SQS batch is at most 100 events)
MAX_LISTED_FAILURES = 1000
TRANSACTION_MAX_ITEMS = 100  # DynamoDB TransactWriteItems
QUEUED_FOR = "to"  # the ingest's claim: the vendors the event is queued for, comma-separated
REQUEUED = "requeued_"  # the ingest's claim: when a fixed resend queued the event for this vendor too
INGEST = "ingest"  # the ledger's "vendor" for the ingest's claims (one per event, for every vendor)
MAX_TRAIL = 24  # the earlier batches a claim taken over names (relay.journey: its earlier attempts)


def _strings(values: Iterable[str]) -> dict[str, Any]:
    """A DynamoDB list of strings, sorted (the same set writes the same item)."""
    return {"L": [{"S": v} for v in sorted(values)]}


def _set(item: Mapping[str, Any], name: str) -> set[str]:
    return {v["S"] for v in item.get(name, {}).get("L", [])}


class Claim(Enum):
    CLAIMED = "claimed"  # ours to send
    DUPLICATE = "duplicate"  # already delivered: do not send again
    IN_FLIGHT = "in_flight"  # another invocation is sending it right now: retry later
    DEAD_LETTERED = "dead_lettered"  # already moved to the DLQ: do not send or move it again


def _lease(now: float, remaining_ms: int) -> dict[str, str]:
    """Until when (ms since the epoch) a claim is in flight: the claiming invocation's remaining time."""
    return {"N": str(int((now + max(remaining_ms, 1) / 1000) * 1000))}


def claim_key(vendor: str, event_id: str) -> str:
    """The key of `vendor`'s record of an event: a digest of ``[vendor, event_id]`` (any event_id fits a key)."""
    if event_id.isascii() and event_id.isprintable() and '"' not in event_id and "\\" not in event_id:
        text = f'["{vendor}", "{event_id}"]'  # what json.dumps writes for it, at a fifth of the CPU (the ingest)
    else:
        text = json.dumps([vendor, event_id], sort_keys=True)
    digest = hashlib.md5(text.encode(), usedforsecurity=False)
    return f"{KEY_PREFIX}.{vendor}#{digest.hexdigest()}"


def batch_key(vendor: str, batch: str) -> str:
    """The key of a batch's record (one ingest request, or one vendor-function invocation)."""
    return f"{KEY_PREFIX}.{vendor}.batch#{batch}"


def bundle_key(vendor: str, bundle: str) -> str:
    """A bundle's claim: its own namespace, which no event's claim (`claim_key`, a digest after "#") or batch
    record can share, whatever the event_id."""
    return f"{KEY_PREFIX}.{vendor}.bundle#{bundle}"


class LedgerTable:
    def __init__(
        self,
        vendor: str,
        table_name: str,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        horizon_seconds: int = COMPLETED_TTL_SECONDS,
    ):
        self.vendor = vendor
        self.table_name = table_name
        self._client = client
        self.clock = clock
        self.horizon_seconds = horizon_seconds  # every record's time to live (dedupe_horizon_seconds)
        # claim key -> the batches that held it, this one last (relay.journey: an event's attempts)
        self.trails: dict[str, list[str]] = {}
        # the ingest's: event_id -> the bundle its claim records (the one to publish it in), for the last claims
        self.bundle_of: dict[str, str] = {}

    def scoped(self, name: str) -> Self:
        """The ledger of another namespace (relay.models.names.ledger_name) on the same table and client."""
        return type(self)(name, self.table_name, self._client, clock=self.clock, horizon_seconds=self.horizon_seconds)

    @classmethod
    def for_function(
        cls,
        vendor: str,
        environment: FunctionEnvironment,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> Self:
        """The ledger of a function: its table, and the horizon derived from its environment's maximum event
        age, dead-letter retention and archive retention."""
        horizon = dedupe_horizon_seconds(
            environment.max_event_age_days,
            environment.dead_letter_retention_seconds,
            environment.archive_retention_days,
        )
        return cls(vendor, environment.idempotency_table, client, clock=clock, horizon_seconds=horizon)

    @property
    def client(self) -> Any:
        if self._client is None:
            from relay.aws.clients import TRUSTED_CALLS, new_client

            self._client = new_client("dynamodb", TRUSTED_CALLS)
        return self._client

    @staticmethod
    def new_batch() -> str:
        return uuid.uuid4().hex

    def batch_key(self, batch: str) -> str:
        return batch_key(self.vendor, batch)

    def bundle_key(self, bundle: str) -> str:
        return bundle_key(self.vendor, bundle)

    def claim(
        self,
        event_id: str,
        remaining_ms: int,
        batch: str,
        message_id: str | None = None,
        queued_for: Sequence[str] = (),
        bundle: str | None = None,
    ) -> Claim:
        """Before sending. `batch`: this invocation's (new_batch); `message_id`: the SQS message the event
        came in (see `dead_lettered`); `queued_for`, `bundle`: the ingest's, the vendors the event is queued
        for and the bundle it is to be published in (a claim taken over keeps the bundle it recorded:
        `bundle_of` tells which the claim holds)."""
        now = self.clock()
        lease = _lease(now, remaining_ms)
        extra = {QUEUED_FOR: {"S": ",".join(sorted(queued_for))}} if queued_for else {}
        if bundle:
            extra["bundle"] = {"S": bundle}
        item = self._event_record(event_id, CLAIMED, now, batch={"S": batch}, lease=lease, **extra)
        self._note_bundle(event_id, item)
        self.trails[item["id"]["S"]] = [batch]
        old = self._put(item, "attribute_not_exists(id) OR expiration < :now", {":now": {"N": str(int(now))}})
        if old is None:
            return Claim.CLAIMED
        if not old:  # the record went away between the put and the read: try once more
            old = self._put(item, "attribute_not_exists(id)", None)
            if old is None:
                return Claim.CLAIMED
            if not old:
                return Claim.IN_FLIGHT
        verdict = self._verdict(old, event_id, message_id, now)
        if verdict is not None:
            return verdict
        # the old holder is gone (lease over, or its batch failed it, or it was dead-lettered from another
        # message): take the record over, unless someone else just did. An event keeps the identity its earlier
        # holder may have published it under, its bundle or none (alone), whatever this request planned
        # (docs/decisions/0008).
        if "bundle" in old:
            item["bundle"] = old["bundle"]
        else:
            item.pop("bundle", None)
        self._note_bundle(event_id, item)
        self._follow(item, old, batch)
        condition, values = self._unchanged(old)
        return Claim.CLAIMED if self._put(item, condition, values) is None else Claim.IN_FLIGHT

    def _note_bundle(self, event_id: str, item: Mapping[str, Any]) -> None:
        if "bundle" in item:
            self.bundle_of[event_id] = item["bundle"]["S"]
        else:
            self.bundle_of.pop(event_id, None)

    def _verdict(self, old: Mapping[str, Any], event_id: str, message_id: str | None, now: float) -> Claim | None:
        """What an existing record means for a new claim; None = it may be taken over."""
        status = old.get("status", {}).get("S")
        if status == CLAIMED:
            settled = self._batch_record(old["batch"]["S"])
            if settled is not None:
                failed = {v["S"] for v in settled.get("failed", {}).get("L", [])}
                return None if event_id in failed else Claim.DUPLICATE
            return Claim.IN_FLIGHT if int(old["lease"]["N"]) > now * 1000 else None
        if status == DEAD_LETTERED_STATE:
            moved_from = old.get("message_id", {}).get("S")
            # only a redelivery of the message it was moved from is dropped
            return Claim.DEAD_LETTERED if message_id is not None and moved_from == message_id else None
        return None

    def _follow(self, item: dict[str, Any], old: Mapping[str, Any], batch: str) -> None:
        """A claim that takes `old` over names the batches before it (`trail`, the last MAX_TRAIL)."""
        trail = [v["S"] for v in old.get("trail", {}).get("L", [])]
        if "batch" in old:
            trail.append(old["batch"]["S"])
        trail = trail[-MAX_TRAIL:]
        if trail:
            item["trail"] = {"L": [{"S": b} for b in trail]}
        self.trails[item["id"]["S"]] = [*trail, batch]

    def trail(self, event_id: str, bundle: str | None = None) -> list[str]:
        """The batches that held this event's claim (or its bundle's) in this container, the last one last."""
        return self.trails.get(claim_key(self.vendor, event_id)) or (
            self.trails.get(self.bundle_key(bundle), []) if bundle else []
        )

    def _batch_record(self, batch: str) -> dict[str, Any] | None:
        return self.client.get_item(
            TableName=self.table_name, Key={"id": {"S": self.batch_key(batch)}}, ConsistentRead=True
        ).get("Item")

    @staticmethod
    def _unchanged(old: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """A condition that holds only while the record is still `old` (compare-and-swap)."""
        if "batch" in old:
            return "#s = :s AND #b = :b", {":s": old["status"], ":b": old["batch"]}
        if "message_id" in old:
            return "#s = :s AND message_id = :m", {":s": old["status"], ":m": old["message_id"]}
        return "#s = :s AND expiration = :e", {":s": old["status"], ":e": old["expiration"]}

    def _put(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None) -> dict[str, Any] | None:
        """A conditional put: None when written, else the record that stood in the way ({} if none)."""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": item,
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if "#s" in condition:
            kwargs["ExpressionAttributeNames"] = {"#s": "status", **({"#b": "batch"} if "#b" in condition else {})}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self.client.put_item(**kwargs)
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            if old is None:  # older DynamoDB endpoints do not return it: read it
                old = self.client.get_item(TableName=self.table_name, Key={"id": item["id"]}, ConsistentRead=True).get(
                    "Item"
                )
            return old or {}

    def _event_record(self, event_id: str, status: str, now: float, **attributes: dict[str, Any]) -> dict[str, Any]:
        """The item of one vendor's record of an event (a claim or a dead letter)."""
        return self._record(claim_key(self.vendor, event_id), status, now, event_id={"S": event_id}, **attributes)

    def _record(self, key: str, status: str, now: float, **attributes: dict[str, Any]) -> dict[str, Any]:
        """A claim's or dead letter's item, kept for the dedupe horizon."""
        return {
            "id": {"S": key},
            "status": {"S": status},
            "vendor": {"S": self.vendor},
            **attributes,
            "expiration": {"N": str(int(now) + self.horizon_seconds)},
        }

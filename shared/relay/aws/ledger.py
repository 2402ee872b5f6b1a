"""Exactly-once bookkeeping on DynamoDB: a claim per event or bundle, one record per batch.

Who claims what: the ingest (``vendor`` INGEST) claims every event it queues, once for all vendors
(`claim_many`: one TransactWriteItems per request, items reduced to key, status, batch, lease and
expiration), so a client's resend is stopped before it is queued;
a vendor function claims each message it receives — a bundle (`claim_bundle`, one claim for its events)
or a lone event (`claim`) — since SQS may deliver a message again (docs/decisions/0002).

Two kinds of record in the idempotency table (hash key `id`, TTL attribute `expiration`):

- a **claim** per vendor and event, ``s2s-relay.<vendor>#<md5 of [vendor, event_id]>``, written with a
  conditional put before the event is sent: only one invocation holds it. It names its **batch** (one
  vendor-function invocation) and a **lease**, the invocation's remaining time: until then the event is
  in flight.
- a **batch** record, ``s2s-relay.<vendor>.batch#<batch id>``, written once after every event of the
  batch was sent or failed. It lists the events that were *not* delivered (a retry takes their claims
  over) and, apart, those moved to the DLQ. A bundle's claim (``s2s-relay.<vendor>.bundle#<id>``) lists its
  events; taken over, it records which of them are still to send (``pending``).

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

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from relay.models.environment import DAY_SECONDS, SQS_MAX_RETENTION_SECONDS

if TYPE_CHECKING:
    from relay.models.environment import FunctionEnvironment

HORIZON_MARGIN_SECONDS = DAY_SECONDS  # beyond the longest path, for clock skew and slow TTL deletion
DEFAULT_DEAD_LETTER_RETENTION_SECONDS = SQS_MAX_RETENTION_SECONDS  # the DLQs' in template.yaml
MAX_FUTURE_SKEW_SECONDS = 300  # an event may be stamped this far ahead (relay.models.event.MAX_FUTURE_SKEW)


def dedupe_horizon_seconds(
    max_event_age_days: int, dead_letter_retention_seconds: int = DEFAULT_DEAD_LETTER_RETENTION_SECONDS
) -> int:
    """How long the ledger remembers an event: longer than any path by which it can come back.

    - a client's resend: the ingest accepts an event until it is `max_event_age_days` old (plus the
      future skew it allows), and its first claim was written after it happened;
    - a message coming back to a vendor function: SQS redelivers from the queue, `relay dlq redrive`
      from the DLQ, never later than the DLQ's retention after it was first queued (for standard queues
      SQS counts retention from the original enqueue time).
    """
    longest = max(max_event_age_days * DAY_SECONDS + MAX_FUTURE_SKEW_SECONDS, dead_letter_retention_seconds)
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


class DeliveryLedger:
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

    @classmethod
    def for_function(
        cls,
        vendor: str,
        environment: FunctionEnvironment,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> DeliveryLedger:
        """The ledger of a function: its table, and the horizon derived from its environment's maximum event
        age and dead-letter retention."""
        horizon = dedupe_horizon_seconds(environment.max_event_age_days, environment.dead_letter_retention_seconds)
        return cls(vendor, environment.idempotency_table, client, clock=clock, horizon_seconds=horizon)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            from relay.aws.clients import AWS_CALLS

            # the items are built here from validated data: botocore's own parameter validation only costs CPU
            self._client = boto3.client("dynamodb", config=AWS_CALLS.merge(Config(parameter_validation=False)))
        return self._client

    @staticmethod
    def new_batch() -> str:
        return uuid.uuid4().hex

    def batch_key(self, batch: str) -> str:
        return batch_key(self.vendor, batch)

    def bundle_key(self, bundle: str) -> str:
        return bundle_key(self.vendor, bundle)

    # -- claims ------------------------------------------------------------------------------------

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

    def claim_many(
        self,
        event_ids: Sequence[str],
        remaining_ms: int,
        batch: str,
        queued_for: Mapping[str, Sequence[str]] | None = None,
        bundles: Mapping[str, str] | None = None,
    ) -> dict[str, Claim]:
        """Claims for several distinct events at once (the ingest: every event of a request): one
        TransactWriteItems of up to 100 conditional puts — one call, two write units per event. When
        DynamoDB refuses some (a record exists: a resend; or a concurrent transaction), nothing was
        written: the others are claimed together again and the refused ones one by one (`claim`). `bundles`:
        the bundle each event is to be published in (none: its own message); `bundle_of` then holds, for
        each claimed event, the bundle its claim records."""
        out: dict[str, Claim] = {}
        self.bundle_of = {}
        for start in range(0, len(event_ids), TRANSACTION_MAX_ITEMS):
            part = list(event_ids[start : start + TRANSACTION_MAX_ITEMS])
            out.update(self._claim_together(part, remaining_ms, batch, queued_for or {}, bundles or {}))
        return out

    def _claim_together(
        self,
        event_ids: list[str],
        remaining_ms: int,
        batch: str,
        queued_for: Mapping[str, Sequence[str]],
        bundles: Mapping[str, str],
    ) -> dict[str, Claim]:
        from botocore.exceptions import ClientError

        if len(event_ids) <= 1:
            return {e: self._claim_or_in_flight(e, remaining_ms, batch, queued_for, bundles) for e in event_ids}
        now = self.clock()
        lease = _lease(now, remaining_ms)
        batch_value, expiration = {"S": batch}, {"N": str(int(now) + self.horizon_seconds)}
        puts = [
            {
                "Put": {
                    "TableName": self.table_name,
                    # the key says whose claim it is (no `vendor`, `event_id` attributes): a quarter of the
                    # call's CPU, the ingest's biggest line after mapping
                    "Item": {
                        "id": {"S": claim_key(self.vendor, e)},
                        "status": {"S": CLAIMED},
                        "batch": batch_value,
                        "lease": lease,
                        "expiration": expiration,
                        **({QUEUED_FOR: {"S": ",".join(sorted(queued_for[e]))}} if queued_for.get(e) else {}),
                        **({"bundle": {"S": bundles[e]}} if bundles.get(e) else {}),
                    },
                    # a record whose TTL passed but that DynamoDB has not deleted yet is refused here and
                    # taken over by `claim`, which knows expiry (rare: 15 days, older than any event accepted)
                    "ConditionExpression": "attribute_not_exists(id)",
                }
            }
            for e in event_ids
        ]
        try:
            self.client.transact_write_items(TransactItems=puts)
            self.bundle_of.update({e: bundles[e] for e in event_ids if bundles.get(e)})
            return dict.fromkeys(event_ids, Claim.CLAIMED)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
        refused = [e for e, r in zip(event_ids, reasons, strict=False) if r.get("Code") not in (None, "None")]
        if not refused:  # no reason per event: settle each one by one
            refused = event_ids
        others = [e for e in event_ids if e not in refused]
        out = self._claim_together(others, remaining_ms, batch, queued_for, bundles)
        for event_id in refused:  # the others are claimed now: a failure here must not lose them
            out[event_id] = self._claim_or_in_flight(event_id, remaining_ms, batch, queued_for, bundles)
        return out

    def _claim_or_in_flight(
        self,
        event_id: str,
        remaining_ms: int,
        batch: str,
        queued_for: Mapping[str, Sequence[str]],
        bundles: Mapping[str, str],
    ) -> Claim:
        """`claim`, or IN_FLIGHT when DynamoDB refuses the call (throttled, the item in another transaction):
        the caller then asks for a resend of that event alone, and lists it as not delivered in its batch
        record, in case the write happened and only its answer was lost (a resend then takes it over)."""
        try:
            return self.claim(
                event_id, remaining_ms, batch, queued_for=queued_for.get(event_id, ()), bundle=bundles.get(event_id)
            )
        except Exception:  # noqa: BLE001 - see above
            return Claim.IN_FLIGHT

    def queued_for(self, event_id: str) -> frozenset[str] | None:
        """The vendors the ingest queued an event for (None: a record without the list, which counts as queued
        for every vendor: never a second delivery); `bundle_of` then holds the bundle its claim records."""
        key = {"id": {"S": claim_key(self.vendor, event_id)}}
        old = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item") or {}
        self._note_bundle(event_id, old)
        return frozenset(old[QUEUED_FOR]["S"].split(",")) if QUEUED_FOR in old else None

    def add_queued_for(self, event_id: str, before: Iterable[str], vendors: Iterable[str], at: float) -> None:
        """Record that the event, queued for `before`, is now queued for `vendors` too, at `at` (a client fixed
        what those vendors found invalid: its journey says so, `requeued_<vendor>`). Conditional on the list
        still being `before`: when a concurrent resend recorded another vendor first, this raises, and the next
        resend publishes again (the vendor function claims the event under its one identity: sent once)."""
        vendors = sorted(set(vendors))
        names = {"#q": QUEUED_FOR, **{f"#r{i}": f"{REQUEUED}{v}" for i, v in enumerate(vendors)}}
        self.client.update_item(
            TableName=self.table_name,
            Key={"id": {"S": claim_key(self.vendor, event_id)}},
            UpdateExpression="SET #q = :all, " + ", ".join(f"#r{i} = :at" for i in range(len(vendors))),
            ConditionExpression="#q = :before",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":all": {"S": ",".join(sorted({*before, *vendors}))},
                ":before": {"S": ",".join(sorted(before))},
                ":at": {"N": str(round(at, 3))},
            },
        )

    def claim_bundle(
        self,
        bundle: str,
        messages: Mapping[str, Sequence[str]],
        remaining_ms: int,
        batch: str,
    ) -> tuple[Claim, frozenset[str]]:
        """One claim for the events of a bundle (relay.queued.message) — one write, where `claim` costs one per
        event. Returns the claim and the event_ids this invocation is to send.

        A bundle's id is the identity of its events at this vendor: the ingest publishes an event under the
        bundle its first claim recorded, whatever the order or grouping of a resend (docs/decisions/0008), and
        a dead letter of a bundle's event is itself a bundle of one with that id. So messages with the same
        bundle id may carry different events. The claim keeps `events` (every event published under the id),
        `pending` (what its batch is sending; absent: all of `events`), `owed` (events not delivered yet that
        its batch is not sending) and `moved` (events moved to the DLQ, not delivered). An event is still to
        send when it is new to the bundle, owed, pending and not delivered by the last batch (its record lists
        it failed; or it died before settling: in doubt, sent again), or moved to the DLQ and now back in its
        own letter (a bundle of one, redriven); a redelivery of the very message it was moved from sends it no
        more. `messages`: the event_ids of this bundle in each SQS message of the batch (by message id): letters of
        one bundle redriven together are claimed together, each still a bundle of one."""
        now = self.clock()
        lease = _lease(now, remaining_ms)
        everything = frozenset(e for ids in messages.values() for e in ids)
        item = self._record(
            self.bundle_key(bundle), CLAIMED, now, bundle={"S": bundle}, batch={"S": batch}, lease=lease
        )
        item["events"] = _strings(everything)
        self.trails[item["id"]["S"]] = [batch]
        old = self._put(item, "attribute_not_exists(id) OR expiration < :now", {":now": {"N": str(int(now))}})
        if old is None:
            return Claim.CLAIMED, everything
        if not old or old.get("status", {}).get("S") != CLAIMED:
            return Claim.IN_FLIGHT, frozenset()
        state = self._bundle_state(old, now)
        if state is None:
            return Claim.IN_FLIGHT, frozenset()
        known, undone, moved = state
        # a moved event is sent again only from its own dead letter, redriven (a bundle of one): another copy of a
        # message it was in leaves it in the DLQ, with its reason
        again = moved & {e for ids in messages.values() if len(ids) == 1 for e in ids}
        back = everything & (undone | again)  # what the message it was moved from does not send again
        here = {e for m, ids in messages.items() for e in self._moved_from(back & set(ids), m)} if back else set()
        to_send = (everything - known) | ((everything & (undone | again)) - here)
        if not to_send:
            return Claim.DUPLICATE, frozenset()
        item["events"] = _strings(known | everything)
        if to_send != known | everything:
            item["pending"] = _strings(to_send)
        if undone - everything:
            item["owed"] = _strings(undone - everything)
        if moved - to_send:
            item["moved"] = _strings(moved - to_send)
        self._follow(item, old, batch)
        condition, values = self._unchanged(old)
        return (
            (Claim.CLAIMED, frozenset(to_send))
            if self._put(item, condition, values) is None
            else (Claim.IN_FLIGHT, frozenset())
        )

    def _bundle_state(self, old: Mapping[str, Any], now: float) -> tuple[set[str], set[str], set[str]] | None:
        """A bundle claim about to be taken over: its events, those not delivered (owed, or its batch's failed),
        and those moved to the DLQ; None while its holder may still be sending."""
        known = _set(old, "events")
        pending = _set(old, "pending") if "pending" in old else known
        moved = _set(old, "moved")
        settled = self._batch_record(old["batch"]["S"])
        if settled is not None:
            return (
                known,
                _set(old, "owed") | (pending & _set(settled, "failed")),
                moved | (pending & _set(settled, "moved")),
            )
        if int(old["lease"]["N"]) > now * 1000:
            return None
        # its holder died before settling: what it was sending is in doubt (sent again), the rest was delivered
        return known, _set(old, "owed") | pending, moved

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

    def _moved_from(self, event_ids: Iterable[str], message_id: str) -> set[str]:
        """Those of `event_ids` that `dead_lettered` recorded as moved from SQS message `message_id` (an
        event of a bundle is moved with the key "<message id>#<index>"). One read per event: only after an
        invocation died between its DLQ moves and its batch record."""
        moved = set()
        for event_id in event_ids:
            item = (
                self.client.get_item(
                    TableName=self.table_name, Key={"id": {"S": claim_key(self.vendor, event_id)}}, ConsistentRead=True
                ).get("Item")
                or {}
            )
            source = item.get("message_id", {}).get("S", "")
            if item.get("status", {}).get("S") == DEAD_LETTERED_STATE and source.split("#", 1)[0] == message_id:
                moved.add(event_id)
        return moved

    def _batch_record(self, batch: str) -> dict[str, Any] | None:
        return self.client.get_item(
            TableName=self.table_name, Key={"id": {"S": self.batch_key(batch)}}, ConsistentRead=True
        ).get("Item")

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

    # -- settling ----------------------------------------------------------------------------------

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

    def release(self, batch: str, event_ids: Sequence[str]) -> None:
        """Delete the claims `batch` holds on `event_ids` (the ingest: events it claimed and could not
        publish), so that a resend claims them again in one transaction — a claim settled as failed is
        taken over event by event, three calls each. Deletes only claims still `batch`'s. Raises when
        DynamoDB refuses: the caller then lists them as failed in the batch record."""
        from botocore.exceptions import ClientError

        for start in range(0, len(event_ids), TRANSACTION_MAX_ITEMS):
            deletes = [
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": {"id": {"S": claim_key(self.vendor, e)}},
                        "ConditionExpression": "#b = :b",
                        "ExpressionAttributeNames": {"#b": "batch"},
                        "ExpressionAttributeValues": {":b": {"S": batch}},
                    }
                }
                for e in event_ids[start : start + TRANSACTION_MAX_ITEMS]
            ]
            if len(deletes) == 1:
                item = deletes[0]["Delete"]
                try:
                    self.client.delete_item(**item)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                        raise
                continue
            self.client.transact_write_items(TransactItems=deletes)

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

    # -- reading back (relay dev / make demo) ------------------------------------------------------

    @staticmethod
    def delivered_events(items: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
        """(vendor, event_id) -> HTTP status(es) of every delivered event among scanned table items."""
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
            if item.get("status", {}).get("S") != CLAIMED or item.get("vendor", {}).get("S", INGEST) == INGEST:
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

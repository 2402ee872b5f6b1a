"""The ingest's claims (relay.aws.ledger): one per event, for every vendor, written together in one
TransactWriteItems per request, with the vendors the event is queued for and the bundle it is published in;
released when the request could not publish them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from relay.aws.records import (
    CLAIMED,
    QUEUED_FOR,
    REQUEUED,
    TRANSACTION_MAX_ITEMS,
    Claim,
    LedgerTable,
    _lease,
    claim_key,
)


class IngestClaims(LedgerTable):
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
        status, condition = {"S": CLAIMED}, "attribute_not_exists(id)"
        puts, joined = [], {}  # joined: each list of vendors as written (a request has a handful)
        for e in event_ids:
            # the key says whose claim it is (no `vendor`, `event_id` attributes): a quarter of the call's CPU,
            # the ingest's biggest line after mapping
            item = {"id": {"S": claim_key(self.vendor, e)}, "status": status, "batch": batch_value, "lease": lease}
            item["expiration"] = expiration
            if vendors := tuple(queued_for.get(e) or ()):
                if vendors not in joined:
                    joined[vendors] = {"S": ",".join(sorted(vendors))}
                item[QUEUED_FOR] = joined[vendors]
            if bundles.get(e):
                item["bundle"] = {"S": bundles[e]}
            # a record whose TTL passed but that DynamoDB has not deleted yet is refused here and taken over
            # by `claim`, which knows expiry (rare: 15 days, older than any event accepted)
            puts.append({"Put": {"TableName": self.table_name, "Item": item, "ConditionExpression": condition}})
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

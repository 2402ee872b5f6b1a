"""The vendor functions' handler, built by a factory so that tests inject clients and configuration.

`functions/<vendor>/app.py` is one line: ``lambda_handler = vendor_handler("applovin")``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from relay.aws.ledger import DeliveryLedger
from relay.aws.secrets import SecretRefresh, load_vendor_config
from relay.delivery.forwarding import (
    AUTH,
    CONFIG,
    DISABLED,
    DUPLICATE,
    FORWARDED,
    INVALID,
    SEND_WORKERS,
    SKIPPED,
    Delivery,
    Forwarder,
    RetryPolicy,
    new_http_client,
)
from relay.delivery.response import batch_response
from relay.models.config import ConfigError, RelayConfig
from relay.observability import MetricUnit, logger, metrics, traced
from relay.queued.message import Item, parse_message

if TYPE_CHECKING:  # imported when a batch has something to dead-letter: most never do (cold start)
    from relay.delivery.deadletter import DeadLetterQueue

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class VendorDisabled(Exception):
    """The function's vendor is turned off in the configuration (its messages were queued before)."""


def parse_record(record: dict[str, Any], vendor: str) -> list[Item]:
    """The events in an SQS record's body (SNS raw message delivery): a bundle's, or the one of a queued
    message or an older relay's canonical event, each with `vendor`'s part or the reason it cannot be read
    (relay.queued). Only the body is read: the record envelope is Lambda's own, and validating its fields
    too (Powertools' `SqsRecordModel`) cost a third of the relay's CPU per AppLovin event and 65 ms of
    import time (README "Performance and cost")."""
    return parse_message(record["messageId"], record.get("body") or "", vendor)


def vendor_handler(
    vendor: str,
    load_config: Callable[[], RelayConfig] | None = None,
    http_client: httpx.Client | None = None,
    ledger: DeliveryLedger | None = None,
    dead_letters: DeadLetterQueue | None = None,
    max_workers: int = SEND_WORKERS,
    sleep: Callable[[float], None] = time.sleep,
    max_receive_count: int | None = None,
    secret_refresh: SecretRefresh | None = None,
    policy: RetryPolicy | None = None,
) -> Handler:
    """The handler of a vendor function. Clients, the ledger and the DLQ come from the environment
    (RELAY_IDEMPOTENCY_TABLE, RELAY_DLQ_URL, RELAY_MAX_RECEIVE_COUNT) unless injected; `policy`: the
    retries and deadlines (the local stack's shorter vendor timeout). When the vendor
    refuses the credentials, the next invocation re-reads the secret (`SecretRefresh`: a rotated key
    takes effect at once, not when the cache expires)."""
    cache: dict[tuple[str, ...], Forwarder] = {}
    refresh = secret_refresh or SecretRefresh()
    parts: dict[str, Any] = {"client": http_client, "ledger": ledger, "dlq": dead_letters}

    def part(name: str, make: Callable[[], Any]) -> Any:
        if parts[name] is None:
            parts[name] = make()
        return parts[name]

    def current() -> Forwarder:
        config = load_config() if load_config else load_vendor_config(vendor, refresh=refresh.take())
        if not config.enabled(vendor):
            raise VendorDisabled(
                f"{vendor} is disabled in the relay's configuration (RELAY_{vendor.upper()}_ENABLED); "
                "enable it and redrive its DLQ to send these events"
            )
        key = tuple(config.secret_values())
        if key not in cache:
            for old in cache.values():
                old.close()
            cache.clear()
            cache[key] = Forwarder(
                vendor,
                config,
                part("client", new_http_client),
                ledger=part("ledger", lambda: DeliveryLedger.from_env(vendor, os.environ)),
                max_workers=max_workers,
                sleep=sleep,
                **({"policy": policy} if policy else {}),
            )
        return cache[key]

    def deliver(
        records: list[dict[str, Any]], remaining_ms: Callable[[], int]
    ) -> tuple[dict[str, Delivery], dict[str, Item], Forwarder | None]:
        """A Delivery for every event of the batch (Item.key), and the events read."""
        items = {item.key: item for record in records for item in parse_record(record, vendor)}
        try:
            forwarder = current()
        except ConfigError as exc:
            refresh.due()  # a secret being filled in: read it again next time, not when the cache expires
            logger.error(f"{vendor} configuration unusable", extra={"errors": [str(e) for e in exc.errors]})
            metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
            return {key: Delivery(False, CONFIG, f"{vendor} configuration unusable") for key in items}, items, None
        except VendorDisabled as exc:  # disabled while its messages were queued: kept, with why, in its DLQ
            logger.error(str(exc))
            return {key: Delivery(False, DISABLED, str(exc)) for key in items}, items, None
        results = {key: Delivery(False, INVALID, item.error) for key, item in items.items() if item.error}
        events = {key: item.event for key, item in items.items() if item.event is not None}
        bundles = {key: item.bundle for key, item in items.items() if item.bundle and item.event is not None}
        # settled by the handler once it moved what it dead-letters (those are done with, not to retry)
        again = {r["messageId"] for r in records if r.get("attributes", {}).get("ApproximateReceiveCount", "1") != "1"}
        redelivered = frozenset(item.bundle for item in items.values() if item.bundle and item.message_id in again)
        results.update(forwarder.deliver(events, remaining_ms, bundles, settle=False, redelivered=redelivered))
        stats = forwarder.stats
        for _status, _n, latency in stats.requests:
            metrics.add_metric("VendorLatency", MetricUnit.Milliseconds, latency)
        metrics.add_metric("VendorRequests", MetricUnit.Count, len(stats.requests))
        metrics.add_metric("VendorRetries", MetricUnit.Count, stats.retries)
        metrics.add_metric("BisectRequests", MetricUnit.Count, stats.bisect_requests)
        auth = sorted({d.status for d in results.values() if d.outcome == AUTH})
        if auth:
            refresh.due()
            metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
            logger.error(f"{vendor} refused the relay's credentials", extra={"status": auth})
        return results, items, forwarder

    def dead_letter(
        records: list[dict[str, Any]], results: dict[str, Delivery], items: dict[str, Item], whole: bool
    ) -> set[str]:
        """Move permanent failures, and failures on their last allowed receive, to the DLQ with reasons, one
        dead letter per event (an event of a bundle gets its own message); returns the keys moved.

        `whole`: the failure is the function's, not the events' (its vendor disabled, its configuration
        unusable), and no claim was taken: each SQS message is moved as it is, a bundle whole, so that a
        redrive brings back the very message, which the ledger knows — never a lone copy of an event of a
        bundle that a redelivery of the bundle might also send."""
        from relay.delivery.deadletter import DeadLetter, DeadLetterQueue, body_event_id

        max_receives = max_receive_count or int(os.environ.get("RELAY_MAX_RECEIVE_COUNT", "0") or 0)
        by_id = {record["messageId"]: record for record in records}
        letters = []
        keys_of: dict[str, list[str]] = {}  # a letter's key -> the item keys it moves
        for key, item in items.items():
            delivery = results[key]
            if delivery.ok:
                continue
            record = by_id[item.message_id]
            receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
            last_try = max_receives > 0 and receives >= max_receives
            if not (delivery.permanent or last_try):
                continue
            letter_key = item.message_id if whole else key
            keys_of.setdefault(letter_key, []).append(key)
            if len(keys_of[letter_key]) > 1:
                continue  # the message's letter is made already
            reason = delivery.reason if delivery.permanent else f"gave up after {receives} receives: {delivery.reason}"
            one = not whole or item.bundle is None
            letters.append(
                DeadLetter(
                    record,
                    vendor,
                    (item.event.event_id if item.event else body_event_id(item.body)) if one else None,
                    delivery.outcome if delivery.permanent else "retries_exhausted",
                    reason,
                    delivery.status,
                    delivery.response,
                    key=letter_key,
                    body=item.body if not whole else record.get("body") or "",
                )
            )
        if not letters:
            return set()
        dlq = part("dlq", lambda: DeadLetterQueue(os.environ["RELAY_DLQ_URL"]))
        failed = dlq.send(letters)
        moved_letters = {letter.key for letter in letters} - failed
        moved = {key for letter_key in moved_letters for key in keys_of[letter_key]}
        for letter in letters:
            if letter.key in moved_letters:
                logger.warning(
                    "moved to the dead-letter queue",
                    extra={
                        "event_id": letter.event_id,
                        "outcome": letter.outcome,
                        "reason": letter.reason,
                        "status": letter.status,
                    },
                )
        metrics.add_metric("EventsDeadLettered", MetricUnit.Count, len(moved))
        ledger = parts["ledger"]
        for letter in letters:
            if ledger is not None and letter.event_id and letter.key in moved_letters:
                try:  # a redelivered copy (this invocation failing from here on) is then not moved twice
                    ledger.dead_lettered(letter.event_id, letter.key, letter.outcome)
                except Exception:  # noqa: BLE001 - at worst a second DLQ copy, never a lost event
                    metrics.add_metric("LedgerErrors", MetricUnit.Count, 1)
                    logger.error("could not record a dead-lettered event", extra={"event_id": letter.event_id})
        return moved

    @logger.inject_lambda_context(clear_state=True)
    @traced
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.add_dimension("vendor", vendor)
        records = event.get("Records", [])
        results, items, forwarder = deliver(records, context.get_remaining_time_in_millis)
        moved = dead_letter(records, results, items, whole=forwarder is None)
        if forwarder is not None:
            forwarder.settle(results, moved)
            if forwarder.stats.ledger_errors:
                metrics.add_metric("LedgerErrors", MetricUnit.Count, forwarder.stats.ledger_errors)
                logger.error("could not record deliveries in the idempotency table")
        counts = {FORWARDED: 0, SKIPPED: 0, DUPLICATE: 0, "retry": 0}
        retry: list[str] = []  # SQS message ids: a bundle is received again while any of its events needs it
        for key, delivery in results.items():
            if delivery.ok:
                counts[delivery.outcome] += 1
            elif key not in moved:
                counts["retry"] += 1
                item = items[key]
                if item.message_id not in retry:
                    retry.append(item.message_id)
                logger.warning(
                    "delivery failed, kept for retry",
                    extra={
                        "event_id": item.event.event_id if item.event else None,
                        "message_id": key,
                        "outcome": delivery.outcome,
                        "reason": delivery.reason,
                        "status": delivery.status,
                    },
                )
        metrics.add_metric("EventsForwarded", MetricUnit.Count, counts[FORWARDED])
        metrics.add_metric("EventsSkipped", MetricUnit.Count, counts[SKIPPED])
        metrics.add_metric("DuplicateEvents", MetricUnit.Count, counts[DUPLICATE])
        metrics.add_metric("EventsFailed", MetricUnit.Count, counts["retry"])
        logger.info(
            f"{vendor} batch",
            extra={"records": len(records), "events": len(items), "dead_lettered": len(moved), **counts},
        )
        return batch_response(retry)

    return handler

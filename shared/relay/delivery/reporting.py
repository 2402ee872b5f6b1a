"""What a vendor function's batch reports (relay.delivery.function): the metrics of its vendor requests, and
each event's outcome counted and logged."""

from __future__ import annotations

from typing import Any

from relay.delivery.forwarding import Forwarder
from relay.delivery.letters import Events, Results
from relay.delivery.outcomes import Outcome
from relay.observability import MetricUnit, logger, metrics
from relay.vendors.base import IDENTIFIER_KINDS


def record_requests(forwarder: Forwarder) -> None:
    """The metrics of the vendor requests of the last batch."""
    stats = forwarder.stats
    for call in stats.calls:
        metrics.add_metric("VendorLatency", MetricUnit.Milliseconds, call.latency_ms)
    metrics.add_metric("VendorRequests", MetricUnit.Count, len(stats.calls))
    metrics.add_metric("VendorRetries", MetricUnit.Count, stats.retries)
    metrics.add_metric("BisectRequests", MetricUnit.Count, stats.bisect_requests)
    for kind in IDENTIFIER_KINDS:  # share of EventsForwarded carrying each kind of identifier (match quality)
        metrics.add_metric(match_metric(kind), MetricUnit.Count, stats.identifiers[kind])


def match_metric(kind: str) -> str:
    """`email` -> `MatchEmail`, `click_id` -> `MatchClickId`."""
    return "Match" + "".join(part.capitalize() for part in kind.split("_"))


def report(vendor: str, records: list[dict[str, Any]], results: Results, events: Events, moved: set[str]) -> list[str]:
    """Log and count the batch's outcomes; returns the SQS message ids to receive again."""
    counts = {Outcome.FORWARDED.value: 0, Outcome.SKIPPED.value: 0, Outcome.DUPLICATE.value: 0, "retry": 0}
    retry: list[str] = []
    for key, delivery in results.items():
        if delivery.ok:
            counts[delivery.outcome.value] += 1
            continue
        if key in moved:
            continue
        counts["retry"] += 1
        queued = events[key]
        if queued.message_id not in retry:
            retry.append(queued.message_id)
        logger.warning(
            "delivery failed, kept for retry",
            extra={
                "event_id": queued.event.event_id if queued.event else None,
                "message_id": key,
                "outcome": delivery.outcome,
                "reason": delivery.reason,
                "status": delivery.status,
            },
        )
    metrics.add_metric("EventsForwarded", MetricUnit.Count, counts[Outcome.FORWARDED.value])
    metrics.add_metric("EventsSkipped", MetricUnit.Count, counts[Outcome.SKIPPED.value])
    metrics.add_metric("DuplicateEvents", MetricUnit.Count, counts[Outcome.DUPLICATE.value])
    metrics.add_metric("EventsFailed", MetricUnit.Count, counts["retry"])
    logger.info(
        f"{vendor} batch",
        extra={"records": len(records), "events": len(events), "dead_lettered": len(moved), **counts},
    )
    return retry


# what each connection reports under its own `connection` dimension (docs/operations.md, "Metrics"): the
# template's per-connection alarms and dashboard read these; each is a custom metric per connection, priced
# in the cost model (relay_tools.cost, docs/performance.md)
CONNECTION_METRICS = (
    "EventsForwarded",
    "EventsFailed",
    "EventsDeadLettered",
    "VendorAuthFailures",
    "CircuitOpenSeconds",
)


def report_connection(vendor: str, connection: str, results: Results, moved: set[str], open_seconds: float) -> None:
    """One lane's metrics under the dimensions vendor and connection (one EMF record): what it forwarded, kept
    for a retry and dead-lettered, whether its key was refused, and how long its circuit has been open."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    lane = EphemeralMetrics()
    lane.add_dimension("vendor", vendor)
    lane.add_dimension("connection", connection)
    counts = dict.fromkeys(CONNECTION_METRICS[:4], 0)
    for key, delivery in results.items():
        if delivery.outcome == Outcome.FORWARDED:
            counts["EventsForwarded"] += 1
        elif key in moved:
            counts["EventsDeadLettered"] += 1
        elif not delivery.ok:
            counts["EventsFailed"] += 1
        if delivery.outcome in (Outcome.AUTH, Outcome.CONFIG):  # its key refused, or missing
            counts["VendorAuthFailures"] = 1
    for name, value in counts.items():
        lane.add_metric(name, MetricUnit.Count, value)
    lane.add_metric("CircuitOpenSeconds", MetricUnit.Seconds, round(open_seconds))
    lane.flush_metrics()

"""What one stack costs a month whatever its traffic, and what each connection adds (docs/performance.md,
"One stack, many connections"): the fixed part of the bill, counted from template.yaml and the metrics the
functions emit. `relay_tools.cost` prices the traffic.

Every price is a named constant with its source page, as it stood on relay_tools.cost.PRICES_AS_OF (us-east-1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from relay.delivery.reporting import CONNECTION_METRICS
from relay.journey.refusals import REASONS
from relay.vendors.base import IDENTIFIER_KINDS
from relay_tools.cost import TEMPLATE, VENDORS

# https://aws.amazon.com/cloudwatch/pricing/ : custom metrics, first 10,000 per month (each name and set of
# dimension values is one metric)
CUSTOM_METRIC_PER_MONTH = 0.30
# same page: standard-resolution alarms, per metric an alarm lists (a metric-math alarm: each of its metrics)
ALARM_METRIC_PER_MONTH = 0.10
# same page: alarms on a Metrics Insights query, per metric the query analyzes
INSIGHTS_ALARM_PER_METRIC_PER_MONTH = 0.02
# same page: dashboards (three are free per account; a stack's is priced as one more)
DASHBOARD_PER_MONTH = 3.00
# https://aws.amazon.com/secrets-manager/pricing/ : per secret per month
SECRET_PER_MONTH = 0.40
# https://aws.amazon.com/kms/pricing/ : per customer managed key per month
KMS_KEY_PER_MONTH = 1.00
HOURS_PER_MONTH = 730

# the metrics each function emits without a connection dimension (tests/unit/test_stack_cost.py checks them
# against the code): the ingest's, and each vendor function's, its match-quality metrics included
INGEST_METRICS = (
    "EventsReceived",
    "EventsRejected",
    "DuplicateEvents",
    "LedgerErrors",
    "IngestServerErrors",
    "ArchiveFailures",
    "RefusalsNotRecorded",
)
ARCHIVE_METRICS = ("EventsArchived", "ArchiveRecordsFailed")  # ArchiveFunction's (relay.archive.lines)
VENDOR_METRICS = (
    "BisectRequests",
    "CircuitClosed",
    "CircuitErrors",
    "CircuitOpenSeconds",
    "CircuitOpened",
    "DuplicateEvents",
    "EventsDeadLettered",
    "EventsFailed",
    "EventsForwarded",
    "EventsHeld",
    "EventsRedriven",
    "EventsSkipped",
    "JourneyErrors",
    "LedgerErrors",
    "OldestRetryAgeSeconds",
    "RedriveErrors",
    "RetryDelays",
    "VendorAuthFailures",
    "VendorLatency",
    "VendorRequests",
    "VendorRetries",
    *("Match" + "".join(p.capitalize() for p in kind.split("_")) for kind in IDENTIFIER_KINDS),
)
_INSIGHTS = re.compile(r"SELECT \w+\((\w+)\) FROM SCHEMA\((\w+)")


@dataclass(frozen=True)
class FixedLine:
    item: str
    usd_per_month: float
    basis: str


def _alarm_metrics(props: dict[str, Any]) -> tuple[int, int]:
    """(metrics a standard alarm lists, Metrics Insights queries) of one alarm."""
    queries = [
        m
        for m in props.get("Metrics", [])
        if isinstance(m.get("Expression"), str) and _INSIGHTS.search(m["Expression"])
    ]
    listed = [m for m in props.get("Metrics", []) if "MetricStat" in m]
    return (len(listed) if "Metrics" in props else 1), len(queries)


def per_stack() -> list[FixedLine]:
    """What one stack costs a month with its connections named default (no traffic counted)."""
    from relay_tools.stack import load_template

    resources = load_template(TEMPLATE)["Resources"].values()
    kinds = [r["Type"] for r in resources]
    alarms = [_alarm_metrics(r["Properties"]) for r in resources if r["Type"] == "AWS::CloudWatch::Alarm"]
    standard = sum(listed for listed, queries in alarms if not queries)
    metrics = len(INGEST_METRICS) + len(VENDORS) * len(VENDOR_METRICS) + len(ARCHIVE_METRICS)
    # RequestsRefused, one metric per reason: CloudWatch bills a metric by the hours it gets data, so a reason
    # no request is refused for costs nothing; counted here as if every reason occurred all month
    refused = len(REASONS)
    keys = kinds.count("AWS::KMS::Key")
    return [
        FixedLine(
            "CloudWatch custom metrics",
            (metrics + refused) * CUSTOM_METRIC_PER_MONTH,
            f"{metrics} metrics (ingest, 3 vendors, archive), at most {refused} refusal reasons",
        ),
        FixedLine("CloudWatch alarms", standard * ALARM_METRIC_PER_MONTH, f"{standard} alarm metrics"),
        FixedLine(
            "CloudWatch dashboard",
            kinds.count("AWS::CloudWatch::Dashboard") * DASHBOARD_PER_MONTH,
            f"{kinds.count('AWS::CloudWatch::Dashboard')} dashboard",
        ),
        FixedLine(
            "Secrets Manager",
            kinds.count("AWS::SecretsManager::Secret") * SECRET_PER_MONTH,
            f"{kinds.count('AWS::SecretsManager::Secret')} secrets (every source and connection inside them)",
        ),
        FixedLine("KMS", keys * KMS_KEY_PER_MONTH, f"{keys} keys (the alarm topic's, the archive's)"),
        _minimum_capacity(resources),
    ]


def _minimum_capacity(resources: Any) -> FixedLine:
    """TableCapacity=provisioned: the capacity auto scaling never goes below, on the table and its index."""
    from relay_tools.cost import DYNAMODB_PER_RCU_HOUR, DYNAMODB_PER_WCU_HOUR, template_default

    targets = [r["Properties"] for r in resources if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"]
    writes = sum(int(t["MinCapacity"]) for t in targets if t["ScalableDimension"].endswith("WriteCapacityUnits"))
    reads = sum(int(t["MinCapacity"]) for t in targets if t["ScalableDimension"].endswith("ReadCapacityUnits"))
    usd = HOURS_PER_MONTH * (writes * DYNAMODB_PER_WCU_HOUR + reads * DYNAMODB_PER_RCU_HOUR)
    if template_default("TableCapacity") != "provisioned":
        return FixedLine("DynamoDB minimum capacity", 0.0, f"on demand (TableCapacity=provisioned: ${usd:.2f})")
    return FixedLine("DynamoDB minimum capacity", usd, f"{writes} write and {reads} read units at the least")


def per_connection() -> list[FixedLine]:
    """What each named connection adds a month: its own metrics, and what the per-connection alarms analyze."""
    from relay_tools.stack import load_template

    resources = load_template(TEMPLATE)["Resources"].values()
    queries = sum(_alarm_metrics(r["Properties"])[1] for r in resources if r["Type"] == "AWS::CloudWatch::Alarm")
    return [
        FixedLine(
            "CloudWatch custom metrics",
            len(CONNECTION_METRICS) * CUSTOM_METRIC_PER_MONTH,
            f"{len(CONNECTION_METRICS)} metrics with its connection dimension",
        ),
        FixedLine(
            "CloudWatch alarms",
            queries * INSIGHTS_ALARM_PER_METRIC_PER_MONTH,
            f"{queries} Metrics Insights alarms, one metric of it each",
        ),
    ]


def monthly(per_vendor: int, stacks: int = 1) -> float:
    """The fixed monthly cost of `per_vendor` connections of each vendor served by `stacks` stacks: each stack's
    first connection per vendor is its default one, every other one a named connection."""
    fixed = sum(line.usd_per_month for line in per_stack())
    each = sum(line.usd_per_month for line in per_connection())
    named = len(VENDORS) * max(per_vendor - stacks, 0)
    return stacks * fixed + named * each

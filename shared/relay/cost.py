"""What running the relay costs on AWS, per million events (README "Performance and cost").

Every price is a named constant with its source page: AWS's public us-east-1 price list as it stood on
PRICES_AS_OF (after the November 2024 DynamoDB on-demand price cut). They were not re-read when this was
written (the build machine has no web access): check the pages before relying on a figure. Durations default to the last
`make bench` (bench/results.json) when it exists, else to the conservative defaults below.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .aws import SECRET_MAX_AGE_SECONDS

PRICES_AS_OF = "2024-11-15"
# https://aws.amazon.com/api-gateway/pricing/ : HTTP APIs, first 300 million requests/month
API_GATEWAY_HTTP_PER_MILLION_REQUESTS = 1.00
# https://aws.amazon.com/lambda/pricing/ : Arm, first 6 billion GB-seconds/month; requests
LAMBDA_ARM_PER_GB_SECOND = 0.0000133334
LAMBDA_PER_MILLION_REQUESTS = 0.20
# https://aws.amazon.com/sns/pricing/ : standard topic, per million API requests (a PublishBatch of up to
# 10 messages and 64 KB is one request); deliveries to SQS queues are not charged by SNS
SNS_PER_MILLION_PUBLISH_REQUESTS = 0.50
# https://aws.amazon.com/sqs/pricing/ : standard queue, per million requests (each 64 KB chunk)
SQS_PER_MILLION_REQUESTS = 0.40
# https://aws.amazon.com/dynamodb/pricing/on-demand/ : per million write request units (the ledger only writes)
DYNAMODB_PER_MILLION_WRITE_UNITS = 0.625
# https://aws.amazon.com/secrets-manager/pricing/ : per 10,000 API calls (secret storage, $0.40 per
# secret per month, is a fixed cost and left out of the per-event figure)
SECRETS_MANAGER_PER_10K_CALLS = 0.05

VENDORS = ("applovin", "appsflyer", "adroll")
FUNCTIONS = {
    "ingest": "IngestFunction",
    "applovin": "AppLovinFunction",
    "appsflyer": "AppsFlyerFunction",
    "adroll": "AdRollFunction",
}
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
# Defaults (ms) when no bench result exists: ingest per request of K events, vendor function per batch.
DEFAULT_INGEST_MS_PER_EVENT = 0.5
DEFAULT_INGEST_MS_FIXED = 5.0
DEFAULT_VENDOR_BATCH_MS = {"applovin": 150.0, "appsflyer": 400.0, "adroll": 150.0}
# one call per cache period (relay.aws.SECRET_MAX_AGE_SECONDS), one container per function
SECRET_CALLS_PER_FUNCTION_PER_MONTH = 30 * 24 * 3600 // SECRET_MAX_AGE_SECONDS
BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"


@dataclass
class CostLine:
    item: str
    usd_per_million: float
    basis: str


def _template_facts() -> tuple[dict[str, int], dict[str, int]]:
    """MemorySize per function and SQS batch size per vendor function, read from template.yaml."""
    from .stack import load_template

    template = load_template(TEMPLATE)
    default = template.get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    memory, batch = {}, {}
    for kind, logical in FUNCTIONS.items():
        props = template["Resources"][logical]["Properties"]
        memory[kind] = int(props.get("MemorySize", default))
        for event in props.get("Events", {}).values():
            if event["Type"] == "SQS":
                batch[kind] = int(event["Properties"].get("BatchSize", 10))
    return memory, batch


def _durations() -> tuple[float, float, dict[str, float]]:
    try:
        data = json.loads(BENCH_RESULTS.read_text())["durations_ms"]
        return data["ingest_fixed"], data["ingest_per_event"], data["vendor_batch"]
    except (OSError, KeyError, ValueError):
        return DEFAULT_INGEST_MS_FIXED, DEFAULT_INGEST_MS_PER_EVENT, dict(DEFAULT_VENDOR_BATCH_MS)


def cost_per_million(
    events_per_request: int = 100, vendors: tuple[str, ...] = VENDORS, events_per_month: int = 1_000_000
) -> list[CostLine]:
    """Dollars per million events, each event forwarded to every vendor in `vendors`."""
    k = max(1, events_per_request)
    n = 1_000_000
    ingest_fixed, ingest_per_event, vendor_ms = _durations()
    memory, batches = _template_facts()
    requests = n / k
    lines = [
        CostLine(
            "API Gateway HTTP API", requests / 1e6 * API_GATEWAY_HTTP_PER_MILLION_REQUESTS, f"{requests:,.0f} requests"
        ),
        CostLine(
            "Lambda ingest",
            requests / 1e6 * LAMBDA_PER_MILLION_REQUESTS
            + requests
            * (ingest_fixed + ingest_per_event * k)
            / 1000
            * memory["ingest"]
            / 1024
            * LAMBDA_ARM_PER_GB_SECOND,
            f"{ingest_fixed + ingest_per_event * k:.1f} ms x {memory['ingest']} MB",
        ),
        CostLine(
            "DynamoDB ingest",
            requests / 1e6 * DYNAMODB_PER_MILLION_WRITE_UNITS,
            "1 write per request (replay guard)",
        ),
        CostLine(  # each ingest request publishes its own events: ceil(k / 10) PublishBatch calls
            "SNS PublishBatch",
            requests * math.ceil(k / 10) / 1e6 * SNS_PER_MILLION_PUBLISH_REQUESTS,
            f"{math.ceil(k / 10)} request(s) of up to 10 events per ingest request",
        ),
    ]
    for vendor in vendors:
        batch = batches[vendor]
        invocations = n / batch
        gb_s = invocations * vendor_ms[vendor] / 1000 * memory[vendor] / 1024
        lines.append(
            CostLine(
                f"Lambda {vendor}",
                invocations / 1e6 * LAMBDA_PER_MILLION_REQUESTS + gb_s * LAMBDA_ARM_PER_GB_SECOND,
                f"{vendor_ms[vendor]:.0f} ms per {batch} events",
            )
        )
        # SNS -> SQS send (1 per event), receive and delete batched by 10
        sqs_requests = n + 2 * n / 10
        lines.append(
            CostLine(
                f"SQS {vendor}",
                sqs_requests / 1e6 * SQS_PER_MILLION_REQUESTS,
                "send 1 + receive 0.1 + delete 0.1 per event",
            )
        )
        # relay.ledger: a claim per event (one write unit: the item is under 1 KB) + a record per batch
        lines.append(
            CostLine(
                f"DynamoDB {vendor}",
                (n + invocations) / 1e6 * DYNAMODB_PER_MILLION_WRITE_UNITS,
                f"1 write per event (claim) + 1 per batch of {batch}",
            )
        )
    calls = (1 + len(vendors)) * SECRET_CALLS_PER_FUNCTION_PER_MONTH * (n / max(events_per_month, 1))
    lines.append(
        CostLine(
            "Secrets Manager",
            calls / 10_000 * SECRETS_MANAGER_PER_10K_CALLS,
            f"1 call / {SECRET_MAX_AGE_SECONDS // 60} min / function at {events_per_month:,} events per month",
        )
    )
    return lines


def report(events_per_month: int, events_per_request: int = 100) -> dict[str, Any]:
    lines = cost_per_million(events_per_request, events_per_month=events_per_month)
    per_million = sum(line.usd_per_million for line in lines)
    return {
        "prices_as_of": PRICES_AS_OF,
        "events_per_request": events_per_request,
        "events_per_month": events_per_month,
        "lines": [asdict(line) for line in lines],
        "usd_per_million_events": per_million,
        "usd_per_month": per_million * events_per_month / 1e6,
    }

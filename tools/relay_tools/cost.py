"""What running the relay costs on AWS, per million events (docs/performance.md).

Every price is a named constant with its source page: AWS's public us-east-1 price list as it stood on
PRICES_AS_OF (after the November 2024 DynamoDB on-demand price cut). Nothing re-reads them: check the pages
before relying on a figure. Durations default to the last `make bench` (bench/results.json) when it
exists, else to the conservative defaults below. `outage_cost` prices what a vendor outage adds: the
receives, visibility changes and short invocations of the events waiting for the vendor.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from relay.aws.secrets import SECRET_MAX_AGE_SECONDS
from relay.models.names import VENDORS
from relay.queued.message import EVENTS_PER_MESSAGE
from relay_tools import billed
from relay_tools.billed import CIRCUIT_READ_UNITS, QUEUED_BYTES_PER_EVENT, chunks

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
# https://aws.amazon.com/dynamodb/pricing/on-demand/ : per million write request units, and read request units
DYNAMODB_PER_MILLION_WRITE_UNITS = 0.625
DYNAMODB_PER_MILLION_READ_UNITS = 0.125
# https://aws.amazon.com/dynamodb/pricing/provisioned/ : per write capacity unit-hour and read capacity
# unit-hour (TableCapacity=provisioned); auto scaling keeps the template's TargetValue (percent) of them used
# (`provisioned_utilization`), so a million units cost 1e6 / (3600 x utilization) unit-hours. The units the
# table and its index keep at the least are the stack's fixed cost (relay_tools.stack_cost).
DYNAMODB_PER_WCU_HOUR = 0.00065
DYNAMODB_PER_RCU_HOUR = 0.00013
# https://aws.amazon.com/secrets-manager/pricing/ : per 10,000 API calls (secret storage, $0.40 per
# secret per month, is a fixed cost and left out of the per-event figure)
SECRETS_MANAGER_PER_10K_CALLS = 0.05

FUNCTIONS = {
    "ingest": "IngestFunction",
    "applovin": "AppLovinFunction",
    "appsflyer": "AppsFlyerFunction",
    "adroll": "AdRollFunction",
}
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
# Defaults (ms) when no bench result exists: ingest per request of K events, vendor function per
# invocation of 1, 10 and 100 events (interpolated in between)
DEFAULT_INGEST_MS_PER_EVENT = 0.5
DEFAULT_INGEST_MS_FIXED = 5.0
DEFAULT_VENDOR_WALL_MS = {
    "applovin": {1: 70.0, 10: 80.0, 100: 150.0},
    "appsflyer": {1: 70.0, 10: 120.0, 100: 800.0},
    "adroll": {1: 70.0, 10: 80.0, 100: 150.0},
}
# one call per cache period (relay.aws.SECRET_MAX_AGE_SECONDS), one container per function
SECRET_CALLS_PER_FUNCTION_PER_MONTH = 30 * 24 * 3600 // SECRET_MAX_AGE_SECONDS
BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"


@dataclass
class CostLine:
    item: str
    usd_per_million: float
    basis: str


@functools.cache
def template() -> dict[str, Any]:
    """template.yaml, read once per process (the model asks it for MemorySize, batch sizes, defaults)."""
    from relay_tools.stack import load_template

    return load_template(TEMPLATE)


def template_facts() -> tuple[dict[str, int], dict[str, int]]:
    """MemorySize per function and SQS batch size per vendor function, read from template.yaml."""
    default = template().get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    memory, batch = {}, {}
    for kind, logical in FUNCTIONS.items():
        props = template()["Resources"][logical]["Properties"]
        memory[kind] = int(props.get("MemorySize", default))
        for event in props.get("Events", {}).values():
            if event["Type"] == "SQS":
                batch[kind] = int(event["Properties"].get("BatchSize", 10))
    return memory, batch


def template_default(parameter: str) -> str:
    """A template parameter's default (what `sam deploy` uses unless told otherwise)."""
    return str(template()["Parameters"][parameter].get("Default", ""))


def provisioned_utilization() -> float:
    """The share of its provisioned capacity auto scaling keeps used (the template's TargetValue, the same for
    every scaling policy)."""
    resources = template()["Resources"].values()
    targets = {
        r["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
        for r in resources
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
    }
    (target,) = targets
    return float(target) / 100


def durations() -> tuple[float, float, dict[str, dict[int, float]]]:
    try:
        data = json.loads(BENCH_RESULTS.read_text())["durations_ms"]
        walls = {v: {int(n): float(ms) for n, ms in per.items()} for v, per in data["vendor_wall"].items()}
        return data["ingest_fixed"], data["ingest_per_event"], walls
    except (OSError, KeyError, ValueError, AttributeError):
        walls = {v: dict(w) for v, w in DEFAULT_VENDOR_WALL_MS.items()}
        return DEFAULT_INGEST_MS_FIXED, DEFAULT_INGEST_MS_PER_EVENT, walls


def invocation_ms(walls: dict[int, float], events: float) -> float:
    """Duration of an invocation of `events` events, interpolated between the measured batch sizes."""
    points = sorted(walls.items())
    if events <= points[0][0]:
        return points[0][1]
    for (n1, w1), (n2, w2) in zip(points, points[1:], strict=False):
        if events <= n2:
            return w1 + (w2 - w1) * (events - n1) / (n2 - n1)
    n, w = points[-1]
    return w * events / n


def cost_per_million(
    events_per_request: int = 100,
    vendors: tuple[str, ...] = VENDORS,
    events_per_month: int = 1_000_000,
    journey: bool = True,
    replay_guard: bool | None = None,
    capacity: str | None = None,
) -> list[CostLine]:
    """Dollars per million events, each event forwarded to every vendor in `vendors`: the billed units of
    relay_tools.billed, priced. `journey`: the events' journeys are kept ([delivery] journey, the Journey
    parameter). `replay_guard`, `capacity`: the ReplayGuard and TableCapacity parameters (their template
    defaults unless given)."""
    k = max(1, events_per_request)
    if replay_guard is None:
        replay_guard = template_default("ReplayGuard") == "true"
    ddb_usd = functools.partial(_ddb_usd, capacity or template_default("TableCapacity"))
    n = 1_000_000
    ingest_fixed, ingest_per_event, walls = durations()
    memory, batches = template_facts()
    units = billed.per_event(k, vendors, batches, journey=journey, replay_guard=replay_guard)
    requests = n * units.api_requests
    ingest_ms = ingest_fixed + ingest_per_event * k
    lines = [
        CostLine(
            "API Gateway HTTP API", requests / 1e6 * API_GATEWAY_HTTP_PER_MILLION_REQUESTS, f"{requests:,.0f} requests"
        ),
        CostLine(
            "Lambda ingest",
            _lambda_usd(requests, ingest_ms, memory["ingest"]),
            f"{ingest_ms:.1f} ms x {memory['ingest']} MB",
        ),
        CostLine("DynamoDB ingest", ddb_usd(n * units.write_units["ingest"]), units.notes["ingest"]),
        CostLine(  # each ingest request publishes its own events: bundles, SNS_MAX_BATCH messages per call
            "SNS PublishBatch",
            n * units.sns_publish / 1e6 * SNS_PER_MILLION_PUBLISH_REQUESTS,
            f"{units.sns_publish * k:g} billed request(s) per ingest request "
            f"({math.ceil(k / units.events_per_message)} message(s) of {units.events_per_message} event(s))",
        ),
    ]
    per_message = units.events_per_message
    for vendor in vendors:
        per_invocation = batches[vendor] * per_message
        ms = invocation_ms(walls[vendor], per_invocation)
        lines += [
            CostLine(
                f"Lambda {vendor}",
                _lambda_usd(n * units.invocations[vendor], ms, memory[vendor]),
                f"{ms:.0f} ms per {per_invocation} events",
            ),
            CostLine(
                f"SQS {vendor}",
                n * units.sqs[vendor] / 1e6 * SQS_PER_MILLION_REQUESTS,
                f"{units.sqs[vendor]:.3f} requests per event (send, receive, delete; {per_message} per message)",
            ),
            CostLine(
                f"DynamoDB {vendor}",
                ddb_usd(n * units.write_units[vendor], n * units.read_units[vendor]),
                f"1 write per message of {per_message} event(s) (claim) + 1 write and a circuit read per"
                f" invocation of {per_invocation}",
            ),
        ]
    if journey:
        journeys = ddb_usd(n * units.write_units["journeys"])
        lines.append(CostLine("DynamoDB journeys", journeys, units.notes["journeys"]))
    calls = (1 + len(vendors)) * SECRET_CALLS_PER_FUNCTION_PER_MONTH * (n / max(events_per_month, 1))
    lines.append(
        CostLine(
            "Secrets Manager",
            calls / 10_000 * SECRETS_MANAGER_PER_10K_CALLS,
            f"1 call / {SECRET_MAX_AGE_SECONDS // 60} min / function at {events_per_month:,} events per month",
        )
    )
    return lines


def _lambda_usd(invocations: float, ms: float, memory_mb: int) -> float:
    gb_s = invocations * ms / 1000 * memory_mb / 1024
    return invocations / 1e6 * LAMBDA_PER_MILLION_REQUESTS + gb_s * LAMBDA_ARM_PER_GB_SECOND


def _ddb_usd(capacity: str, write_units: float, read_units: float = 0.0) -> float:
    """What DynamoDB bills for these units: per request on demand, per capacity-hour provisioned."""
    if capacity == "provisioned":
        hours = 1 / (3600 * provisioned_utilization())
        return write_units * hours * DYNAMODB_PER_WCU_HOUR + read_units * hours * DYNAMODB_PER_RCU_HOUR
    return write_units / 1e6 * DYNAMODB_PER_MILLION_WRITE_UNITS + read_units / 1e6 * DYNAMODB_PER_MILLION_READ_UNITS


# a vendor-function invocation that sends nothing (the circuit is open): its circuit read, a visibility
# change for its batch, the partial batch response (relay.delivery.recovery); an upper bound
HELD_INVOCATION_MS = 50.0


def receives_in(hours: float, max_delay_seconds: int = 3600) -> float:
    """The receives a message waiting through an outage of `hours` gets, on the retry schedule with the
    jitter's average (three quarters of each step)."""
    from relay.delivery.retry import RetrySchedule

    schedule = RetrySchedule(hours * 3600, max_delay_seconds)
    receives, waited = 1, 0.0
    while True:
        waited += max(1.0, schedule.base_delay(receives) * 0.75)
        if waited > hours * 3600:
            return float(receives)
        receives += 1


def outage_cost(
    vendor: str,
    hours: float,
    events_waiting: int = 1_000_000,
    events_per_request: int = 100,
    max_delay_seconds: int = 3600,
) -> dict[str, Any]:
    """What `events_waiting` events waiting `hours` for `vendor` cost beyond their delivery: each receive
    of their messages is an SQS ReceiveMessage share, a ChangeMessageVisibilityBatch share and a Lambda
    invocation share that sends nothing (the circuit's probes, one request a minute, are left out)."""
    memory, batches = template_facts()
    per_message = min(max(1, events_per_request), EVENTS_PER_MESSAGE)
    messages = events_waiting / per_message
    receives = receives_in(hours, max_delay_seconds) * messages
    invocations = receives / batches[vendor]
    per_poll = min(10, batches[vendor])
    sqs_requests = receives / per_poll * chunks(per_poll * per_message * QUEUED_BYTES_PER_EVENT) + invocations
    lambda_usd = invocations / 1e6 * LAMBDA_PER_MILLION_REQUESTS + (
        invocations * HELD_INVOCATION_MS / 1000 * memory[vendor] / 1024 * LAMBDA_ARM_PER_GB_SECOND
    )
    lines = [
        CostLine(
            "SQS receives and visibility changes",
            sqs_requests / 1e6 * SQS_PER_MILLION_REQUESTS,
            f"{sqs_requests:,.0f} requests",
        ),
        CostLine(
            "Lambda invocations that send nothing", lambda_usd, f"{invocations:,.0f} x {HELD_INVOCATION_MS:.0f} ms"
        ),
        CostLine(
            "DynamoDB circuit reads",
            invocations * CIRCUIT_READ_UNITS / 1e6 * DYNAMODB_PER_MILLION_READ_UNITS,
            f"{invocations:,.0f} reads",
        ),
    ]
    return {
        "vendor": vendor,
        "hours": hours,
        "events_waiting": events_waiting,
        "receives_per_message": receives / messages,
        "lines": [asdict(line) for line in lines],
        "usd": sum(line.usd_per_million for line in lines),
    }


def report(
    events_per_month: int, events_per_request: int = 100, journey: bool = True, capacity: str | None = None
) -> dict[str, Any]:
    capacity = capacity or template_default("TableCapacity")
    lines = cost_per_million(events_per_request, events_per_month=events_per_month, journey=journey, capacity=capacity)
    per_million = sum(line.usd_per_million for line in lines)
    return {
        "prices_as_of": PRICES_AS_OF,
        "events_per_request": events_per_request,
        "events_per_month": events_per_month,
        "journey": journey,
        "capacity": capacity,
        "lines": [asdict(line) for line in lines],
        "usd_per_million_events": per_million,
        "usd_per_month": per_million * events_per_month / 1e6,
    }

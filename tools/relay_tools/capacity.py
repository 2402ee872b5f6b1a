"""What one stack sustains with the template's defaults, where the first limit is, and what to raise for 10x
and 100x that (docs/performance.md). Quotas are AWS's defaults in us-east-1, each with its source page; the
vendor functions' durations are the last `make bench`'s (relay_tools.cost), at its vendor latency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from relay.models.names import VENDOR_TITLES, VENDORS
from relay.queued.message import EVENTS_PER_MESSAGE
from relay_tools import billed
from relay_tools.cost import durations, invocation_ms, template_default, template_facts

# https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html : per account and Region
API_ACCOUNT_RPS = 10_000
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html : concurrent executions per Region
LAMBDA_ACCOUNT_CONCURRENCY = 1_000
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html : a new
# on-demand table sustains 4,000 writes/s at once, and twice its previous peak within 30 minutes
DYNAMODB_NEW_TABLE_WRITES = 4_000
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html : per table (raisable)
DYNAMODB_TABLE_WRITES = 40_000
# an ingest request's time in AWS: its DynamoDB and SNS calls, a few ms each, and the CPU of its events
INGEST_CALLS_MS = 30.0
CONCURRENCY_PARAMETERS = {v: f"{VENDOR_TITLES[v]}MaxConcurrency" for v in VENDORS}


@dataclass
class Limit:
    name: str
    events_per_second: float
    default: str
    raise_with: str
    needed: Any = None  # what to set for a rate: a function of events/s
    steady: bool = True  # False: a limit the stack outgrows by itself (on-demand DynamoDB's first peak)


def limits(events_per_request: int) -> list[Limit]:
    """Each limit on the events a stack takes per second, at `events_per_request`, with the defaults."""
    k = max(1, events_per_request)
    _, ingest_per_event, walls = durations()
    _, batches = template_facts()
    units = billed.per_event(k, VENDORS, batches)
    rate = int(template_default("ApiThrottlingRateLimit"))
    out = [
        Limit(
            "API throttling (ApiThrottlingRateLimit)",
            rate * k,
            f"{rate} requests/s",
            "the parameter, up to the account's 10,000 requests/s (raisable)",
            lambda eps: f"{math.ceil(eps / k):,} requests/s",
        )
    ]
    per_message = min(k, EVENTS_PER_MESSAGE)
    for vendor in VENDORS:
        per_invocation = batches[vendor] * per_message
        ms = invocation_ms(walls[vendor], per_invocation)
        concurrency = int(template_default(CONCURRENCY_PARAMETERS[vendor]))
        per_function = per_invocation / ms * 1000
        out.append(
            Limit(
                f"{VENDOR_TITLES[vendor]} function ({CONCURRENCY_PARAMETERS[vendor]})",
                concurrency * per_function,
                f"{concurrency} at a time, {per_function:,.0f} events/s each",
                "the parameter",
                lambda eps, each=per_function: f"{math.ceil(eps / each):,}",
            )
        )
    writes = sum(units.write_units.values())
    out += [
        Limit(
            "DynamoDB on demand, a new table, until it has grown",
            DYNAMODB_NEW_TABLE_WRITES / writes,
            f"{DYNAMODB_NEW_TABLE_WRITES:,} write units/s ({writes:.2f} per event)",
            "nothing for steady growth (it takes twice its last peak within 30 minutes); warm throughput or"
            " provisioned capacity before a launch",
            lambda eps, w=writes: f"{math.ceil(eps * w):,} write units/s",
            steady=False,
        ),
        Limit(
            "DynamoDB table quota",
            DYNAMODB_TABLE_WRITES / writes,
            f"{DYNAMODB_TABLE_WRITES:,} write units/s",
            "a quota increase",
            lambda eps, w=writes: f"{math.ceil(eps * w):,} write units/s",
        ),
    ]
    ingest_ms = INGEST_CALLS_MS + ingest_per_event * k
    each = {v: r for v, r in zip(VENDORS, out[1:4], strict=True)}
    held = sum(int(template_default(p)) for p in CONCURRENCY_PARAMETERS.values())

    def functions(eps: float) -> str:
        vendors = sum(
            math.ceil(eps / (r.events_per_second / int(template_default(CONCURRENCY_PARAMETERS[v]))))
            for v, r in each.items()
        )
        return f"{math.ceil(eps / k * ingest_ms / 1000) + vendors:,} functions at once"

    out.append(
        Limit(
            "Lambda concurrency (account)",
            (LAMBDA_ACCOUNT_CONCURRENCY - held) * k / ingest_ms * 1000,
            f"{LAMBDA_ACCOUNT_CONCURRENCY:,}, the vendor functions hold {held}",
            "a quota increase",
            functions,
        )
    )
    return out


def report(events_per_request: int) -> dict[str, Any]:
    """The limits at `events_per_request`: what the stack sustains (the first limit) and, for 10x and 100x
    that, what each limit below the rate needs."""
    rows = limits(events_per_request)
    first = min((r for r in rows if r.steady), key=lambda r: r.events_per_second)
    scale = {}
    for factor in (10, 100):
        eps = first.events_per_second * factor
        scale[factor] = {r.name: r.needed(eps) for r in rows if r.events_per_second < eps}
    return {
        "events_per_request": events_per_request,
        "sustained": first.events_per_second,
        "first_limit": first.name,
        "limits": [
            {
                "limit": r.name,
                "events_per_second": r.events_per_second,
                "default": r.default,
                "steady": r.steady,
                "raise_with": r.raise_with,
            }
            for r in rows
        ],
        "scale": scale,
    }

"""What AWS bills per event, in its own units (requests, 64 KB chunks, DynamoDB read and write units): the
model `relay_tools.cost` prices and `tests/local/test_billed.py` checks against the calls the relay makes
through the local stack (botocore's event hooks, DynamoDB's consumed capacity).

Every event of a request goes to the same vendors; the ingest puts up to EVENTS_PER_MESSAGE events of a
request in one message (relay.queued); each vendor function gets its template BatchSize of messages per
invocation (or `messages_per_invocation`, what a run observed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from relay.aws.sns import SNS_MAX_BATCH
from relay.models.names import VENDORS
from relay.queued.message import EVENTS_PER_MESSAGE

# SNS and SQS bill each 64 KB chunk of a request's payload as one request
# (https://aws.amazon.com/sns/pricing/, https://aws.amazon.com/sqs/pricing/)
BILLED_CHUNK_BYTES = 65_536
# bytes of one event's queued message (payloads for all three vendors): the largest of events/samples is
# under it (tests/unit/test_cost.py checks); SNS and SQS bill bundles by their size
QUEUED_BYTES_PER_EVENT = 2_000
# the vendor functions read their circuit's state once per invocation: an eventually consistent GetItem of
# under 4 KB, half a read unit (https://aws.amazon.com/dynamodb/pricing/on-demand/)
CIRCUIT_READ_UNITS = 0.5
# Lambda's SQS poller receives and deletes up to 10 messages per call
SQS_MAX_PER_CALL = 10


def chunks(nbytes: float) -> int:
    """Requests SNS and SQS bill for a payload of `nbytes`."""
    return max(1, math.ceil(nbytes / BILLED_CHUNK_BYTES))


@dataclass
class Billed:
    """Billed units per event. `write_units`/`read_units`: DynamoDB's, by who writes them (`ingest`, each
    vendor, `journeys`); `sqs`: each vendor queue's billed requests (the SNS delivery, the poller's receives
    and deletes); `invocations`: each function's Lambda invocations."""

    events_per_request: int
    events_per_message: int
    api_requests: float
    sns_publish: float
    invocations: dict[str, float] = field(default_factory=dict)
    sqs: dict[str, float] = field(default_factory=dict)
    write_units: dict[str, float] = field(default_factory=dict)
    read_units: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def ingest_claim_units(k: int) -> int:
    """Write units per event of the ingest's claim (relay.aws.ingest_claims): a TransactWriteItems of
    conditional puts (two units per item) when the request holds several events, a conditional PutItem when
    it holds one. Each claim item stays under 1 KB."""
    return 2 if k > 1 else 1


def per_event(
    events_per_request: int,
    vendors: tuple[str, ...] = VENDORS,
    batches: Mapping[str, int] | None = None,
    journey: bool = True,
    replay_guard: bool = False,
    messages_per_invocation: Mapping[str, float] | None = None,
) -> Billed:
    """The model: billed units per event at `events_per_request`. `batches`: messages per invocation of each
    vendor function (the template's BatchSize); `messages_per_invocation` overrides it with what a run saw."""
    k = max(1, events_per_request)
    per_message = min(k, EVENTS_PER_MESSAGE)
    messages_per_request = math.ceil(k / per_message)
    message_bytes = per_message * QUEUED_BYTES_PER_EVENT
    publish_calls = math.ceil(messages_per_request / SNS_MAX_BATCH)
    publish_billed = publish_calls * chunks(min(SNS_MAX_BATCH, messages_per_request) * message_bytes)
    messages = messages_per_request / k  # per event
    per_request_writes = 2 if replay_guard else 1  # the settling record, and the replay guard
    billed = Billed(
        events_per_request=k,
        events_per_message=per_message,
        api_requests=1 / k,
        sns_publish=publish_billed / k,
        invocations={"ingest": 1 / k},
        write_units={"ingest": ingest_claim_units(k) + per_request_writes / k},
    )
    billed.notes["ingest"] = (
        f"{ingest_claim_units(k)} write unit(s) per event (claim{'s in one transaction' if k > 1 else ''})"
        f" + {per_request_writes} per request ({'replay guard, ' if replay_guard else ''}settling the claims)"
    )
    for vendor in vendors:
        batch = (messages_per_invocation or {}).get(vendor) or (batches or {})[vendor]
        invocations = messages / batch
        billed.invocations[vendor] = invocations
        # SNS -> SQS: one delivery per message. Lambda's pollers wait on the queue (long polls) and a receive
        # takes what has arrived, up to 10: a request's messages arrive together, so a receive takes up to
        # one request's messages (at high traffic, receives fill up and cost less). Deletes: one
        # DeleteMessageBatch per invocation, of up to 10 messages.
        per_receive = min(SQS_MAX_PER_CALL, batch, messages_per_request)
        billed.sqs[vendor] = (
            messages * chunks(message_bytes)
            + messages / per_receive * chunks(per_receive * message_bytes)
            + invocations * math.ceil(batch / SQS_MAX_PER_CALL)
        )
        # relay.aws.ledger: a claim per message (a bundle's, or a lone event's: one write unit, under 1 KB)
        # and a batch record per invocation; a circuit read per invocation
        billed.write_units[vendor] = messages + invocations
        billed.read_units[vendor] = invocations * CIRCUIT_READ_UNITS
    if journey:
        billed.write_units["journeys"] = _journey_units(k, messages, billed, vendors)
    return billed


def _journey_units(k: int, messages: float, billed: Billed, vendors: tuple[str, ...]) -> float:
    """The journeys' write units per event: the ingest request's journey on its batch record, and an item per
    vendor invocation (relay_tools.journey_cost, measured on journeys the relay's own code builds)."""
    from relay_tools.journey_cost import ingest_journey_units, vendor_journey_units

    per_message = min(k, EVENTS_PER_MESSAGE)
    units = ingest_journey_units(k) / k
    parts = [f"ingest {ingest_journey_units(k)} per request"]
    for vendor in vendors:
        per_invocation = round(messages / billed.invocations[vendor] * per_message)
        vendor_units = vendor_journey_units(vendor, max(1, per_invocation))
        units += billed.invocations[vendor] * vendor_units
        parts.append(f"{vendor} {vendor_units} per {per_invocation} events")
    billed.notes["journeys"] = f"write units, index copy included: {', '.join(parts)}"
    return units

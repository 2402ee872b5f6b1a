"""What the archive costs per million accepted events, and what a replay costs per million events replayed
(docs/performance.md, docs/decisions/0010).

Prices are named constants with their pages, us-east-1, as of ARCHIVE_PRICES_AS_OF: check them before relying
on a figure. SNS_TO_FIREHOSE_PER_MILLION could not be confirmed from a stored copy of the SNS pricing page: it is
the constant to check first. Sizes are upper bounds of the bundled samples (tests/unit/test_cost.py checks them).
"""

from __future__ import annotations

import math

from relay.archive.outgoing import ENVELOPE_BYTES
from relay.aws.sns import SNS_MAX_BATCH, SNS_MAX_BYTES
from relay.models.environment import DAY_SECONDS
from relay_tools.billed import BILLED_CHUNK_BYTES
from relay_tools.cost import (
    DYNAMODB_PER_MILLION_READ_UNITS,
    LAMBDA_ARM_PER_GB_SECOND,
    LAMBDA_PER_MILLION_REQUESTS,
    SNS_PER_MILLION_PUBLISH_REQUESTS,
    CostLine,
    cost_per_million,
)

ARCHIVE_PRICES_AS_OF = "2024-11-15"
# https://aws.amazon.com/sns/pricing/ : notifications delivered to Amazon Data Firehose (check first)
SNS_TO_FIREHOSE_PER_MILLION = 0.19
# https://aws.amazon.com/firehose/pricing/ : Direct PUT ingestion, first 500 TB/month, each record rounded up
# to 5 KB; dynamic partitioning per GB processed and per 1,000 objects delivered
FIREHOSE_PER_GB = 0.029
FIREHOSE_RECORD_ROUNDING_BYTES = 5 * 1024
FIREHOSE_PARTITIONING_PER_GB = 0.020
FIREHOSE_PER_1000_OBJECTS = 0.005
# https://aws.amazon.com/s3/pricing/ : S3 Standard storage (first 50 TB), PUT/LIST and GET requests
S3_PER_GB_MONTH = 0.023
S3_PER_1000_PUTS = 0.005
S3_PER_1000_GETS = 0.0004
# https://aws.amazon.com/dynamodb/pricing/on-demand/ : storage beyond the free 25 GB
DYNAMODB_PER_GB_MONTH = 0.25
# https://aws.amazon.com/kms/pricing/ : requests (a data key per container and hour: a fixed cost, left out)
KMS_PER_10K_REQUESTS = 0.03

ARCHIVE_BYTES_PER_EVENT = 1_500  # an event in the ingest's archive message (the samples' largest, with room)
LINE_BYTES_PER_EVENT = 2_400  # its archive line: sealed fields, the event as a JSON string
GZIP_RATIO = 0.35  # gzip of the lines (JSON, repeated keys and data keys): measured on the samples, rounded up
LEDGER_BYTES_PER_EVENT = 200 + 3 * 120  # the ingest's claim, and each of three connections' share of its records
TRANSFORM_MS_PER_MB = 400.0  # ArchiveFunction on a 1 MB buffer (sealing and serializing), an upper bound
TRANSFORM_MEMORY_MB = 512
LEDGER_DAYS_WITHOUT_ARCHIVE = 15  # relay.aws.records.COMPLETED_TTL_SECONDS with the template's defaults
REPLAY_READS_PER_CONNECTION = 2  # relay.aws.ledger.was_delivered: the claim, then its batch's record


def archive_cost(events_per_request: int = 100, retention_days: int = 90) -> list[CostLine]:
    """Dollars per million accepted events for the archive, each kept `retention_days`."""
    k = max(1, events_per_request)
    n = 1_000_000
    requests = n / k
    per_message = max(1, (SNS_MAX_BYTES - ENVELOPE_BYTES) // ARCHIVE_BYTES_PER_EVENT)
    messages = requests * math.ceil(k / per_message)
    message_bytes = min(k, per_message) * ARCHIVE_BYTES_PER_EVENT
    publish_billed = messages * math.ceil(message_bytes / BILLED_CHUNK_BYTES)
    ingested_gb = messages * max(message_bytes, FIREHOSE_RECORD_ROUNDING_BYTES) / 1e9
    processed_gb = n * ARCHIVE_BYTES_PER_EVENT / 1e9
    stored_gb = n * LINE_BYTES_PER_EVENT * GZIP_RATIO / 1e9
    months = retention_days / 30
    ledger_months = max(retention_days - LEDGER_DAYS_WITHOUT_ARCHIVE, 0) / 30
    transform_s = processed_gb * 1000 * TRANSFORM_MS_PER_MB / 1000
    return [
        CostLine(
            "SNS archive messages",
            publish_billed / 1e6 * SNS_PER_MILLION_PUBLISH_REQUESTS + messages / 1e6 * SNS_TO_FIREHOSE_PER_MILLION,
            f"{messages / n * k:.2f} message(s) per request of {k}, delivered to Firehose",
        ),
        CostLine(
            "Firehose ingestion and partitioning",
            ingested_gb * FIREHOSE_PER_GB + processed_gb * FIREHOSE_PARTITIONING_PER_GB,
            f"{ingested_gb:.2f} GB billed (records rounded up to 5 KB), {processed_gb:.2f} GB partitioned",
        ),
        CostLine(
            "Lambda ArchiveFunction",
            processed_gb * 1000 / 1e6 * LAMBDA_PER_MILLION_REQUESTS
            + transform_s * TRANSFORM_MEMORY_MB / 1024 * LAMBDA_ARM_PER_GB_SECOND,
            f"one invocation per MB, {TRANSFORM_MS_PER_MB:.0f} ms x {TRANSFORM_MEMORY_MB} MB",
        ),
        CostLine(
            f"S3 storage, {retention_days} days",
            stored_gb * months * S3_PER_GB_MONTH,
            f"{stored_gb:.2f} GB of gzip lines",
        ),
        CostLine(
            f"DynamoDB ledger kept {retention_days} days",
            n * LEDGER_BYTES_PER_EVENT / 1e9 * ledger_months * DYNAMODB_PER_GB_MONTH,
            f"{LEDGER_BYTES_PER_EVENT} bytes per event, {ledger_months:.1f} months beyond the ledger's own",
        ),
    ]


def archive_fixed_per_source_per_month(buffer_seconds: int = 300) -> float:
    """Objects a source's partition gets a month, one per buffer at least: their S3 PUTs and Firehose's fee."""
    objects = 30 * DAY_SECONDS / buffer_seconds
    return objects / 1000 * (S3_PER_1000_PUTS + FIREHOSE_PER_1000_OBJECTS)


def replay_cost(connections: int = 3) -> list[CostLine]:
    """Dollars per million events replayed to `connections` connections each: reading the archive, asking the
    ledger, queuing each event in its own message, and its delivery as the relay delivers any event."""
    n = 1_000_000
    objects = n * LINE_BYTES_PER_EVENT * GZIP_RATIO / (64 * 1024 * 1024)  # 64 MB buffers, at most
    reads = n * connections * REPLAY_READS_PER_CONNECTION
    publish_billed = n / SNS_MAX_BATCH * math.ceil(SNS_MAX_BATCH * 2_000 / BILLED_CHUNK_BYTES)
    vendors = tuple(["applovin", "appsflyer", "adroll"][: max(1, min(connections, 3))])
    delivery = sum(
        line.usd_per_million
        for line in cost_per_million(1, vendors=vendors, journey=True)
        if not line.item.startswith(("API Gateway", "Lambda ingest", "DynamoDB ingest", "SNS", "Secrets"))
    )
    return [
        CostLine("S3 reads", objects / 1000 * S3_PER_1000_GETS, f"{objects:,.0f} object(s) read"),
        CostLine("KMS Decrypt", 0.0, "one per data key (one per transformation container and hour)"),
        CostLine(
            "DynamoDB ledger reads",
            reads * 1 / 1e6 * DYNAMODB_PER_MILLION_READ_UNITS,
            f"{REPLAY_READS_PER_CONNECTION} strongly consistent reads per event and connection",
        ),
        CostLine(
            "SNS PublishBatch",
            publish_billed / 1e6 * SNS_PER_MILLION_PUBLISH_REQUESTS,
            f"{SNS_MAX_BATCH} messages of one event per call",
        ),
        CostLine(
            "delivery (SQS, Lambda, DynamoDB, journeys)",
            delivery,
            "the vendor functions' share at one event per message (tools/relay_tools/cost.py)",
        ),
    ]

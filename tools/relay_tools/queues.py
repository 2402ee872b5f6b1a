"""A vendor's SQS queue and DLQ, in a deployed stack or in the local stack (`relay dlq`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.models.config import ConfigError, RelayConfig
from relay.models.errors import FieldError
from relay.models.names import VENDOR_TITLES

# moto's server takes any credentials; fixed ones keep the local stack away from a real account's.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}  # noqa: S105


@dataclass(frozen=True, slots=True)
class VendorQueues:
    client: Any  # SQS client
    source_url: str
    dlq_url: str


def vendor_queues(
    vendor: str,
    *,
    stack: str | None = None,
    config: RelayConfig | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> VendorQueues:
    """A vendor's queue and DLQ: from a deployed stack's Outputs (`stack`) or from the local stack that
    `relay dev` runs with `config` (its [local] section). Raises ConfigError when they cannot be found."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    logical = VENDOR_TITLES[vendor]
    try:
        if stack:
            session = boto3.Session(region_name=region)
            cfn = session.client("cloudformation", endpoint_url=endpoint_url)
            outputs = {
                o["OutputKey"]: o["OutputValue"]
                for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
            }
            missing = [k for k in (f"{logical}QueueUrl", f"{logical}DeadLetterQueueUrl") if k not in outputs]
            if missing:
                raise ConfigError([FieldError("--stack", f"stack {stack} has no output {missing[0]}")], "stack")
            client = session.client("sqs", endpoint_url=endpoint_url)
            return VendorQueues(client, outputs[f"{logical}QueueUrl"], outputs[f"{logical}DeadLetterQueueUrl"])
        if config is None:
            raise ConfigError([FieldError("--stack/--config", "say which stack: --stack NAME or --config relay.toml")])
        local = config.local
        client = boto3.Session(region_name=local.region).client(
            "sqs", endpoint_url=endpoint_url or local.aws_endpoint, **LOCAL_CREDENTIALS
        )
        name = f"{local.stack_name}-{logical}"
        return VendorQueues(
            client,
            client.get_queue_url(QueueName=f"{name}Queue")["QueueUrl"],
            client.get_queue_url(QueueName=f"{name}DeadLetterQueue")["QueueUrl"],
        )
    except (ClientError, BotoCoreError) as exc:
        where = f"stack {stack}" if stack else "the local stack (is `relay dev` running?)"
        raise ConfigError(
            [FieldError("queues", f"cannot reach {vendor}'s queues in {where}: {type(exc).__name__}")], "AWS"
        ) from None


def peek_letters(queues: VendorQueues, limit: int | None = None, hold_seconds: int = 30) -> list[Any]:
    """A vendor's dead letters (the first `limit`), read and released at once: nothing moved or deleted."""
    from itertools import islice

    from relay.delivery import deadletter

    letters = list(islice(deadletter.read_all(queues.client, queues.dlq_url, hold_seconds), limit))
    deadletter.release(queues.client, queues.dlq_url, letters)
    return letters


def dead_letter_count(queues: VendorQueues) -> int:
    """How many messages a vendor's DLQ holds, visible or not (GetQueueAttributes: nothing is received)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = queues.client.get_queue_attributes(QueueUrl=queues.dlq_url, AttributeNames=names)["Attributes"]
    return sum(int(attrs.get(name, "0")) for name in names)


def letter_connection(letter: Any, vendor: str) -> str:
    """The connection a dead letter is for (its relay_vendor; the vendor's default one when it names none)."""
    return letter.summary().get("connection") or vendor


def redrive_letters(
    queues: VendorQueues, wanted: set[str], connections: set[str] | None = None, vendor: str = ""
) -> tuple[int, set[str]]:
    """Move a vendor's dead letters back to its queue: those carrying any of `wanted` event_ids, or all when
    it is empty, and (with `connections`) only those of these connections (the others are released at once).
    Returns how many moved and the event_ids they carried."""
    from relay.delivery import deadletter

    letters = list(deadletter.read_all(queues.client, queues.dlq_url))
    chosen = [
        letter
        for letter in letters
        if (not wanted or wanted & set(letter.event_ids))
        and (not connections or letter_connection(letter, vendor) in connections)
    ]
    deadletter.release(queues.client, queues.dlq_url, [letter for letter in letters if letter not in chosen])
    moved = deadletter.redrive(queues.client, queues.dlq_url, queues.source_url, chosen)
    return moved, {event_id for letter in chosen for event_id in letter.event_ids}


def purge_letters(queues: VendorQueues, wanted: set[str]) -> tuple[int, set[str]]:
    """Delete the vendor's dead letters that carry any of `wanted` event_ids (the others are released at
    once); returns how many were deleted and the event_ids they carried."""
    from relay.delivery import deadletter

    letters = list(deadletter.read_all(queues.client, queues.dlq_url))
    chosen = [letter for letter in letters if wanted & set(letter.event_ids)]
    deadletter.release(queues.client, queues.dlq_url, [letter for letter in letters if letter not in chosen])
    for letter in chosen:
        queues.client.delete_message(QueueUrl=queues.dlq_url, ReceiptHandle=letter.receipt_handle)
    return len(chosen), {event_id for letter in chosen for event_id in letter.event_ids}

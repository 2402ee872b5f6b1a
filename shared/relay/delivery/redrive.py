"""Automatic redrive: once a vendor is healthy again, what its DLQ holds for transient reasons goes back to
its queue; dead letters for permanent reasons (invalid, rejected, disabled) and those SQS moved itself
(maxReceiveCount: a message that kept crashing the function) stay for a human (`relay dlq`).

A letter is transient when the relay gave it up as `retries_exhausted` (401/403, 5xx, timeouts, an
unusable configuration, an open circuit, for longer than the retry window). It is sent back as a new
message with its original attributes, so the vendor function claims it anew; the ledger still knows every
event that was delivered, so nothing is sent twice. Each letter carries how often it was moved back
(`relay_redrives`): after `MAX_AUTO_REDRIVES` it stays in the DLQ, so that an event a vendor keeps failing
for its own reasons does not cycle between the queues for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relay.delivery.deadletter import ATTR, OUTCOME, REDRIVES, SQS_BATCH, VENDOR, message_bytes, send_batches
from relay.delivery.outcomes import Outcome
from relay.models.names import vendor_of

MAX_AUTO_REDRIVES = 3
HOLD_SECONDS = 30  # the letters a pass reads are hidden this long (the permanent ones are released at its end)
PASS_MESSAGES = 500  # letters one pass reads at most: the next healthy invocation goes on


@dataclass
class RedrivePass:
    moved: int = 0
    kept: int = 0  # permanent, SQS-moved, or redriven MAX_AUTO_REDRIVES times already
    failed: int = 0  # could not be moved this time (they stay in the DLQ, and the pass is not complete)
    complete: bool = False  # every letter of the DLQ was looked at
    event_ids: list[str] = field(default_factory=list)


def transient(message: dict[str, Any], connection: str | None = None) -> bool:
    """A letter the automatic redrive moves back: given up for a transient reason, redriven fewer than
    MAX_AUTO_REDRIVES times, and (with `connection`) for that connection (its `relay_vendor`), or for the
    vendor's default one (a whole message moved when the function's configuration was unusable: any
    connection's redrive takes it back, and each connection's lane delivers its own part)."""
    attrs = message.get("MessageAttributes", {})
    outcome = attrs.get(OUTCOME, {}).get("StringValue")
    redrives = int(attrs.get(REDRIVES, {}).get("StringValue", "0") or 0)
    mine = connection is None
    if connection is not None:
        of = attrs.get(VENDOR, {}).get("StringValue") or vendor_of(connection)
        mine = of in (connection, vendor_of(connection))
    return outcome == Outcome.RETRIES_EXHAUSTED.value and redrives < MAX_AUTO_REDRIVES and mine


def back_to_queue(message: dict[str, Any]) -> tuple[str, dict[str, dict[str, str]]]:
    """The body and attributes to send back: the original attributes, and the redrive count plus one."""
    attrs = {
        name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        for name, value in message.get("MessageAttributes", {}).items()
        if not name.startswith(ATTR) and "StringValue" in value
    }
    redrives = int(message.get("MessageAttributes", {}).get(REDRIVES, {}).get("StringValue", "0") or 0)
    attrs[REDRIVES] = {"DataType": "Number", "StringValue": str(redrives + 1)}
    return message["Body"], attrs


def _move(client: Any, dlq_url: str, queue_url: str, messages: list[dict[str, Any]], result: RedrivePass) -> None:
    outgoing = [(message, *back_to_queue(message)) for message in messages]
    for chunk in send_batches(outgoing, lambda entry: message_bytes(entry[1], entry[2])):
        try:
            sent = client.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": body, "MessageAttributes": attrs}
                    for i, (_, body, attrs) in enumerate(chunk)
                ],
            )
        except Exception:  # noqa: BLE001 - they stay in the DLQ for the next pass
            result.failed += len(chunk)
            continue
        done = [chunk[int(ok["Id"])][0] for ok in sent.get("Successful", [])]
        result.failed += len(chunk) - len(done)
        if not done:
            continue
        # a letter sent back but not deleted is sent back again later: a duplicate message, which the
        # ledger makes a duplicate delivery of nothing
        client.delete_message_batch(
            QueueUrl=dlq_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
        )
        result.moved += len(done)
        result.event_ids += [
            m.get("MessageAttributes", {}).get(f"{ATTR}event_id", {}).get("StringValue", "") for m in done
        ]


def redrive_transient(
    client: Any,
    dlq_url: str,
    queue_url: str,
    has_time: Callable[[], bool],
    hold_seconds: int = HOLD_SECONDS,
    limit: int = PASS_MESSAGES,
    connection: str | None = None,
) -> RedrivePass:
    """One pass over the DLQ while `has_time()`: the transient letters (of `connection`, when given) moved back
    to the queue (at most `limit`), the others left where they are (hidden during the pass, visible again at
    its end)."""
    result = RedrivePass()
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    try:
        while has_time() and len(seen) < PASS_MESSAGES:
            messages = client.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=SQS_BATCH,
                VisibilityTimeout=hold_seconds,
                WaitTimeSeconds=1,  # a long poll: a short one samples some of SQS's servers only
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                result.complete = result.failed == 0
                break
            seen.update(m["MessageId"] for m in fresh)
            movable = [m for m in fresh if transient(m, connection)][: max(limit - result.moved - result.failed, 0)]
            kept += [m for m in fresh if m not in movable]
            _move(client, dlq_url, queue_url, movable, result)
            if result.moved + result.failed >= limit:
                break
    finally:
        result.kept = len(kept)
        for start in range(0, len(kept), SQS_BATCH):
            try:
                client.change_message_visibility_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(kept[start : start + SQS_BATCH])
                    ],
                )
            except Exception:  # noqa: BLE001, S112 - they become visible after the hold anyway
                continue
    return result

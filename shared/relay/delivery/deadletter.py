"""Dead-letter queues that explain every failure: the relay moves a permanently failed message (or one
that used its last delivery attempt) to the vendor's DLQ itself, with attributes giving the reason, the
HTTP status and the vendor's answer, and deletes it from the source queue. `relay dlq` reads them back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from relay.aws.clients import LazyClient
from relay.models.event import event_id_of
from relay.queued.message import is_bundle

ATTR = "relay_"
REASON, OUTCOME, STATUS, RESPONSE = f"{ATTR}reason", f"{ATTR}outcome", f"{ATTR}status", f"{ATTR}vendor_response"
EVENT_ID, VENDOR, FAILED_AT, ATTEMPTS = f"{ATTR}event_id", f"{ATTR}vendor", f"{ATTR}failed_at", f"{ATTR}attempts"
REDRIVES = f"{ATTR}redrives"  # how often the automatic redrive moved the message back (relay.delivery.redrive)
# a message without the relay's attributes: SQS moved it itself after maxReceiveCount, or SNS could not deliver it
# to the vendor queue (the subscription's RedrivePolicy)
NO_REASON = "no reason recorded: moved by SQS after maxReceiveCount, or by SNS when it could not deliver to the queue"
SQS_MOVED = "redriven"  # the outcome of a message SQS moved itself (maxReceiveCount), without relay_* attributes
MAX_ATTRIBUTE_TEXT = 256
SQS_BATCH = 10
# SendMessageBatch: at most 10 entries, and their bodies and attributes together at most 256 KiB (the
# limit AWS documents for every partition; where SQS takes 1 MiB, batches of 256 KiB still go through)
SQS_BATCH_MAX_BYTES = 262_144
# bytes the relay_* attributes of a dead letter can add to the event's message (names, types, values of up to
# MAX_ATTRIBUTE_TEXT characters, 4 bytes each at worst); the ingest keeps this much below SNS's limit, so a
# dead letter always fits in a message
DEAD_LETTER_ATTRIBUTE_BYTES = 9 * (len(ATTR) + 16 + len("String")) + 9 * 4 * MAX_ATTRIBUTE_TEXT
# characters SQS refuses in a message or attribute (it takes #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
# #x10000-#x10FFFF): a vendor's answer may hold them, and one such character would keep the letter unmoved.
# Written as the characters refused (the negated class of those taken costs every function 5 ms to compile)
_NOT_SQS_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": _NOT_SQS_TEXT.sub("\ufffd", value[:MAX_ATTRIBUTE_TEXT])}


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def message_bytes(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """What SQS counts against its size limits: the body and each attribute's name, type and value."""
    parts = (_utf8(k) + _utf8(v["DataType"]) + _utf8(v.get("StringValue", "")) for k, v in attributes.items())
    return _utf8(body) + sum(parts)


def from_lambda_attributes(attributes: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Lambda's record messageAttributes back into SendMessage form (string attributes): the original ones,
    and the automatic redrive's count, not the relay_* attributes of an earlier dead letter."""
    return {
        name: {"DataType": a["dataType"], "StringValue": a["stringValue"]}
        for name, a in attributes.items()
        if "stringValue" in a and (not name.startswith(ATTR) or name == REDRIVES)
    }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: dict[str, Any]  # the Lambda SQS record
    vendor: str
    event_id: str | None
    outcome: str
    reason: str
    status: int | None
    response: str
    key: str = ""  # the event's QueuedEvent.key (its SQS message id unless it came in a bundle)
    body: str = ""  # the event's own message (a bundle's event is moved alone)

    @property
    def message_key(self) -> str:
        return self.key or self.record["messageId"]

    @property
    def message_body(self) -> str:
        return self.body or self.record["body"]

    def attributes(self, now: datetime) -> dict[str, dict[str, str]]:
        attrs = from_lambda_attributes(self.record.get("messageAttributes", {}))
        attrs.update(
            {
                REASON: _string(self.reason or self.outcome),
                OUTCOME: _string(self.outcome),
                STATUS: _string(str(self.status) if self.status is not None else "none"),
                VENDOR: _string(self.vendor),
                FAILED_AT: _string(now.isoformat(timespec="seconds")),
                ATTEMPTS: _string(str(self.record.get("attributes", {}).get("ApproximateReceiveCount", "1"))),
            }
        )
        if self.event_id:
            attrs[EVENT_ID] = _string(self.event_id)
        if self.response.strip():
            attrs[RESPONSE] = _string(self.response)
        return attrs


class DeadLetterQueue(LazyClient):
    service = "sqs"

    def __init__(self, queue_url: str, client: Any = None):
        super().__init__(client)
        self.queue_url = queue_url

    def send(self, letters: list[DeadLetter], now: datetime | None = None) -> set[str]:
        """SendMessageBatch; returns the keys (DeadLetter.message_key) of the events that could not be moved
        (keep them in the source)."""
        stamp = now or datetime.now(UTC)
        failed: set[str] = set()
        for chunk in self.batches([(letter, letter.attributes(stamp)) for letter in letters]):
            try:
                response = self.client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": letter.message_body, "MessageAttributes": attributes}
                        for i, (letter, attributes) in enumerate(chunk)
                    ],
                )
            except Exception:  # noqa: BLE001 - any failure: the messages stay in the source queue
                failed |= {letter.message_key for letter, _ in chunk}
                continue
            failed |= {chunk[int(f["Id"])][0].message_key for f in response.get("Failed", [])}
        return failed

    @staticmethod
    def batches(
        entries: list[tuple[DeadLetter, dict[str, dict[str, str]]]],
    ) -> list[list[tuple[DeadLetter, dict[str, dict[str, str]]]]]:
        """SendMessageBatch calls of at most SQS_BATCH entries and SQS_BATCH_MAX_BYTES."""
        return send_batches(entries, lambda entry: message_bytes(entry[0].message_body, entry[1]))


T = TypeVar("T")


def send_batches(entries: Iterable[T], size_of: Callable[[T], int]) -> list[list[T]]:
    """`entries` in SendMessageBatch calls of at most SQS_BATCH entries and SQS_BATCH_MAX_BYTES in all
    (`size_of`: what SQS counts of one entry, `message_bytes`)."""
    out: list[list[T]] = []
    size = 0
    for entry in entries:
        entry_size = size_of(entry)
        if not out or len(out[-1]) == SQS_BATCH or size + entry_size > SQS_BATCH_MAX_BYTES:
            out.append([])
            size = 0
        out[-1].append(entry)
        size += entry_size
    return out


# -- reading DLQs back (relay dlq …) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Letter:
    message_id: str
    receipt_handle: str
    body: str
    event_id: str | None
    reason: str
    outcome: str
    status: str
    response: str
    failed_at: str
    attempts: str
    attributes: dict[str, Any]
    event_ids: tuple[str, ...] = ()  # every event the message carries (several for a bundle SQS moved)

    def summary(self) -> dict[str, str | None]:
        return {
            "event_id": self.event_id or ", ".join(self.event_ids) or None,
            "connection": self.attributes.get(VENDOR, {}).get("StringValue") or None,
            "reason": self.reason,
            "outcome": self.outcome,
            "status": self.status,
            "when": self.failed_at,
            "attempts": self.attempts,
            "vendor_response": self.response or None,
        }


def body_event_id(body: str | None) -> str | None:
    """The event_id in a message body (a queued message or a canonical event), if it has a usable one."""
    try:
        return event_id_of(json.loads(body or ""))
    except ValueError:
        return None


def body_event_ids(body: str | None) -> tuple[str, ...]:
    """The event_ids of every event in a message body: a bundle's (relay.queued.message), or the one event's."""
    try:
        message = json.loads(body or "")
    except ValueError:
        return ()
    found = [event_id_of(one) for one in message["events"]] if is_bundle(message) else [event_id_of(message)]
    return tuple(event_id for event_id in found if event_id is not None)


def _letter(message: dict[str, Any]) -> Letter:
    attrs = {k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()}
    event_id = attrs.get(EVENT_ID) or body_event_id(message.get("Body"))
    sent = message.get("Attributes", {}).get("SentTimestamp")
    when = attrs.get(FAILED_AT) or (
        datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat(timespec="seconds") if sent else ""
    )
    return Letter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        event_id=event_id,
        reason=attrs.get(REASON, NO_REASON),
        outcome=attrs.get(OUTCOME, SQS_MOVED),
        status=attrs.get(STATUS, "none"),
        response=attrs.get(RESPONSE, ""),
        failed_at=when,
        attempts=attrs.get(ATTEMPTS) or message.get("Attributes", {}).get("ApproximateReceiveCount", ""),
        attributes=message.get("MessageAttributes", {}),
        event_ids=(event_id,) if event_id else body_event_ids(message.get("Body")),
    )


def read_all(client: Any, queue_url: str, hold_seconds: int = 30) -> Iterator[Letter]:
    """Every message of a DLQ, each once: received with a visibility hold, not deleted."""
    seen: set[str] = set()
    while True:
        messages = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=hold_seconds,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield _letter(message)


def release(client: Any, queue_url: str, letters: Iterable[Letter]) -> None:
    """Make held messages visible again at once (after a listing)."""
    for letter in letters:
        client.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0)


def redrive(client: Any, dlq_url: str, source_url: str, letters: Iterable[Letter]) -> int:
    """Back to the source queue (original attributes, not the relay_* ones), then deleted from the DLQ.
    The message sent back is a new one, so the vendor function sends it anew (relay.aws.ledger)."""
    moved = 0
    for letter in letters:
        attrs = {
            k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
            for k, v in letter.attributes.items()
            if not k.startswith(ATTR) and "StringValue" in v
        }
        client.send_message(QueueUrl=source_url, MessageBody=letter.body, MessageAttributes=attrs)
        client.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        moved += 1
    return moved

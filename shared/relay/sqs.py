"""SQS and Lambda: messages (as ReceiveMessage returns them) -> Lambda SQS event records, as AWS builds
them; and the partial batch response a vendor function returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"dataType": value["DataType"], "stringListValues": [], "binaryListValues": []}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = value["BinaryValue"]
    return out


def lambda_records(messages: Iterable[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source passes to a function for `messages`."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": {k: _attribute(v) for k, v in m.get("MessageAttributes", {}).items()},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def batch_response(retry: Iterable[str]) -> dict[str, Any]:
    """The partial batch response of an SQS-triggered function (`FunctionResponseTypes:
    ReportBatchItemFailures` in template.yaml): the messages listed by id stay in the queue for a retry,
    every other message of the batch is deleted. An empty list deletes the whole batch.

    Built here rather than by Powertools' BatchProcessor: the vendor functions decide per batch (AppLovin
    and AdRoll send 100 events per request), not record by record, and importing
    `aws_lambda_powertools.utilities.batch` cost ~70 ms of every cold start (it loads all Parser models
    and event data classes; README "Performance and cost")."""
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in dict.fromkeys(retry)]}

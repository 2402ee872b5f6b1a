"""The partial batch response a vendor function returns to Lambda's SQS event source."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def batch_response(retry: Iterable[str]) -> dict[str, Any]:
    """The partial batch response of an SQS-triggered function (`FunctionResponseTypes:
    ReportBatchItemFailures` in template.yaml): the messages listed by id stay in the queue for a retry,
    every other message of the batch is deleted. An empty list deletes the whole batch.

    Built here rather than by Powertools' BatchProcessor: the vendor functions decide per batch (AppLovin
    and AdRoll send 100 events per request), not record by record, and importing
    `aws_lambda_powertools.utilities.batch` loads every Parser model and event data class at each cold
    start (docs/decisions/0003)."""
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in dict.fromkeys(retry)]}

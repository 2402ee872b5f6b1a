"""Retries measured in time: how long a vendor function waits before a failed message's next receive, and
when it gives the message up.

A message that failed for a transient reason (408, 429, 5xx, a timeout or connection error, 401/403, an
unusable vendor configuration, an open circuit) stays in the queue; the function sets its visibility with
ChangeMessageVisibility so that SQS hands it out again after a delay that doubles with each receive, from
`max_retry_delay_seconds / 2**DOUBLINGS` up to `max_retry_delay_seconds`, jittered so that the messages of
one outage do not all come back at once. Once the message is older than `retry_window_hours` (its age is
counted from SQS's SentTimestamp), it is dead-lettered as `retries_exhausted` with its last error. The
queue's maxReceiveCount (template parameter MaxReceiveCount) is only a safety net above what the window
needs (`receives_needed`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.aws.clients import LazyClient
from relay.models.config import MAX_RETRY_DELAY_SECONDS, DeliveryConfig

DOUBLINGS = 7  # the first delay: max_retry_delay_seconds / 128 (28 s at the default 3600 s)
SQS_BATCH = 10  # ChangeMessageVisibilityBatch entries


def age_seconds(record: Mapping[str, Any], now: float) -> float:
    """How long ago SQS took the record's message in (its SentTimestamp, ms); 0 when it does not say."""
    sent = record.get("attributes", {}).get("SentTimestamp")
    return max(0.0, now - int(sent) / 1000) if sent else 0.0


@dataclass(frozen=True)
class RetrySchedule:
    window_seconds: float
    max_delay_seconds: int
    rng: Callable[[], float] = field(default=random.random, compare=False)

    @classmethod
    def of(cls, delivery: DeliveryConfig) -> RetrySchedule:
        return cls(delivery.retry_window_seconds, delivery.max_retry_delay_seconds)

    @property
    def first_delay(self) -> float:
        return self.max_delay_seconds / 2**DOUBLINGS

    def expired(self, age: float) -> bool:
        """Whether a message this old is given up (dead-lettered as retries_exhausted) when it fails again."""
        return age >= self.window_seconds

    def base_delay(self, receives: int) -> float:
        """The delay after a message's `receives`-th receive, before jitter."""
        return min(float(self.max_delay_seconds), self.first_delay * 2 ** min(max(receives, 1) - 1, 40))

    def delay(self, receives: int, age: float) -> int:
        """Whole seconds until the next receive of a message that failed on its `receives`-th receive at `age`
        seconds old: between half and all of its base delay, never past the end of the window (so that its
        last try falls at the window's end), at least 1 s."""
        jittered = self.base_delay(receives) * (0.5 + self.rng() / 2)
        left = max(self.window_seconds - age, 1.0)
        return max(1, min(math.ceil(jittered), math.ceil(left), MAX_RETRY_DELAY_SECONDS))

    def receives_needed(self) -> int:
        """The most receives a message can take to reach the end of the window (every delay at its shortest,
        half its base): the queue's maxReceiveCount should stay above it."""
        receives, waited = 1, 0.0
        while waited < self.window_seconds:
            waited += max(1.0, min(self.base_delay(receives) / 2, self.window_seconds - waited))
            receives += 1
        return receives


class SourceQueue(LazyClient):
    """The function's own queue: sets when each failed message comes back."""

    service = "sqs"

    def __init__(self, queue_url: str, client: Any = None):
        super().__init__(client)
        self.queue_url = queue_url

    def delay(self, delays: Mapping[str, int]) -> int:
        """ChangeMessageVisibilityBatch for {receipt handle: seconds}; returns how many could not be changed
        (those come back after the queue's visibility timeout instead: sooner or later, never lost)."""
        entries = list(delays.items())
        failed = 0
        for start in range(0, len(entries), SQS_BATCH):
            chunk = entries[start : start + SQS_BATCH]
            try:
                response = self.client.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                        for i, (handle, seconds) in enumerate(chunk)
                    ],
                )
            except Exception:  # noqa: BLE001 - the messages come back after the queue's own timeout
                failed += len(chunk)
                continue
            failed += len(response.get("Failed", []))
        return failed

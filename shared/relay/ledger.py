"""Exactly-once bookkeeping per vendor and event_id, with Powertools Idempotency on DynamoDB.

The key is a hash of ``[vendor, event_id]`` only: the payload is not part of it, so a resend of the same
event_id with another body is still a duplicate. A record is IN_PROGRESS only while its request is in
flight (its in-progress expiry is the Lambda's remaining time); a failed send deletes it so that a retry
can go through; a delivered event is COMPLETED for `COMPLETED_TTL_SECONDS`. So is an event the relay
moved to the DLQ, with the SQS message id it moved: a redelivery of that very message (an invocation that
failed after the move) is neither sent nor dead-lettered again, while any other message with the event
(`relay dlq redrive`, a client's resend) clears the record and is sent anew.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import STATUS_CONSTANTS

# Longer than any path an event can take to a resend: max_event_age_days (<= 7 by default, the ingest
# refuses older events) + SQS retention (4 days) + margin.
COMPLETED_TTL_SECONDS = 15 * 24 * 3600
KEY_PREFIX = "s2s-relay"


class Claim(Enum):
    CLAIMED = "claimed"  # ours to send
    DUPLICATE = "duplicate"  # already delivered: do not send again
    IN_FLIGHT = "in_flight"  # another invocation is sending it right now: retry later
    DEAD_LETTERED = "dead_lettered"  # already moved to the DLQ: do not send or move it again


DEAD_LETTERED = "dead_lettered"  # the `outcome` in a COMPLETED record's result


class DeliveryLedger:
    def __init__(self, vendor: str, table_name: str, client: Any = None):
        self.vendor = vendor
        kwargs: dict[str, Any] = {"table_name": table_name}
        if client is not None:
            kwargs["boto3_client"] = client
        self.layer = DynamoDBPersistenceLayer(**kwargs)
        self.layer.configure(
            IdempotencyConfig(
                event_key_jmespath="[vendor, event_id]",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=COMPLETED_TTL_SECONDS,
            ),
            key_prefix=f"{KEY_PREFIX}.{vendor}",
        )

    def _data(self, event_id: str) -> dict[str, str]:
        return {"vendor": self.vendor, "event_id": event_id}

    def claim(self, event_id: str, remaining_ms: int, message_id: str | None = None) -> Claim:
        """`message_id`: the SQS message the event came in (see `dead_lettered`)."""
        try:
            self.layer.save_inprogress(self._data(event_id), remaining_time_in_millis=max(remaining_ms, 1))
            return Claim.CLAIMED
        except IdempotencyItemAlreadyExistsError as exc:
            record = exc.old_data_record
            if record is None:
                try:
                    record = self.layer.get_record(self._data(event_id))
                except IdempotencyItemNotFoundError:  # deleted meanwhile: try once more
                    return self.claim(event_id, remaining_ms, message_id)
            if record.status != STATUS_CONSTANTS["COMPLETED"]:
                return Claim.IN_FLIGHT
            result = record.response_json_as_dict() or {}
            if result.get("outcome") != DEAD_LETTERED:
                return Claim.DUPLICATE
            if message_id is not None and result.get("message_id") == message_id:
                return Claim.DEAD_LETTERED
            self.layer.delete_record(self._data(event_id), RuntimeError("sent again in another message"))
            return self.claim(event_id, remaining_ms, message_id)

    def delivered(self, event_id: str, status: int | None) -> None:
        # the result names the event, so the ledger can be read back (relay dev / make demo)
        self.layer.save_success(
            self._data(event_id), result={"vendor": self.vendor, "event_id": event_id, "status": status}
        )

    def dead_lettered(self, event_id: str, message_id: str, outcome: str) -> None:
        """After the move to the DLQ: a redelivery of this message is then dropped, not moved twice."""
        self.layer.save_success(
            self._data(event_id),
            result={
                "vendor": self.vendor,
                "event_id": event_id,
                "outcome": DEAD_LETTERED,
                "message_id": message_id,
                "why": outcome,
            },
        )

    def release(self, event_id: str, reason: str) -> None:
        self.layer.delete_record(self._data(event_id), RuntimeError(reason))

"""What happened to one event at one vendor: an `Outcome` and, with it, a `Delivery`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """An event's outcome at a vendor; the value is what logs, metrics and dead letters say."""

    FORWARDED = "forwarded"  # the vendor answered 2xx
    SKIPPED = "skipped"  # nothing to send this vendor (its rules say why)
    DUPLICATE = "duplicate"  # delivered, or dead-lettered, before: not sent again
    INVALID = "invalid"  # permanent: breaks a vendor rule, or the queued message cannot be read
    REJECTED = "rejected"  # permanent: the vendor refused it (4xx)
    DISABLED = "disabled"  # permanent: the vendor is turned off in the configuration
    AUTH = "auth"  # retried later: the vendor refused the credentials (401/403)
    TRANSIENT = "transient"  # retried: 408, 429, 5xx, a connection error, no answer in time
    IN_FLIGHT = "in_flight"  # retried later: another invocation is sending the same event_id
    CONFIG = "config"  # retried later: the vendor's configuration cannot be used
    DEFERRED = "deferred"  # retried later: too little of the invocation was left to send it
    HELD = "held"  # retried later: the vendor's circuit is open (it kept failing), so it was not sent
    RETRIES_EXHAUSTED = "retries_exhausted"  # dead-lettered: still failing at the end of the retry window
    REDRIVEN = "redriven"  # dead-lettered by SQS itself (maxReceiveCount), without the relay's reason

    @property
    def permanent(self) -> bool:
        return self in PERMANENT


PERMANENT = frozenset({Outcome.INVALID, Outcome.REJECTED, Outcome.DISABLED})
# failures of the vendor or of the relay's access to it: retried on the growing schedule (relay.delivery.retry);
# the others (another invocation has the event, too little time was left) come back after the queue's timeout
BACKOFF = frozenset({Outcome.TRANSIENT, Outcome.AUTH, Outcome.CONFIG, Outcome.HELD})


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event's delivery: `ok` when nothing is left to do for it at this vendor."""

    ok: bool
    outcome: Outcome
    reason: str = ""
    status: int | None = None
    response: str = ""
    retry_after: float | None = None
    timed_out: bool = False  # no answer within the request's deadline: not retried in this invocation

    @property
    def permanent(self) -> bool:
        return self.outcome in PERMANENT

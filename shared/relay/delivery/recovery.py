"""What a vendor function does around a batch so that an outage needs no human: it reads the vendor's
circuit before sending (relay.delivery.circuit), updates it with what the vendor answered, sets when each
failed message comes back (relay.delivery.retry), and moves transient dead letters back once the vendor
is healthy (relay.delivery.redrive). Every step is best effort: when DynamoDB or SQS fails it, the batch is
still delivered or kept, only less economically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from relay.aws.clients import AWS_CALL_MAX_MS
from relay.delivery.circuit import OPEN_AFTER, Circuit, CircuitState
from relay.delivery.outcomes import BACKOFF, Delivery, Outcome
from relay.delivery.retry import RetrySchedule, SourceQueue, age_seconds
from relay.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from relay.delivery.deadletter import DeadLetterQueue
    from relay.delivery.sending import Stats
    from relay.models.config import DeliveryConfig
    from relay.models.environment import VendorEnvironment
    from relay.queued.message import QueuedEvent


class VendorFunction(Protocol):
    """What recovery reads of a vendor function (relay.delivery.function.VendorFunction)."""

    vendor: str
    connection: str  # the connection it delivers: its vendor alone for the one named default
    clock: Callable[[], float]

    @property
    def environment(self) -> VendorEnvironment: ...
    @property
    def circuit(self) -> Circuit: ...
    @property
    def dead_letters(self) -> DeadLetterQueue: ...
    @property
    def delivery(self) -> DeliveryConfig: ...
    @property
    def schedule(self) -> RetrySchedule: ...
    @property
    def max_receive_count(self) -> int: ...
    def source_queue(self, record: Mapping[str, Any]) -> SourceQueue: ...


# a redrive step (receive, send back, delete) starts only when its three AWS calls, at their longest, and the
# long poll's second fit in what is left of the invocation
REDRIVE_RESERVE_MS = 3 * AWS_CALL_MAX_MS + 1000


def read_circuit(function: VendorFunction) -> CircuitState:
    """The vendor's circuit; closed when it cannot be read (an outage of the table costs requests, not events)."""
    try:
        return function.circuit.read()
    except Exception:  # noqa: BLE001
        metrics.add_metric("CircuitErrors", MetricUnit.Count, 1)
        logger.error("could not read the vendor's circuit state: sending as if it were closed")
        return CircuitState()


def update_circuit(function: VendorFunction, state: CircuitState, stats: Stats) -> CircuitState:
    """Record what the vendor answered in this invocation; returns the circuit as it is now."""
    now = function.clock()
    try:
        if stats.answered:
            if function.circuit.answered(state, stats.streak):
                logger.warning(
                    f"{function.connection} answered again: circuit closed",
                    extra={"open_seconds": round(state.open_seconds(now))},
                )
                metrics.add_metric("CircuitClosed", MetricUnit.Count, 1)
            marks = state.marks + (1 if state.is_open else 0)  # closing an open circuit marks the DLQ
            state = CircuitState(failures=stats.streak, redrive=state.redrive or state.is_open, marks=marks)
        # failures after the last answer (all of them when none came) count towards opening the circuit
        trips = stats.streak >= OPEN_AFTER if stats.answered else stats.failed > 0
        if trips and function.circuit.failed(0 if stats.answered else stats.failed):
            logger.warning(
                f"{function.connection} keeps failing: circuit opened", extra={"failed_requests": stats.failed}
            )
            metrics.add_metric("CircuitOpened", MetricUnit.Count, 1)
            state = CircuitState(is_open=True, opened_at=now, redrive=state.redrive, marks=state.marks)
    except Exception:  # noqa: BLE001
        metrics.add_metric("CircuitErrors", MetricUnit.Count, 1)
        logger.error("could not update the vendor's circuit state")
    return state


def report_circuit(function: VendorFunction, state: CircuitState, held: int) -> None:
    metrics.add_metric("CircuitOpenSeconds", MetricUnit.Seconds, round(state.open_seconds(function.clock())))
    metrics.add_metric("EventsHeld", MetricUnit.Count, held)


def delay_retries(
    function: VendorFunction,
    records: list[dict[str, Any]],
    results: Mapping[str, Delivery],
    events: Mapping[str, QueuedEvent],
    retry: Iterable[str],
) -> dict[str, int]:
    """Set when each message kept for a retry comes back: on the growing schedule when it failed for the
    vendor's sake (BACKOFF), after the queue's own visibility timeout otherwise. Returns the seconds set
    per message id."""
    retry = set(retry)
    backoff = {e.message_id for key, e in events.items() if e.message_id in retry and results[key].outcome in BACKOFF}
    now = function.clock()
    delays: dict[str, int] = {}
    by_message: dict[str, int] = {}
    oldest = 0.0
    for record in records:
        if record["messageId"] not in retry:
            continue
        age = age_seconds(record, now)
        oldest = max(oldest, age)
        if record["messageId"] in backoff:
            delays[record["receiptHandle"]] = by_message[record["messageId"]] = function.schedule.delay(
                receives(record), age
            )
    metrics.add_metric("OldestRetryAgeSeconds", MetricUnit.Seconds, round(oldest))
    if not delays:
        return by_message
    failed = function.source_queue(records[0]).delay(delays)
    metrics.add_metric("RetryDelays", MetricUnit.Count, len(delays) - failed)
    if failed:
        logger.warning("could not set the retry delay of some messages", extra={"messages": failed})
    return by_message


def receives(record: Mapping[str, Any]) -> int:
    """How many times SQS has handed this record out (1 on its first receive)."""
    return int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))


def gave_up(function: VendorFunction, record: Mapping[str, Any], delivery: Delivery) -> str | None:
    """Why a failed event is dead-lettered as retries_exhausted now (None: it is kept for a retry): its
    message is older than the retry window, or on its last receive the queue allows."""
    count = receives(record)
    age = age_seconds(record, function.clock())
    if delivery.outcome in BACKOFF and function.schedule.expired(age):
        window = function.delivery.retry_window_hours
        return f"gave up after {age / 3600:.2f} h ({count} receives; retry window {window:g} h)"
    if count >= function.max_receive_count:
        return f"gave up after {count} receives (MaxReceiveCount)"
    return None


def after_dead_letters(function: VendorFunction, state: CircuitState, outcomes: Iterable[str]) -> CircuitState:
    """Mark the DLQ for the automatic redrive when events were just given up for transient reasons."""
    if state.redrive or Outcome.RETRIES_EXHAUSTED.value not in set(outcomes) or not function.delivery.auto_redrive:
        return state
    try:
        function.circuit.mark_redrive()
    except Exception:  # noqa: BLE001 - the next closing of the circuit marks it again
        metrics.add_metric("CircuitErrors", MetricUnit.Count, 1)
        return state
    return CircuitState(state.is_open, state.failures, state.opened_at, state.probe_at, True, state.marks)


def redrive_if_healthy(
    function: VendorFunction,
    state: CircuitState,
    stats: Stats | None,
    remaining_ms: Callable[[], int],
    record: Mapping[str, Any],
) -> int:
    """Move the DLQ's transient letters back to the queue when the vendor just answered, its circuit is
    closed and a redrive is due; returns how many were moved."""
    if not (function.delivery.auto_redrive and state.redrive and not state.is_open and stats and stats.answered):
        return 0
    from relay.delivery.redrive import redrive_transient

    source = function.source_queue(record)
    try:
        done = redrive_transient(
            function.dead_letters.client,
            function.dead_letters.queue_url,
            source.queue_url,
            lambda: remaining_ms() > REDRIVE_RESERVE_MS,
            connection=function.connection,
        )
    except Exception:  # noqa: BLE001 - SQS failed the pass: the batch's answer stands, the next pass goes on
        metrics.add_metric("RedriveErrors", MetricUnit.Count, 1)
        logger.error(f"could not move {function.connection}'s dead letters back to the {function.vendor} queue")
        return 0
    if done.moved:
        logger.warning(
            f"moved {done.moved} of {function.connection}'s dead letters back to the {function.vendor} queue",
            extra={"event_ids": done.event_ids[:50]},
        )
    metrics.add_metric("EventsRedriven", MetricUnit.Count, done.moved)
    # done once a whole pass found nothing to move and no letter was hidden from it (`relay dlq list` holds
    # the letters it reads for a while): the next healthy invocation looks again until then
    if done.complete and not done.moved and not hidden_letters(function):
        try:
            function.circuit.clear_redrive(state)
        except Exception:  # noqa: BLE001 - the next healthy invocation makes another (short) pass
            metrics.add_metric("CircuitErrors", MetricUnit.Count, 1)
    return done.moved


def hidden_letters(function: VendorFunction) -> bool:
    """Whether some dead letters are invisible right now (being read elsewhere); True when it cannot tell."""
    dlq = function.dead_letters
    try:
        attrs = dlq.client.get_queue_attributes(
            QueueUrl=dlq.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessagesNotVisible", "0")) > 0
    except Exception:  # noqa: BLE001
        return True


RECOVERY_EVENT = {"relay": "recover"}  # what template.yaml's schedule sends each vendor function


def is_recovery(event: Mapping[str, Any]) -> bool:
    return "Records" not in event and event.get("relay") == RECOVERY_EVENT["relay"]


def recover(function: VendorFunction, remaining_ms: Callable[[], int], alone: bool = True) -> dict[str, int]:
    """The scheduled recovery (template.yaml, every five minutes; off with AutoRedrive): when the DLQ waits for
    a redrive (marked) and nothing is queued that would invoke the function, one transient letter goes back to
    the queue. Its invocation is the probe: the circuit decides whether it is sent, and once the vendor
    answers, that invocation redrives the rest (`redrive_if_healthy`). Returns how many letters it moved.
    `function`: one connection's (relay.delivery.lanes.Lane); `alone`: the vendor's only connection, whose
    queued messages probe it anyway (with several, a queue holding messages says nothing of this one's)."""
    if not function.delivery.auto_redrive:
        return {"moved": 0}
    queue_url = function.environment.queue_url
    if not queue_url:  # template.yaml sets it; a function deployed without it is recovered by its traffic only
        logger.error("RELAY_QUEUE_URL is not set: the scheduled recovery cannot move letters back")
        return {"moved": 0}
    state = read_circuit(function)
    if not state.redrive or (alone and still_queued(function, queue_url)):
        return {"moved": 0}
    from relay.delivery.redrive import redrive_transient

    dlq = function.dead_letters
    try:
        done = redrive_transient(
            dlq.client,
            dlq.queue_url,
            queue_url,
            lambda: remaining_ms() > REDRIVE_RESERVE_MS,
            limit=1,
            connection=function.connection,
        )
    except Exception:  # noqa: BLE001 - the next scheduled run tries again
        metrics.add_metric("RedriveErrors", MetricUnit.Count, 1)
        return {"moved": 0}
    metrics.add_metric("EventsRedriven", MetricUnit.Count, done.moved)
    if done.moved:
        logger.warning(
            f"scheduled recovery: one of {function.connection}'s dead letters back to its queue as the probe"
        )
    elif done.complete and not hidden_letters(function):  # nothing transient left: the redrive is done
        try:
            function.circuit.clear_redrive(state)
        except Exception:  # noqa: BLE001 - the next run looks again
            metrics.add_metric("CircuitErrors", MetricUnit.Count, 1)
    return {"moved": done.moved}


def still_queued(function: VendorFunction, queue_url: str) -> bool:
    """Whether the function's queue holds messages (visible, in flight or delayed): those invoke it anyway, and
    probe the vendor themselves. True when it cannot tell."""
    try:
        attrs = function.dead_letters.client.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    except Exception:  # noqa: BLE001
        return True
    return any(int(value) > 0 for value in attrs.values())

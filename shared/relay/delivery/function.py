"""A vendor function's logic: an SQS batch in, its events delivered or dead-lettered, the partial batch response out.

`functions/<vendor>/app.py` decorates a `lambda_handler` that calls `deliver_batch` with the container's
`VendorFunction` (`vendor_function()`, made once); tests and the local stack pass their own.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from relay.aws.clients import AWS_CALL_MAX_MS
from relay.aws.ledger import DeliveryLedger
from relay.aws.secrets import SecretRefresh, load_vendor_config
from relay.delivery import letters, recovery
from relay.delivery.circuit import Circuit, CircuitState
from relay.delivery.forwarding import Forwarder
from relay.delivery.letters import Events, Results
from relay.delivery.outcomes import Delivery, Outcome
from relay.delivery.response import batch_response
from relay.delivery.retry import RetrySchedule, SourceQueue
from relay.delivery.sending import SEND_WORKERS, RetryPolicy, new_http_client
from relay.journey import JourneyTable
from relay.journey.record import invocation_journey
from relay.models.config import ConfigError, DeliveryConfig, RelayConfig, delivery_from_env
from relay.models.environment import InvalidEnvironment, VendorEnvironment, get_environment, read_environment
from relay.observability import MetricUnit, logger, metrics
from relay.queued.message import parse_message
from relay.vendors.base import IDENTIFIER_KINDS

if TYPE_CHECKING:  # imported when a batch has something to dead-letter: most never do (cold start)
    from relay.delivery.deadletter import DeadLetterQueue


class VendorDisabled(Exception):
    """The function's vendor is turned off in the configuration (its messages were queued before)."""


class VendorFunction:
    """What a vendor function's invocations share: its environment, configuration, clients and ledger.

    Each dependency is made on first use unless injected (`load_config` replaces the environment and
    Secrets Manager; `secrets_client`: the Secrets Manager client; `queue`: the function's own queue, for the
    retry delays). `policy`: the retries and deadlines within an invocation. When the vendor refuses the
    credentials, the next invocation re-reads the secret (`secret_refresh`: a rotated key takes effect at
    once, not when the cache expires)."""

    def __init__(
        self,
        vendor: str,
        environment: VendorEnvironment | None = None,
        load_config: Callable[[], RelayConfig] | None = None,
        http_client: httpx.Client | None = None,
        ledger: DeliveryLedger | None = None,
        dead_letters: DeadLetterQueue | None = None,
        max_workers: int = SEND_WORKERS,
        sleep: Callable[[float], None] = time.sleep,
        secret_refresh: SecretRefresh | None = None,
        policy: RetryPolicy | None = None,
        secrets_client: Any = None,
        queue: SourceQueue | None = None,
    ):
        self.vendor = vendor
        self._environment = environment
        self._load_config = load_config
        self._client = http_client
        self._ledger = ledger
        self._dlq = dead_letters
        self.max_workers, self.sleep, self.policy = max_workers, sleep, policy
        self.refresh = secret_refresh or SecretRefresh()
        self._forwarders: dict[tuple[str, ...], Forwarder] = {}
        self._secrets_client = secrets_client
        # the vendor's circuit uses the ledger's DynamoDB client, the function's queue the DLQ's SQS client
        self._circuit: Circuit | None = None
        self._queue = queue
        self.clock: Callable[[], float] = time.time  # ages of messages, how long a circuit is open
        self.rng: Callable[[], float] = random.random  # the retry delays' jitter
        self._delivery: DeliveryConfig | None = None
        self._journeys: JourneyTable | None = None

    @property
    def environment(self) -> VendorEnvironment:
        if self._environment is None:
            self._environment = read_environment(VendorEnvironment)
        return self._environment

    @property
    def ledger(self) -> DeliveryLedger:
        if self._ledger is None:
            self._ledger = DeliveryLedger.for_function(self.vendor, self.environment)
        return self._ledger

    @property
    def made_ledger(self) -> DeliveryLedger | None:
        """The ledger if this container made (or was given) one: a function that never claimed has none."""
        return self._ledger

    @property
    def journeys(self) -> JourneyTable:
        """Where the events' journeys go: the ledger's table, client and horizon."""
        if self._journeys is None:
            ledger = self.ledger
            self._journeys = JourneyTable(
                ledger.table_name, ledger.client, clock=lambda: self.clock(), horizon_seconds=ledger.horizon_seconds
            )
        return self._journeys

    @property
    def dead_letters(self) -> DeadLetterQueue:
        if self._dlq is None:
            from relay.delivery.deadletter import DeadLetterQueue

            self._dlq = DeadLetterQueue(self.environment.dlq_url)
        return self._dlq

    @property
    def max_receive_count(self) -> int:
        """The receives SQS allows a message (the queue's maxReceiveCount): the last one dead-letters."""
        return self.environment.max_receive_count

    @property
    def delivery(self) -> DeliveryConfig:
        """The [delivery] settings (retry window, delays, probe interval, automatic redrive): read apart from
        the rest of the configuration, which may be unusable while its messages still need their schedule."""
        if self._delivery is None:
            try:
                self._delivery = delivery_from_env(self.environment.settings)
            except ConfigError as exc:
                raise InvalidEnvironment(str(exc)) from None
        return self._delivery

    @property
    def schedule(self) -> RetrySchedule:
        return RetrySchedule(self.delivery.retry_window_seconds, self.delivery.max_retry_delay_seconds, self.rng)

    @property
    def circuit(self) -> Circuit:
        if self._circuit is None:
            self._circuit = Circuit(
                self.vendor,
                self.environment.idempotency_table,
                self.delivery.probe_interval_seconds,
                self.ledger.client,
                clock=lambda: self.clock(),
            )
        return self._circuit

    def source_queue(self, record: Mapping[str, Any]) -> SourceQueue:
        """The function's queue: RELAY_QUEUE_URL, else the URL of the queue the record came from."""
        if self._queue is None:
            url = self.environment.queue_url or queue_url_of(record["eventSourceARN"])
            self._queue = SourceQueue(url, self.dead_letters.client)
        return self._queue

    def config(self) -> RelayConfig:
        """The relay's configuration, its secret re-read when it stopped working; raises VendorDisabled."""
        if self._load_config is not None:
            config = self._load_config()
        else:
            config = load_vendor_config(self.environment, self._secrets_client, refresh=self.refresh.take())
        if not config.enabled(self.vendor):
            raise VendorDisabled(
                f"{self.vendor} is disabled in the relay's configuration (RELAY_{self.vendor.upper()}_ENABLED); "
                "enable it and redrive its DLQ to send these events"
            )
        return config

    def forwarder(self) -> Forwarder:
        """The Forwarder for the current configuration: made again when the vendor's keys change."""
        config = self.config()
        key = tuple(config.secret_values())
        if key not in self._forwarders:
            for old in self._forwarders.values():
                old.close()
            self._forwarders.clear()
            if self._client is None:
                self._client = new_http_client()
            self._forwarders[key] = Forwarder(
                self.vendor,
                config,
                self._client,
                ledger=self.ledger,
                max_workers=self.max_workers,
                sleep=self.sleep,
                **({"policy": self.policy} if self.policy else {}),
            )
        return self._forwarders[key]


@functools.cache
def vendor_function() -> VendorFunction:
    """The container's VendorFunction, for the vendor its environment names (RELAY_VENDOR)."""
    environment = get_environment(VendorEnvironment)
    return VendorFunction(environment.vendor, environment)


def deliver_batch(event: dict[str, Any], context: Any, function: VendorFunction) -> dict[str, Any]:
    """Deliver an SQS batch (Lambda's SQS event); returns the partial batch response: the SQS messages to
    receive again (a bundle is received again while any of its events needs it), each with its retry delay
    set."""
    metrics.add_dimension("vendor", function.vendor)
    if recovery.is_recovery(event):  # the schedule: no batch, a redrive that waits for traffic may start
        return recovery.recover(function, context.get_remaining_time_in_millis)
    records = event.get("Records", [])
    remaining_ms = context.get_remaining_time_in_millis
    state = recovery.read_circuit(function) if records else CircuitState()
    results, events, forwarder = deliver(function, records, remaining_ms, state)
    batch = forwarder.last[0] if forwarder is not None else None  # the batch whose claims a dead letter replaces
    moved, outcomes = letters.dead_letter(function, records, results, events, whole=forwarder is None, batch=batch)
    stats = None
    if forwarder is not None:
        stats = forwarder.stats
        forwarder.settle(results, moved)
        if stats.ledger_errors:
            metrics.add_metric("LedgerErrors", MetricUnit.Count, stats.ledger_errors)
            logger.error("could not record deliveries in the idempotency table")
        state = recovery.update_circuit(function, state, stats)
    state = recovery.after_dead_letters(function, state, outcomes)
    recovery.report_circuit(function, state, sum(d.outcome == Outcome.HELD for d in results.values()))
    retry = report(function.vendor, records, results, events, moved)
    delays: dict[str, int] = {}
    if records:
        delays = recovery.delay_retries(function, records, results, events, retry)
    record_journey(function, forwarder, (results, events, moved), delays, remaining_ms)
    if records:
        recovery.redrive_if_healthy(function, state, stats, remaining_ms, records[0])
    return batch_response(retry)


def record_journey(
    function: VendorFunction,
    forwarder: Forwarder | None,
    batch: tuple[Results, Events, set[str]],
    delays: Mapping[str, int],
    remaining_ms: Callable[[], int],
) -> None:
    """Write the invocation's journey item (relay.journey): its vendor requests and each claimed event's
    outcome, `delays` the seconds until each message kept for a retry comes back. Best effort."""
    if forwarder is None or not function.delivery.journey:
        return
    batch_id, claimed = forwarder.last
    if not batch_id or not claimed:  # nothing was claimed: no request was made, no outcome is new
        return
    if remaining_ms() < AWS_CALL_MAX_MS:
        metrics.add_metric("JourneyErrors", MetricUnit.Count, 1)
        return
    results, events, moved = batch
    now = function.clock()
    next_attempts = {key: now + delays[e.message_id] for key, e in events.items() if e.message_id in delays}
    data = invocation_journey(function.vendor, now, forwarder.stats, claimed, results, moved, next_attempts)
    if not function.journeys.put(function.vendor, batch_id, data):
        metrics.add_metric("JourneyErrors", MetricUnit.Count, 1)
        logger.warning("could not write the journey of a batch")


def queue_url_of(arn: str) -> str:
    """An SQS queue's URL from its ARN (arn:aws:sqs:<region>:<account>:<name>)."""
    _, partition, _, region, account, name = arn.split(":", 5)
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{suffix}/{account}/{name}"


def read_records(records: list[dict[str, Any]], vendor: str) -> Events:
    """The events of the batch's records, each with `vendor`'s part or the reason it cannot be read. Only
    the body is read: the record envelope is Lambda's own."""
    return {
        e.key: e for record in records for e in parse_message(record["messageId"], record.get("body") or "", vendor)
    }


def deliver(
    function: VendorFunction,
    records: list[dict[str, Any]],
    remaining_ms: Callable[[], int],
    state: CircuitState | None = None,
) -> tuple[Results, Events, Forwarder | None]:
    """A Delivery for every event of the batch, the events read, and the Forwarder (None: the function
    itself cannot deliver: its vendor disabled or its configuration unusable)."""
    vendor = function.vendor
    events = read_records(records, vendor)
    try:
        forwarder = function.forwarder()
    except ConfigError as exc:
        function.refresh.due()  # a secret being filled in: read it again next time, not when the cache expires
        logger.error(f"{vendor} configuration unusable", extra={"errors": [str(e) for e in exc.errors]})
        metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
        return (
            {key: Delivery(False, Outcome.CONFIG, f"{vendor} configuration unusable") for key in events},
            events,
            None,
        )
    except VendorDisabled as exc:  # disabled while its messages were queued: kept, with why, in its DLQ
        logger.error(str(exc))
        return {key: Delivery(False, Outcome.DISABLED, str(exc)) for key in events}, events, None
    results = {key: Delivery(False, Outcome.INVALID, e.error) for key, e in events.items() if e.error}
    readable = {key: e.event for key, e in events.items() if e.event is not None}
    bundles = {key: e.bundle for key, e in events.items() if e.bundle and e.event is not None}
    # the batch record is settled once the dead letters are moved (those are done with, not to retry)
    state = state or CircuitState()
    if state.is_open and not take_probe(function, state):  # the vendor keeps failing: wait for the probe
        results.update(forwarder.hold(readable))
        return results, events, forwarder
    results.update(
        forwarder.deliver(
            readable,
            remaining_ms,
            bundles,
            settle=False,
            failures_left=state.failures_left(),
            probe=state.is_open,
        )
    )
    record_requests(forwarder)
    auth = sorted({d.status for d in results.values() if d.outcome == Outcome.AUTH})
    if auth:
        function.refresh.due()
        metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
        logger.error(f"{vendor} refused the relay's credentials", extra={"status": auth})
    return results, events, forwarder


def take_probe(function: VendorFunction, state: CircuitState) -> bool:
    try:
        return function.circuit.take_probe(state)
    except Exception:  # noqa: BLE001 - another invocation probes when this one cannot tell
        metrics.add_metric("CircuitErrors", MetricUnit.Count, 1)
        return False


def record_requests(forwarder: Forwarder) -> None:
    """The metrics of the vendor requests of the last batch."""
    stats = forwarder.stats
    for call in stats.calls:
        metrics.add_metric("VendorLatency", MetricUnit.Milliseconds, call.latency_ms)
    metrics.add_metric("VendorRequests", MetricUnit.Count, len(stats.calls))
    metrics.add_metric("VendorRetries", MetricUnit.Count, stats.retries)
    metrics.add_metric("BisectRequests", MetricUnit.Count, stats.bisect_requests)
    for kind in IDENTIFIER_KINDS:  # share of EventsForwarded carrying each kind of identifier (match quality)
        metrics.add_metric(match_metric(kind), MetricUnit.Count, stats.identifiers[kind])


def match_metric(kind: str) -> str:
    """`email` -> `MatchEmail`, `click_id` -> `MatchClickId`."""
    return "Match" + "".join(part.capitalize() for part in kind.split("_"))


def report(vendor: str, records: list[dict[str, Any]], results: Results, events: Events, moved: set[str]) -> list[str]:
    """Log and count the batch's outcomes; returns the SQS message ids to receive again."""
    counts = {Outcome.FORWARDED.value: 0, Outcome.SKIPPED.value: 0, Outcome.DUPLICATE.value: 0, "retry": 0}
    retry: list[str] = []
    for key, delivery in results.items():
        if delivery.ok:
            counts[delivery.outcome.value] += 1
            continue
        if key in moved:
            continue
        counts["retry"] += 1
        queued = events[key]
        if queued.message_id not in retry:
            retry.append(queued.message_id)
        logger.warning(
            "delivery failed, kept for retry",
            extra={
                "event_id": queued.event.event_id if queued.event else None,
                "message_id": key,
                "outcome": delivery.outcome,
                "reason": delivery.reason,
                "status": delivery.status,
            },
        )
    metrics.add_metric("EventsForwarded", MetricUnit.Count, counts[Outcome.FORWARDED.value])
    metrics.add_metric("EventsSkipped", MetricUnit.Count, counts[Outcome.SKIPPED.value])
    metrics.add_metric("DuplicateEvents", MetricUnit.Count, counts[Outcome.DUPLICATE.value])
    metrics.add_metric("EventsFailed", MetricUnit.Count, counts["retry"])
    logger.info(
        f"{vendor} batch",
        extra={"records": len(records), "events": len(events), "dead_lettered": len(moved), **counts},
    )
    return retry

"""A vendor function's logic: an SQS batch in, its events delivered or dead-lettered, the partial batch response out.

`functions/<vendor>/app.py` decorates a `lambda_handler` that calls `deliver_batch` with the container's
`VendorFunction` (`vendor_function()`, made once); tests and the local stack pass their own.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from relay.aws.clients import AWS_CALL_MAX_MS
from relay.aws.ledger import DeliveryLedger
from relay.aws.secrets import SecretRefresh, load_vendor_config
from relay.delivery import letters, recovery
from relay.delivery.circuit import Circuit, CircuitState
from relay.delivery.forwarding import Forwarder
from relay.delivery.lanes import Lane, LaneRun, VendorDisabled, lanes, run_lane
from relay.delivery.letters import Events, Results
from relay.delivery.outcomes import Delivery, Outcome
from relay.delivery.reporting import report
from relay.delivery.response import batch_response
from relay.delivery.retry import RetrySchedule, SourceQueue
from relay.delivery.sending import SEND_WORKERS, RetryPolicy, new_http_client, start_pool
from relay.journey import JourneyTable
from relay.journey.record import invocation_journey
from relay.models.config import SECRET_KEYS, ConfigError, DeliveryConfig, RelayConfig, delivery_from_env
from relay.models.environment import InvalidEnvironment, VendorEnvironment, get_environment, read_environment
from relay.models.errors import FieldError
from relay.models.names import DEFAULT, ledger_name, vendor_of
from relay.observability import MetricUnit, logger, metrics
from relay.queued.message import parse_message

if TYPE_CHECKING:  # imported when a batch has something to dead-letter: most never do (cold start)
    from relay.delivery.deadletter import DeadLetterQueue


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
        self.connection = vendor  # the connection named default (a Lane is one of the others)
        self._forwarders: dict[tuple[str, ...], Forwarder] = {}
        self._ledgers: dict[str, DeliveryLedger] = {}
        self._circuits: dict[str, Circuit] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._secrets_client = secrets_client
        # the vendor's circuit uses the ledger's DynamoDB client, the function's queue the DLQ's SQS client
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
        return self.circuit_of(self.vendor)

    def circuit_of(self, connection: str) -> Circuit:
        """A connection's circuit breaker (the ledger's DynamoDB client)."""
        if connection not in self._circuits:
            self._circuits[connection] = Circuit(
                connection,
                self.environment.idempotency_table,
                self.delivery.probe_interval_seconds,
                self.ledger.client,
                clock=lambda: self.clock(),
            )
        return self._circuits[connection]

    def ledger_of(self, name: str) -> DeliveryLedger:
        """The ledger of one connection and source (relay.models.names.ledger_name) on the function's table."""
        if name == self.vendor:
            return self.ledger
        if name not in self._ledgers:
            self._ledgers[name] = self.ledger.scoped(name)
        return self._ledgers[name]

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

    def forwarder(
        self,
        connection: str | None = None,
        source: str = DEFAULT,
        config: RelayConfig | None = None,
        replay: str = "",
    ) -> Forwarder:
        """The Forwarder of a connection (the default one unless named) for one source's events (`replay`: those
        a `relay replay --again` queued, claimed apart), from `config` (read now unless given): made again when
        the connection's keys change; raises VendorDisabled when the connection is not enabled, ConfigError when
        its key is missing."""
        connection = connection or self.vendor
        config = config or self.config()
        section = config.connection(connection)
        if section is None or not section.enabled:
            raise VendorDisabled(
                f"{connection} is not an enabled connection in the relay's configuration; "
                "enable it and redrive its DLQ to send these events"
            )
        vendor = self.vendor
        missing = [k for k in SECRET_KEYS[vendor] if getattr(section, k) is None]
        if missing:
            where = f"connections.{connection.partition('.')[2]}." if connection != vendor else ""
            secret = f"{where}{missing[0]}"
            raise ConfigError([FieldError(f"{connection}.{missing[0]}", f"missing: set {secret} in {vendor}'s secret")])
        narrowed = config.for_connection(connection)  # the connection as its vendor's only one
        keys = narrowed.secret_values()
        key = (connection, source, replay, *keys)
        if key not in self._forwarders:
            for old in [k for k in self._forwarders if k[:3] == (connection, source, replay)]:
                self._forwarders.pop(old).close()
            if self._client is None:
                self._client = new_http_client()
            if self._pool is None:
                self._pool = start_pool(self.max_workers, f"{self.vendor}-send")
            self._forwarders[key] = Forwarder(
                self.vendor,
                narrowed,
                self._client,
                ledger=self.ledger_of(ledger_name(connection, source, replay)),
                max_workers=self.max_workers,
                sleep=self.sleep,
                pool=self._pool,
                journey=self.delivery.journey,
                **({"policy": self.policy} if self.policy else {}),
            )
        return self._forwarders[key]


@functools.cache
def vendor_function() -> VendorFunction:
    """The container's VendorFunction, for the vendor its environment names (RELAY_VENDOR)."""
    environment = get_environment(VendorEnvironment)
    return VendorFunction(environment.vendor, environment)


def deliver_batch(event: dict[str, Any], context: Any, function: VendorFunction) -> dict[str, Any]:
    """Deliver an SQS batch (Lambda's SQS event), lane by lane (relay.delivery.lanes); returns the partial batch
    response: the SQS messages to receive again (a message is received again while any of its events needs
    it), each with its retry delay set."""
    metrics.add_dimension("vendor", function.vendor)
    remaining_ms = context.get_remaining_time_in_millis
    if recovery.is_recovery(event):  # the schedule: no batch, a redrive that waits for traffic may start
        return recover_connections(function, remaining_ms)
    records = event.get("Records", [])
    events = read_records(records, function.vendor)
    try:
        config = function.config()
    except (ConfigError, VendorDisabled) as exc:  # the function itself cannot deliver: each message moved whole
        results = unusable(function, events, exc)
        moved, outcomes = letters.dead_letter(function, records, results, events, whole=True)
        retry = report(function.vendor, records, results, events, moved)
        if records:  # kept on the retry schedule (a transient failure); what is given up waits for a redrive
            recovery.delay_retries(function, records, results, events, retry)
            recovery.after_dead_letters(function, recovery.read_circuit(function), outcomes)
        return batch_response(retry)
    states: dict[str, CircuitState] = {}
    runs = [
        run_lane(Lane(function, c, s, config, r), records, {k: events[k] for k in keys}, remaining_ms, states)
        for (c, s, r), keys in lanes(events.values()).items()
    ]
    results = {key: d for run in runs for key, d in run.results.items()}
    moved = {key for run in runs for key in run.moved}
    retry = report(function.vendor, records, results, events, moved)
    delays = recovery.delay_retries(function, records, results, events, retry) if records else {}
    for run in runs:
        record_journey(run, delays, remaining_ms)
    for connection, state in states.items() if records else ():
        answered = next((r.forwarder.stats for r in runs if r.answered and r.lane.connection == connection), None)
        recovery.redrive_if_healthy(Lane(function, connection), state, answered, remaining_ms, records[0])
    return batch_response(retry)


def recover_connections(function: VendorFunction, remaining_ms: Callable[[], int]) -> dict[str, int]:
    """The scheduled recovery of each of the vendor's connections (relay.delivery.recovery.recover)."""
    try:
        connections = [c for c in function.config().connection_ids if vendor_of(c) == function.vendor]
    except (ConfigError, VendorDisabled):
        connections = []
    # the vendor's own circuit too: whole messages given up while the configuration was unusable mark it
    connections = list(dict.fromkeys([function.vendor, *connections]))
    moved = 0
    for connection in connections:
        # with several connections, a queue holding messages says nothing of whether this one is invoked
        done = recovery.recover(Lane(function, connection), remaining_ms, alone=len(connections) == 1)
        moved += done["moved"]
    return {"moved": moved}


def unusable(function: VendorFunction, events: Events, exc: Exception) -> Results:
    """Every event's delivery when the function cannot deliver any (its configuration unusable, or its vendor
    disabled while its messages were queued: kept, with why, in its DLQ)."""
    vendor = function.vendor
    if isinstance(exc, VendorDisabled):
        logger.error(str(exc))
        return {key: Delivery(False, Outcome.DISABLED, str(exc)) for key in events}
    function.refresh.due()  # a secret being filled in: read it again next time, not when the cache expires
    errors = [str(e) for e in exc.errors] if isinstance(exc, ConfigError) else []
    logger.error(f"{vendor} configuration unusable", extra={"errors": errors})
    metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
    return {key: Delivery(False, Outcome.CONFIG, f"{vendor} configuration unusable") for key in events}


def record_journey(run: LaneRun, delays: Mapping[str, int], remaining_ms: Callable[[], int]) -> None:
    """Write the lane's journey item (relay.journey): its vendor requests and each claimed event's outcome,
    `delays` the seconds until each message kept for a retry comes back. Best effort."""
    lane, forwarder = run.lane, run.forwarder
    if forwarder is None or not lane.delivery.journey:
        return
    batch_id, claimed = forwarder.last
    if not batch_id or not claimed:  # nothing was claimed: no request was made, no outcome is new
        return
    if remaining_ms() < AWS_CALL_MAX_MS:
        metrics.add_metric("JourneyErrors", MetricUnit.Count, 1)
        return
    now = lane.clock()
    next_attempts = {key: now + delays[e.message_id] for key, e in run.events.items() if e.message_id in delays}
    data = invocation_journey(
        lane.connection, now, forwarder.stats, claimed, run.results, run.moved, next_attempts, lane.source
    )
    if not lane.journeys.put(lane.ledger.vendor, batch_id, data):
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

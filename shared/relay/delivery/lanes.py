"""A vendor function's batch, lane by lane (docs/connections.md, "Delivery per connection").

An SQS batch of a vendor's queue can carry events for several of its connections, from several sources. A
**lane** is one connection's share of it for one source: its own forwarder (the connection's ids, endpoint and
keys), its own ledger (the claims of that connection for that source, relay.models.names.ledger_name) and the
connection's circuit breaker, retry schedule and redrive. A lane's failure holds only its own events: another
lane of the same batch is delivered in the same invocation. `Lane` reads like the VendorFunction it belongs to
(the protocols of relay.delivery.recovery and relay.delivery.letters), scoped to its connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from relay.delivery import letters, recovery
from relay.delivery.circuit import Circuit, CircuitState
from relay.delivery.forwarding import Forwarder
from relay.delivery.letters import Events, Results
from relay.delivery.outcomes import Delivery, Outcome
from relay.delivery.reporting import record_requests, report_connection
from relay.delivery.retry import RetrySchedule
from relay.models.config import ConfigError
from relay.models.names import DEFAULT, ledger_name
from relay.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from relay.aws.ledger import DeliveryLedger
    from relay.aws.secrets import SecretRefresh
    from relay.delivery.deadletter import DeadLetterQueue
    from relay.delivery.retry import SourceQueue
    from relay.journey import JourneyTable
    from relay.models.config import DeliveryConfig, RelayConfig
    from relay.models.environment import VendorEnvironment
    from relay.queued.message import QueuedEvent


class VendorDisabled(Exception):
    """A connection (or the function's whole vendor) is turned off in the configuration, or no longer in it,
    while its messages were queued."""


class VendorFunction(recovery.VendorFunction, Protocol):
    """What a lane reads of its vendor function (relay.delivery.function.VendorFunction): what recovery reads,
    and the parts each lane scopes to its connection and source."""

    refresh: SecretRefresh

    @property
    def journeys(self) -> JourneyTable: ...
    @property
    def made_ledger(self) -> DeliveryLedger | None: ...
    def ledger_of(self, name: str) -> DeliveryLedger: ...
    def circuit_of(self, connection: str) -> Circuit: ...
    def forwarder(
        self, connection: str | None, source: str, config: RelayConfig | None, replay: str = ""
    ) -> Forwarder: ...


class Lane:
    """One connection of the function's vendor, for one source's events."""

    def __init__(
        self,
        function: VendorFunction,
        connection: str,
        source: str = DEFAULT,
        config: RelayConfig | None = None,
        replay: str = "",
    ):
        self.function = function
        self.replay = replay  # a `relay replay --again`'s id: its claims are apart (relay.models.names.ledger_name)
        self.vendor = function.vendor
        self.connection = connection
        self.source = source
        self.config = config  # the configuration this invocation read (None: read when the forwarder is made)

    @property
    def clock(self) -> Callable[[], float]:
        return self.function.clock

    @property
    def environment(self) -> VendorEnvironment:
        return self.function.environment

    @cached_property  # a lane lasts one invocation: its settings are read once, not per failed event
    def delivery(self) -> DeliveryConfig:
        """The [delivery] settings, with this connection's own retry window when it has one."""
        section = self.config.connection(self.connection) if self.config is not None else None
        window = getattr(section, "retry_window_hours", None)
        delivery = self.function.delivery
        return delivery if window is None else delivery.model_copy(update={"retry_window_hours": window})

    @cached_property
    def schedule(self) -> RetrySchedule:
        """When this connection's events are given up (its retry window)."""
        schedule = self.function.schedule
        window = self.delivery.retry_window_seconds
        if window == schedule.window_seconds:
            return schedule
        return RetrySchedule(window, schedule.max_delay_seconds, schedule.rng)

    @property
    def max_receive_count(self) -> int:
        return self.function.max_receive_count

    @property
    def dead_letters(self) -> DeadLetterQueue:
        return self.function.dead_letters

    @property
    def journeys(self) -> JourneyTable:
        return self.function.journeys

    def source_queue(self, record: Mapping[str, Any]) -> SourceQueue:
        return self.function.source_queue(record)

    @property
    def ledger(self) -> DeliveryLedger:
        """The ledger of this connection's claims of this source's events."""
        return self.function.ledger_of(ledger_name(self.connection, self.source, self.replay))

    @property
    def made_ledger(self) -> DeliveryLedger | None:
        return self.ledger if self.function.made_ledger is not None else None

    @property
    def circuit(self) -> Circuit:
        return self.function.circuit_of(self.connection)

    def forwarder(self) -> Forwarder:
        return self.function.forwarder(self.connection, self.source, self.config, self.replay)


def lanes(events: Iterable[QueuedEvent]) -> dict[tuple[str, str, str], list[str]]:
    """The keys of the batch's events by lane, (connection, source, replay), in the order of the connections."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for queued in events:
        out.setdefault((queued.connection, queued.sent_by, queued.replay), []).append(queued.key)
    return dict(sorted(out.items()))


@dataclass
class LaneRun:
    """What one lane of the batch did: each event's delivery, those moved to the DLQ, its forwarder."""

    lane: Lane
    results: Results
    events: Events
    moved: set[str]
    forwarder: Forwarder | None

    @property
    def answered(self) -> bool:
        return self.forwarder is not None and self.forwarder.stats.answered > 0


def run_lane(
    lane: Lane,
    records: list[dict[str, Any]],
    events: Events,
    remaining_ms: Callable[[], int],
    states: dict[str, CircuitState],
) -> LaneRun:
    """Deliver one lane's events, dead-letter what is done with, settle its claims and update its connection's
    circuit (`states`: each connection's as this invocation left it, read on its first lane)."""
    if lane.connection not in states:
        states[lane.connection] = recovery.read_circuit(lane)
    state = states[lane.connection]
    results, forwarder = deliver(lane, events, remaining_ms, state)
    batch = forwarder.last[0] if forwarder is not None else None  # the batch whose claims a dead letter replaces
    moved, outcomes = letters.dead_letter(lane, records, results, events, whole=False, batch=batch)
    if forwarder is not None:
        forwarder.settle(results, moved)
        if forwarder.stats.ledger_errors:
            metrics.add_metric("LedgerErrors", MetricUnit.Count, forwarder.stats.ledger_errors)
            logger.error("could not record deliveries in the idempotency table")
        state = recovery.update_circuit(lane, state, forwarder.stats)
    states[lane.connection] = recovery.after_dead_letters(lane, state, outcomes)
    recovery.report_circuit(lane, states[lane.connection], sum(d.outcome == Outcome.HELD for d in results.values()))
    open_seconds = states[lane.connection].open_seconds(lane.clock())
    report_connection(lane.vendor, lane.connection, results, moved, open_seconds)
    return LaneRun(lane, results, events, moved, forwarder)


def deliver(
    lane: Lane, events: Events, remaining_ms: Callable[[], int], state: CircuitState | None = None
) -> tuple[Results, Forwarder | None]:
    """A Delivery for every event of the lane, and its Forwarder (None: its connection is not enabled)."""
    try:
        forwarder = lane.forwarder()
    except VendorDisabled as exc:  # disabled or removed while its messages were queued: kept, with why, in its DLQ
        logger.error(str(exc))
        return {key: Delivery(False, Outcome.DISABLED, str(exc)) for key in events}, None
    except ConfigError as exc:  # its key is missing: its events wait (the secret is read again), the others go
        lane.function.refresh.due()
        reasons = [str(e) for e in exc.errors]
        logger.error(f"{lane.connection} configuration unusable", extra={"errors": reasons})
        metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
        why = f"{lane.connection} configuration unusable: {'; '.join(reasons)}"
        return {key: Delivery(False, Outcome.CONFIG, why) for key in events}, None
    results = {key: Delivery(False, Outcome.INVALID, e.error) for key, e in events.items() if e.error}
    readable = {key: e.event for key, e in events.items() if e.event is not None}
    bundles = {key: e.bundle for key, e in events.items() if e.bundle and e.event is not None}
    # the batch record is settled once the dead letters are moved (those are done with, not to retry)
    state = state or CircuitState()
    if state.is_open and not take_probe(lane, state):  # the connection keeps failing: wait for the probe
        results.update(forwarder.hold(readable))
        return results, forwarder
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
        lane.function.refresh.due()
        metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
        logger.error(f"{lane.connection} refused the relay's credentials", extra={"status": auth})
    return results, forwarder


def take_probe(lane: Lane, state: CircuitState) -> bool:
    try:
        return lane.circuit.take_probe(state)
    except Exception:  # noqa: BLE001 - another invocation probes when this one cannot tell
        metrics.add_metric("CircuitErrors", MetricUnit.Count, 1)
        return False

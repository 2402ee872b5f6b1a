"""Vendor side: map a batch of queued events, send it in as few vendor requests as allowed, and give
every event exactly one outcome (docs/architecture.md, "What happens when…").

- 2xx: delivered (recorded in the ledger: never sent again).
- 400 from a batched vendor (AppLovin, AdRoll drop the whole batch): the batch is bisected and the halves
  resent until the invalid events are isolated; every valid event is delivered.
- other 4xx (not 401/403/408/429) and vendor-rule violations: permanent, not retried.
- 401/403: credentials problem: kept for a later retry.
- 408, 429, 5xx, connection errors: retried here with jittered exponential backoff, honouring
  Retry-After, while the Lambda has time; then kept for SQS to retry.
- no answer within the request's deadline: kept for SQS to retry, not retried here — a vendor that let a
  request time out would hold a send thread for the whole deadline again, starving the batch's other
  requests.

Deadlines and retries of one request: relay.delivery.sending.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from threading import BoundedSemaphore
from typing import Any

import httpx

from relay.aws.ledger import Claim, DeliveryLedger
from relay.delivery.circuit import OPEN_AFTER
from relay.delivery.deadline import DeadlineExceeded, InvocationDeadline, send_within
from relay.delivery.outcomes import Delivery, Outcome
from relay.delivery.sending import (
    SEND_WORKERS,
    SPLIT_STATUSES,
    RetryPolicy,
    Stats,
    refusal,
    start_pool,
)
from relay.journey import MAX_RESPONSE_BYTES
from relay.journey.record import Call, early_body
from relay.models.config import RelayConfig
from relay.models.event import Event
from relay.queued.message import Queued, message_id_of
from relay.queued.routing import Router
from relay.vendors import Invalid, Mapped, MappingResult, Skipped, VendorRequest

# an event to send: its key, the event, and this vendor's payload for it
Claimable = tuple[str, "Queued | Event", Mapped]


class Forwarder:
    """Delivers a batch of one vendor's events: claims, requests, retries, bisection, the batch record."""

    def __init__(
        self,
        vendor: str,
        config: RelayConfig,
        client: httpx.Client,
        ledger: DeliveryLedger | None = None,
        max_workers: int = SEND_WORKERS,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen)
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        pool: ThreadPoolExecutor | None = None,
        journey: bool = True,  # its journeys are kept ([delivery] journey): their request text is made early
    ):
        self.vendor = vendor
        self.router = Router(config)
        self.adapter = self.router.adapters[vendor]
        self.client = client
        self.ledger = ledger
        self.max_workers = max_workers
        self.policy, self.journey = policy, journey
        self.sleep, self.clock, self.wall_clock, self.rng = sleep, clock, wall_clock, rng
        self.stats = Stats()
        self._pool: ThreadPoolExecutor | None = pool  # the function's, shared by its connections' forwarders
        self._own_pool = pool is None
        self._unsettled: tuple[str, dict[str, str]] = ("", {})  # the last deliver's batch and claimed events
        self.last: tuple[str, dict[str, str]] = ("", {})  # the same, kept after settling (the journey's)
        self.failures_left = OPEN_AFTER  # failed requests this invocation may make before it stops sending
        self.probing = False  # the circuit is open and this invocation sends its one probe request
        self._gate = BoundedSemaphore(max_workers)  # requests in flight before the vendor's first answer

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Created once per container (`start_pool`), unless the function shares its own."""
        if self._pool is None:
            self._pool = start_pool(self.max_workers, f"{self.vendor}-send")
        return self._pool

    def close(self) -> None:
        """Stop the send pool's threads (when a rotated secret replaces this forwarder)."""
        if self._pool is not None and self._own_pool:
            self._pool.shutdown(wait=False)
            self._pool = None

    # -- the batch ---------------------------------------------------------------------------------

    def deliver(
        self,
        events: Mapping[str, Queued | Event],
        remaining_ms: Callable[[], int],
        bundles: Mapping[str, str] | None = None,
        settle: bool = True,
        failures_left: int = OPEN_AFTER,
        probe: bool = False,
    ) -> dict[str, Delivery]:
        """A Delivery for every key of `events`.

        `events` is keyed by SQS message id (or `QueuedEvent.key` for the events of a bundle): this vendor's
        part of a queued message (mapped at the ingest), or a canonical event (mapped here). `bundles` maps
        the key of each event that came in a bundle to the bundle's id: those share one claim per bundle
        (`DeliveryLedger.claim_bundle`), the others have one each. `settle=False` leaves the batch record to
        `settle()` (the handler first moves what it dead-letters). `failures_left`: the failed requests after
        which it stops sending (the circuit breaker's); `probe`: the circuit is open and this call sends one
        request first, the rest only if the vendor answers it."""
        self.stats = Stats()
        self.failures_left, self.probing = failures_left, probe
        # a vendor that failed lately (the circuit counts failures) gets no more requests at once than it may
        # still fail before the circuit opens, until it answers one; a healthy one gets the whole pool
        self._gate = BoundedSemaphore(self.max_workers if failures_left >= OPEN_AFTER else max(1, failures_left))
        results, mapped = self._map(events)
        copies = self._copies(events, mapped, results)
        batch = DeliveryLedger.new_batch()
        if self.ledger is not None:
            self.ledger.trails.clear()
        groups, claimed = self._claim(mapped, bundles or {}, remaining_ms, batch, results)
        results.update(self._send_groups(groups, remaining_ms))
        # a second copy of an event shares the first one's delivery; when the first was not sent (moved to the
        # DLQ, say) the copy may be its dead letter redriven: it waits and claims for itself
        for copy, first in copies.items():
            if results[first].outcome is Outcome.FORWARDED:
                results[copy] = Delivery(
                    True, Outcome.DUPLICATE, f"delivered to {self.vendor} by another copy in this batch"
                )
        for items in groups.values():  # match quality: the identifiers of what the vendor took
            for key, payload in items:
                if results[key].outcome == Outcome.FORWARDED:
                    self.stats.identifiers.update(self.adapter.identifiers(payload))
        self._unsettled = self.last = (batch, claimed)
        if settle:
            self.settle(results)
        return results

    def hold(self, events: Mapping[str, Queued | Event]) -> dict[str, Delivery]:
        """A Delivery for every key of `events` without sending (the circuit is open): what the vendor would
        get is `held`, what it would not (skipped, invalid) gets its outcome."""
        self.stats = Stats()
        self._unsettled = self.last = ("", {})
        results, mapped = self._map(events)
        for key, _, _ in mapped:
            results[key] = self.held()
        return results

    def held(self) -> Delivery:
        return Delivery(False, Outcome.HELD, f"not sent: the circuit to {self.vendor} is open after repeated failures")

    @property
    def tripped(self) -> bool:
        """Whether this invocation has seen enough failed requests to stop sending."""
        return self.stats.streak >= self.failures_left

    def _map(self, events: Mapping[str, Queued | Event]) -> tuple[dict[str, Delivery], list[Claimable]]:
        """The events to send, and a Delivery for those that will not be sent (skipped, invalid, repeated)."""
        results: dict[str, Delivery] = {}
        mapped: list[Claimable] = []
        seen: set[str] = set()
        for key, event in events.items():
            outcome = self.outcome(event)
            if isinstance(outcome, Skipped):
                results[key] = Delivery(True, Outcome.SKIPPED, outcome.reason)
            elif isinstance(outcome, Invalid):
                results[key] = Delivery(False, Outcome.INVALID, outcome.reason)
            elif event.event_id in seen:
                results[key] = Delivery(False, Outcome.IN_FLIGHT, "the same event_id is earlier in this batch")
            else:
                seen.add(event.event_id)
                mapped.append((key, event, outcome))
        return results, mapped

    @staticmethod
    def _copies(
        events: Mapping[str, Queued | Event], mapped: list[Claimable], results: Mapping[str, Delivery]
    ) -> dict[str, str]:
        """The keys of events that are a second copy of an event earlier in the batch, and that event's key."""
        first = {event.event_id: key for key, event, _ in mapped}
        return {
            key: first[events[key].event_id]
            for key, delivery in results.items()
            if delivery.outcome == Outcome.IN_FLIGHT and events[key].event_id in first
        }

    def _claim(
        self,
        mapped: list[Claimable],
        bundles: Mapping[str, str],
        remaining_ms: Callable[[], int],
        batch: str,
        results: dict[str, Delivery],
    ) -> tuple[dict[str, list[tuple[str, dict[str, Any]]]], dict[str, str]]:
        """Claim each event (or bundle) in the ledger; returns the payloads to send by target, and the claimed
        events (key -> event_id). Events another invocation has, or had, get their Delivery in `results`."""
        # a claim per bundle (its id) or per event of its own (its key) -> indexes in `mapped`
        units: dict[tuple[str, str], list[int]] = {}
        for i, (key, _, _) in enumerate(mapped):
            units.setdefault(("bundle", bundles[key]) if key in bundles else ("event", key), []).append(i)

        def claim(unit: tuple[tuple[str, str], list[int]]) -> tuple[Claim, frozenset[str]]:
            (kind, name), indexes = unit
            ids = [mapped[i][1].event_id for i in indexes]
            if self.ledger is None:
                return Claim.CLAIMED, frozenset(ids)
            if kind == "event":
                return self.ledger.claim(ids[0], remaining_ms(), batch, message_id=name), frozenset(ids)
            messages: dict[str, list[str]] = {}
            for i in indexes:
                messages.setdefault(message_id_of(mapped[i][0]), []).append(mapped[i][1].event_id)
            return self.ledger.claim_bundle(name, messages, remaining_ms(), batch)

        # one ledger round trip per event or bundle: run them side by side (boto3 clients are thread-safe)
        pairs = list(units.items())
        claims = list(self.pool.map(claim, pairs)) if self.ledger and len(pairs) > 1 else [claim(u) for u in pairs]
        groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        claimed: dict[str, str] = {}
        for (_, indexes), (verdict, pending) in zip(pairs, claims, strict=True):
            for i in indexes:
                key, event, outcome = mapped[i]
                refused = self._not_ours(verdict, event.event_id in pending)
                if refused is not None:
                    results[key] = refused
                else:
                    claimed[key] = event.event_id
                    groups.setdefault(outcome.target, []).append((key, outcome.payload))
        return groups, claimed

    def _not_ours(self, verdict: Claim, pending: bool) -> Delivery | None:
        """Why a claimed-for event is not sent by this invocation (None: it is ours to send)."""
        if verdict is Claim.DUPLICATE or (verdict is Claim.CLAIMED and not pending):
            done = "delivered to" if verdict is Claim.DUPLICATE else "delivered to, or dead-lettered for,"
            return Delivery(True, Outcome.DUPLICATE, f"already {done} {self.vendor}")
        if verdict is Claim.DEAD_LETTERED:
            return Delivery(True, Outcome.DUPLICATE, f"already moved to the {self.vendor} dead-letter queue")
        if verdict is Claim.IN_FLIGHT:
            return Delivery(False, Outcome.IN_FLIGHT, "another invocation is sending this event_id")
        return None

    def _send_groups(
        self, groups: Mapping[str, list[tuple[str, dict[str, Any]]]], remaining_ms: Callable[[], int]
    ) -> dict[str, Delivery]:
        """Send the payloads of each target in requests of at most the vendor's batch size, side by side."""
        chunks = [
            (target, items[i : i + self.adapter.max_batch])
            for target, items in groups.items()
            for i in range(0, len(items), self.adapter.max_batch)
        ]
        results: dict[str, Delivery] = {}
        if self.probing and chunks:  # one request first; the rest at full speed once the vendor answered it
            target, items = chunks.pop(0)
            results.update(self._deliver_chunk(target, items, remaining_ms))
            self.probing = False
            if self.tripped:
                return results | {key: self.held() for _, items in chunks for key, _ in items}
            self.failures_left = OPEN_AFTER
        if len(chunks) > 1:
            for part in self.pool.map(lambda c: self._deliver_chunk(c[0], c[1], remaining_ms), chunks):
                results.update(part)
        else:
            for target, items in chunks:
                results.update(self._deliver_chunk(target, items, remaining_ms))
        return results

    def settle(self, results: Mapping[str, Delivery], moved: Iterable[str] = ()) -> None:
        """Record the outcomes of the last `deliver`: one batch record, listing the claimed events that were
        not delivered and not moved to the DLQ (`moved`: their keys), so that a retry sends them and only
        them. A ledger failure must not fail the batch: the vendor already has the events, and unsettled
        claims run out with their lease."""
        batch, claimed = self._unsettled
        self._unsettled = ("", {})
        if self.ledger is None or not claimed:
            return
        moved = set(moved)
        try:
            self.ledger.settle(
                batch,
                {event_id: results[key].status for key, event_id in claimed.items() if results[key].ok},
                [event_id for key, event_id in claimed.items() if not results[key].ok and key not in moved],
                [event_id for key, event_id in claimed.items() if key in moved],
            )
        except Exception:  # noqa: BLE001
            self.stats.add(ledger_errors=1)

    def outcome(self, item: Queued | Event) -> MappingResult:
        """This vendor's request payload for an item: as the ingest mapped it, or mapped here (an older
        relay's canonical event)."""
        return item.mapped if isinstance(item, Queued) else self.router.route_one(item, self.vendor)

    def _deliver_chunk(
        self, target: str, items: list[tuple[str, dict[str, Any]]], remaining_ms: Callable[[], int]
    ) -> dict[str, Delivery]:
        request = self.adapter.build_request(target, [payload for _, payload in items])
        delivery = self._send_with_retries(request, tuple(key for key, _ in items), remaining_ms)
        if delivery.outcome == Outcome.REJECTED and delivery.status in SPLIT_STATUSES and len(items) > 1:
            # the vendor dropped the whole batch for some invalid event(s), or for its size: isolate them
            middle = len(items) // 2
            self.stats.add(bisect_requests=2)
            return {
                **self._deliver_chunk(target, items[:middle], remaining_ms),
                **self._deliver_chunk(target, items[middle:], remaining_ms),
            }
        return {key: delivery for key, _ in items}

    # -- one request -------------------------------------------------------------------------------

    def _send_with_retries(
        self, request: VendorRequest, keys: tuple[str, ...], remaining_ms: Callable[[], int]
    ) -> Delivery:
        deadline = InvocationDeadline(remaining_ms, self.policy.reserve_ms)
        request_ms = self.policy.request_seconds * 1000
        attempt = 0
        delivery: Delivery | None = None
        while True:
            if self.tripped:  # the vendor keeps failing: the circuit opens, the rest waits for its probe
                return delivery if delivery is not None else self.held()
            if not deadline.allows(request_ms):
                self.stats.add(deferred_requests=1)
                if delivery is not None:
                    return delivery  # the last answer explains more than "no time left"
                return Delivery(
                    False,
                    Outcome.DEFERRED,
                    f"not sent to {self.vendor}: {max(remaining_ms(), 0)} ms of the invocation were left, "
                    f"a request may take {self.policy.request_seconds:g} s",
                )
            sent = self._send(request, keys, attempt + 1)
            if sent is None:  # the circuit tripped while this request waited for its turn
                continue
            delivery = sent
            if delivery.outcome != Outcome.TRANSIENT or delivery.timed_out:
                return delivery
            attempt += 1
            if attempt >= self.policy.max_attempts or self.probing:  # a probe is one request
                return delivery
            backoff = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempt - 1)) * (0.5 + self.rng() / 2)
            delay = max(backoff, delivery.retry_after or 0.0)
            if not deadline.allows(delay * 1000 + request_ms):
                return delivery  # no time for another try: SQS retries after the visibility timeout
            self.stats.add(retries=1)
            self.sleep(delay)

    def _send(self, request: VendorRequest, keys: tuple[str, ...], attempt: int) -> Delivery | None:
        """One request, counted for the circuit breaker. Until the vendor has answered one request of this
        invocation, at most the gate's width are in flight (after recent failures: the failures the circuit
        still allows, so that a vendor that is down costs that many requests, not a fan-out); None: it
        tripped meanwhile, not sent."""
        if self.stats.answered:
            delivery = self._request(request, keys, attempt)
        else:
            with self._gate:
                if self.tripped:
                    return None
                delivery = self._request(request, keys, attempt)
        self.stats.note(delivery)
        return delivery

    def _request(self, request: VendorRequest, keys: tuple[str, ...], attempt: int) -> Delivery:
        started, at, policy = self.clock(), self.wall_clock(), self.policy
        early: list[str] = []  # the journey's text of the body (Call.body), made while the vendor answers, if kept
        waiting = (lambda: early.append(early_body(request))) if self.journey else None
        try:
            response = send_within(
                self.client,
                request.method,
                request.url,
                request.headers,
                request.content,
                policy.request_seconds,
                policy.connect_seconds,
                while_waiting=waiting,
            )
        except (httpx.HTTPError, DeadlineExceeded) as exc:
            what = str(exc) if isinstance(exc, DeadlineExceeded) else type(exc).__name__
            self.stats.record(Call(at, attempt, None, (self.clock() - started) * 1000, what, request, keys, *early))
            # the vendor has the request and is slow to answer (not a refused or slow connection: that is retried)
            timed_out = isinstance(exc, DeadlineExceeded | httpx.ReadTimeout | httpx.WriteTimeout)
            return Delivery(False, Outcome.TRANSIENT, f"{what} calling {self.vendor}", timed_out=timed_out)
        status = response.status_code
        answer = response.text[:MAX_RESPONSE_BYTES]
        self.stats.record(Call(at, attempt, status, (self.clock() - started) * 1000, answer, request, keys, *early))
        if response.is_success:
            return Delivery(True, Outcome.FORWARDED, status=status)
        return refusal(self.vendor, status, answer, response.headers.get("retry-after"), self.wall_clock())

"""A circuit breaker per vendor, shared by every invocation of its function through one DynamoDB item.

- **closed**: batches are sent as usual. Each invocation adds its failed vendor requests (401/403, 408,
  429, 5xx, timeouts, connection errors) to the item's count of consecutive failures, and any request the
  vendor answered (2xx, or a 4xx about the events) sets it back to 0. An invocation stops sending once the
  count reaches `OPEN_AFTER` (the rest of its batch is `held`), and the circuit opens.
- **open**: invocations send nothing: every event is `held`, its message returned for a later receive on
  the retry schedule (relay.delivery.retry). Once per `probe_interval_seconds`, one invocation wins the
  probe (a conditional update of `probe_at`) and sends one request; when the vendor answers it, the
  circuit closes and that invocation delivers the rest of its batch at full speed.

Closing the circuit, or dead-lettering an event as `retries_exhausted`, marks the DLQ for an automatic
redrive (relay.delivery.redrive). The item has a time to live, so a circuit left open by a function that
is no longer invoked ends by itself. When DynamoDB cannot be read, the circuit counts as closed: an outage
of the table costs vendor requests, never events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.aws.clients import LazyClient
from relay.aws.ledger import KEY_PREFIX

OPEN_AFTER = 10  # consecutive failed vendor requests that open the circuit
ITEM_TTL_SECONDS = 14 * 86_400


@dataclass(frozen=True, slots=True)
class CircuitState:
    is_open: bool = False
    failures: int = 0
    opened_at: float = 0.0
    probe_at: float = 0.0
    redrive: bool = False  # the DLQ may hold transient letters to move back once the vendor is healthy
    marks: int = 0  # how often the DLQ was marked: a pass clears the mark only if none came after it read this

    def open_seconds(self, now: float) -> float:
        return max(0.0, now - self.opened_at) if self.is_open else 0.0

    def failures_left(self) -> int:
        """Failed requests this invocation may make before it stops sending (at least 1)."""
        return max(1, OPEN_AFTER - self.failures)


class Circuit(LazyClient):
    service = "dynamodb"

    def __init__(
        self,
        vendor: str,
        table_name: str,
        probe_interval_seconds: float,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(client)
        self.vendor, self.table_name = vendor, table_name
        self.probe_interval_seconds = probe_interval_seconds
        self.clock = clock

    @property
    def key(self) -> dict[str, dict[str, str]]:
        return {"id": {"S": f"{KEY_PREFIX}.{self.vendor}.circuit"}}

    def read(self) -> CircuitState:
        item = self.client.get_item(TableName=self.table_name, Key=self.key).get("Item") or {}
        if float(item.get("expiration", {}).get("N", "0")) < self.clock():
            return CircuitState()  # none yet, or past its time to live (TTL deletes lag)
        return CircuitState(
            is_open=item.get("is_open", {}).get("BOOL", False),
            failures=int(item.get("failures", {}).get("N", "0")),
            opened_at=float(item.get("opened_at", {}).get("N", "0")),
            probe_at=float(item.get("probe_at", {}).get("N", "0")),
            redrive=item.get("redrive", {}).get("BOOL", False),
            marks=int(item.get("marks", {}).get("N", "0")),
        )

    def _update(self, expression: str, values: dict[str, Any], condition: str | None = None) -> dict[str, Any] | None:
        """UpdateItem (the time to live renewed: `expression` ends with its SET clause); None when `condition`
        did not hold."""
        values = {**values, ":exp": {"N": str(int(self.clock() + ITEM_TTL_SECONDS))}}
        kwargs: dict[str, Any] = {"ConditionExpression": condition} if condition else {}
        try:
            return self.client.update_item(
                TableName=self.table_name,
                Key=self.key,
                UpdateExpression=f"{expression}, expiration = :exp",
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                **kwargs,
            ).get("Attributes", {})
        except self.client.exceptions.ConditionalCheckFailedException:
            return None

    def take_probe(self, state: CircuitState) -> bool:
        """Whether this invocation sends the probe: the circuit is open, its probe is due, and no other
        invocation took it first."""
        now = self.clock()
        if not state.is_open or now < state.probe_at:
            return False
        won = self._update(
            "SET probe_at = :next",
            {":next": {"N": repr(now + self.probe_interval_seconds)}, ":old": {"N": repr(state.probe_at)}},
            "probe_at = :old",
        )
        return won is not None

    def failed(self, count: int) -> bool:
        """Add `count` failed requests; opens the circuit at OPEN_AFTER. Returns whether this call opened it."""
        values = {":n": {"N": str(count)}, ":vendor": {"S": self.vendor}}
        now = {":now": {"N": str(int(self.clock()))}}
        new = self._update(
            "ADD failures :n SET vendor = :vendor", {**values, **now}, "attribute_not_exists(id) OR expiration >= :now"
        )
        if new is None:  # an item past its time to live, not deleted yet: its counts are stale, start over
            new = self._update("SET failures = :n, is_open = :f, vendor = :vendor", {**values, ":f": {"BOOL": False}})
        if new is None or int(new.get("failures", {}).get("N", "0")) < OPEN_AFTER or new.get("is_open", {}).get("BOOL"):
            return False
        now = self.clock()
        opened = self._update(
            "SET is_open = :t, opened_at = :now, probe_at = :probe",
            {
                ":t": {"BOOL": True},
                ":f": {"BOOL": False},
                ":now": {"N": repr(now)},
                ":probe": {"N": repr(now + self.probe_interval_seconds)},
            },
            "attribute_not_exists(is_open) OR is_open = :f",
        )
        return opened is not None

    def answered(self, state: CircuitState, trailing: int = 0) -> bool:
        """The vendor answered a request: the circuit closed, its count of failures set to the `trailing`
        failed requests that followed the last answer (none: back to 0). Returns whether it was open (then
        the DLQ is marked for a redrive). No write when there is nothing to change."""
        if not state.is_open and state.failures == trailing:
            return False
        values = {":f": {"BOOL": False}, ":n": {"N": str(trailing)}}
        if state.is_open:  # closing marks the DLQ; otherwise the mark is left as it is (another may set it now)
            self._update(
                "ADD marks :one SET is_open = :f, failures = :n, redrive = :t",
                {**values, ":one": {"N": "1"}, ":t": {"BOOL": True}},
            )
        else:
            self._update("SET is_open = :f, failures = :n", values)
        return state.is_open

    def mark_redrive(self) -> None:
        """Mark the DLQ as holding transient letters to move back (counted: see `clear_redrive`)."""
        self._update("ADD marks :one SET redrive = :r", {":r": {"BOOL": True}, ":one": {"N": "1"}})

    def clear_redrive(self, state: CircuitState) -> bool:
        """After a pass that found nothing to move: clear the mark, unless it was marked again since `state` was
        read (a letter dead-lettered meanwhile would otherwise wait for a mark that never comes)."""
        cleared = self._update(
            "SET redrive = :r",
            {":r": {"BOOL": False}, ":marks": {"N": str(state.marks)}},
            "attribute_not_exists(marks) OR marks = :marks",
        )
        return cleared is not None

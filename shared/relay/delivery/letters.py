"""The dead-letter path of a vendor function's batch (relay.delivery.function): which events are done with
(permanent failures; failures past their retry window or on their last allowed receive), their letters, the
move to the DLQ (relay.delivery.deadletter) and its record in the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from relay.delivery import recovery
from relay.delivery.outcomes import Delivery, Outcome
from relay.observability import MetricUnit, logger, metrics
from relay.queued.message import QueuedEvent, bundle_body

if TYPE_CHECKING:  # types only: relay.delivery.deadletter is imported when a batch has something to dead-letter
    from relay.aws.ledger import DeliveryLedger
    from relay.delivery.deadletter import DeadLetter

Results = dict[str, Delivery]  # QueuedEvent.key -> its delivery
Events = dict[str, QueuedEvent]


class VendorFunction(recovery.VendorFunction, Protocol):
    """What the dead-letter path reads of a vendor function (relay.delivery.function.VendorFunction)."""

    @property
    def made_ledger(self) -> DeliveryLedger | None: ...


def dead_letter(
    function: VendorFunction,
    records: list[dict[str, Any]],
    results: Results,
    events: Events,
    whole: bool,
    batch: str | None = None,
) -> tuple[set[str], list[str]]:
    """Move permanent failures, and failures past their retry window or on their last allowed receive, to
    the DLQ with their reasons; returns the keys of the events moved and the letters' outcomes.

    One dead letter per event (an event of a bundle gets its own), unless `whole`: the failure is the
    function's (its vendor disabled, its configuration unusable) and no claim was taken, so each SQS message
    is moved as it is, a bundle whole. A redrive then brings back the very message the ledger knows, never a
    lone copy of an event of a bundle that a redelivery of the bundle might also send."""
    letters, keys_of = letters_for(function, records, results, events, whole)
    if not letters:
        return set(), []
    failed = function.dead_letters.send(letters)
    moved_letters = [letter for letter in letters if letter.key not in failed]
    for letter in moved_letters:
        logger.warning(
            "moved to the dead-letter queue",
            extra={
                "event_id": letter.event_id,
                "outcome": letter.outcome,
                "reason": letter.reason,
                "status": letter.status,
            },
        )
    moved = {key for letter in moved_letters for key in keys_of[letter.key]}
    metrics.add_metric("EventsDeadLettered", MetricUnit.Count, len(moved))
    remember_dead_letters(function, moved_letters, events, batch)
    return moved, [letter.outcome for letter in moved_letters]


def letters_for(
    function: VendorFunction, records: list[dict[str, Any]], results: Results, events: Events, whole: bool
) -> tuple[list[DeadLetter], dict[str, list[str]]]:
    """The dead letters to send, and for each letter's key the keys of the events it moves."""
    from relay.delivery.deadletter import DeadLetter, body_event_id

    by_id = {record["messageId"]: record for record in records}
    letters: list[DeadLetter] = []
    keys_of: dict[str, list[str]] = {}
    for key, queued in events.items():
        delivery = results[key]
        record = by_id[queued.message_id]
        if delivery.ok:
            continue
        given_up = None if delivery.permanent else recovery.gave_up(function, record, delivery)
        if not delivery.permanent and given_up is None:
            continue
        letter_key = queued.message_id if whole else key
        keys_of.setdefault(letter_key, []).append(key)
        if len(keys_of[letter_key]) > 1:
            continue  # the message's letter is made already
        one = not whole or queued.bundle is None
        event_id = (queued.event.event_id if queued.event else body_event_id(queued.body)) if one else None
        letters.append(
            DeadLetter(
                record,
                function.connection,  # relay_vendor: the connection (its vendor alone for the default one)
                event_id,
                delivery.outcome if delivery.permanent else Outcome.RETRIES_EXHAUSTED,
                delivery.reason if delivery.permanent else f"{given_up}: {delivery.reason}",
                delivery.status,
                delivery.response,
                key=letter_key,
                body=letter_body(queued) if not whole else record.get("body") or "",
            )
        )
    return letters, keys_of


def letter_body(queued: QueuedEvent) -> str:
    """A dead letter's body for one event: its own message, in a bundle of one when it came in a bundle, so that
    a redrive brings it back under the identity the vendor knows it by (docs/decisions/0008)."""
    if queued.bundle is None:
        return queued.body
    return bundle_body(queued.bundle, [queued.body])


def remember_dead_letters(
    function: VendorFunction, letters: list[DeadLetter], events: Events, batch: str | None
) -> None:
    """Record the moved events in the ledger (with the batches that tried them, their journey): a redelivered
    copy is then not moved twice."""
    ledger = function.made_ledger
    for letter in letters:
        if ledger is None or not letter.event_id:
            continue
        queued = events.get(letter.key)
        trail = ledger.trail(letter.event_id, queued.bundle if queued else None)
        try:
            ledger.dead_lettered(letter.event_id, letter.key, letter.outcome, trail, batch)
        except Exception:  # noqa: BLE001 - at worst a second DLQ copy, never a lost event
            metrics.add_metric("LedgerErrors", MetricUnit.Count, 1)
            logger.error("could not record a dead-lettered event", extra={"event_id": letter.event_id})

"""One event of a request read by the ingest (relay.ingest.request): checked, parsed, routed to the connections
its source may reach, and made into its queued message, or refused with the fields it broke."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from relay.aws.sns import Message
from relay.ingest import jsonbody
from relay.ingest.bundling import MAX_EVENT_MESSAGE_BYTES
from relay.models.config import RelayConfig
from relay.models.errors import FieldError
from relay.models.event import Event, EventParseError, event_id_of, parse_event
from relay.models.names import vendor_of
from relay.queued.message import queued_body
from relay.queued.routing import Router
from relay.vendors import Invalid

Read = tuple[dict[str, Any], Message | None, list[FieldError]]


@functools.lru_cache(maxsize=256)
def _vendors(connections: tuple[str, ...]) -> tuple[str, ...]:
    """The vendors of these connections, in order (the message's `destinations`: a request has a handful)."""
    return tuple(dict.fromkeys(vendor_of(c) for c in connections))


class EventReader:
    def __init__(self, config: RelayConfig, router: Router):
        self.config, self.router = config, router

    def read(
        self,
        index: int,
        raw_event: Any,
        now: datetime,
        suspect: jsonbody.Suspect,
        seen: dict[str, int],
        source: str,
        names: dict[str, str] | None = None,
    ) -> Read:
        """One event: its `accepted` entry, its queued message (None: no connection gets it) and the errors
        that refuse it (then the entry holds only its event_id). `names`: each valid event's name, by id (the
        journey's)."""
        refused = suspect.refusal(raw_event)
        if refused is not None:
            return {"event_id": event_id_of(raw_event)}, None, [refused]
        try:
            event = parse_event(raw_event, now=now, max_event_age_days=self.config.ingest.max_event_age_days)
        except EventParseError as exc:
            return {"event_id": event_id_of(raw_event)}, None, exc.errors
        errors: list[FieldError] = []
        if event.event_id in seen:
            reason = f"repeats the event_id of events[{seen[event.event_id]}] in this request"
            errors.append(FieldError("event_id", reason))
        else:
            seen[event.event_id] = index
            errors = self.router.unknown_connections(event, source)
        if errors:
            return {"event_id": event.event_id}, None, errors
        if names is not None:
            names[event.event_id] = event.name
        return self.routed(index, event, source)

    def routed(self, index: int, event: Event, source: str) -> Read:
        """A valid event's entry and message: the outcome at each connection `source` may reach."""
        outcomes = self.router.route(event, source)
        destinations, skipped, invalid = Router.sorted_outcomes(outcomes)
        entry: dict[str, Any] = {"index": index, "event_id": event.event_id, "destinations": destinations}
        if skipped:
            entry["skipped"] = skipped
        if invalid:
            entry["invalid"] = invalid
        errors = self.undeliverable(event, outcomes, destinations, entry)
        if errors or not destinations:
            return entry, None, errors
        connections = tuple(destinations)
        body = queued_body(event, outcomes, source)
        message = Message(str(index), body, _vendors(connections), connections=connections)
        if message.size > MAX_EVENT_MESSAGE_BYTES:
            reason = f"is {message.size} bytes once serialized; at most {MAX_EVENT_MESSAGE_BYTES}"
            return {"event_id": event.event_id}, None, [FieldError("(event)", reason)]
        return entry, message, []

    def undeliverable(
        self, event: Event, outcomes: dict[str, Any], destinations: list[str], entry: dict[str, Any]
    ) -> list[FieldError]:
        """Why an event that no vendor will receive is refused (a 202 would say it worked): a name no vendor
        maps, or a vendor that found it invalid. An event every vendor skips for consent or configuration,
        none finding it invalid, is accepted with its reasons. A known name close to an unknown one that
        still reaches a vendor (as a custom event) is a hint in the 202."""
        unknown = event.name not in self.router.known_names
        near = self.router.near_names(event.name) if unknown else []
        if destinations:
            if near:
                entry["hints"] = {
                    "name": f"'{event.name}' reaches {', '.join(destinations)} as a custom event: "
                    f"did you mean '{near[0]}'?"
                }
            return []
        errors = []
        if unknown:
            suggestion = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            errors.append(
                FieldError(
                    "name",
                    f"'{event.name}' is not an event name any destination takes (not in the event-name table or the "
                    f"[events] overrides, and no destination takes it as a custom event){suggestion}",
                )
            )
        for vendor, outcome in outcomes.items():
            if isinstance(outcome, Invalid):
                errors += [FieldError(e.field, f"{vendor}: {e.message}") for e in outcome.errors]
        return errors

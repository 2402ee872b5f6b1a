"""How the ingest groups a request's events into SQS messages (relay.queued.message, docs/decisions/0005 and
0008): events for the same connections together, up to a message's count and size, each under the bundle its claim
records."""

from __future__ import annotations

from collections.abc import Mapping

from relay.aws.sns import SNS_MAX_BYTES, Message
from relay.delivery.deadletter import DEAD_LETTER_ATTRIBUTE_BYTES
from relay.queued.message import bundle_body, bundle_id, bundle_size

# an event's own message: within SNS's limit with room for the attributes a dead letter adds, so that the
# relay can always move it to a DLQ
MAX_EVENT_MESSAGE_BYTES = SNS_MAX_BYTES - DEAD_LETTER_ATTRIBUTE_BYTES


def plan_bundles(singles: list[tuple[str, Message]], per_message: int) -> dict[str, str]:
    """The bundle each event is to be published in (events alone in their message have none)."""
    messages, members = bundles(singles, per_message)
    return {e: bundle_id(ids) for ids in members.values() if len(ids) > 1 for e in ids}


def bundles(
    singles: list[tuple[str, Message]], per_message: int, recorded: Mapping[str, str] | None = None
) -> tuple[list[Message], dict[str, list[str]]]:
    """Put events that go to the same connections together, up to `per_message` and MAX_EVENT_MESSAGE_BYTES per
    message (a bundle a vendor function moves whole to its DLQ keeps room for the dead letter's attributes)
    (relay.queued.message); returns the messages and the event_ids each carries. A message of one event is that
    event's own message.

    `recorded`: the bundle each event's claim records (`plan_bundles` when it was claimed first): events are
    then published in that bundle and no other, whatever the order or grouping of the request — the events of
    one bundle id, in one message or several, are one identity at the vendor (`DeliveryLedger.claim_bundle`);
    an event without one goes alone."""
    groups: dict[tuple[str, str | None], list[tuple[str, Message]]] = {}  # by connections (and bundle)
    for single in singles:
        bundle = recorded.get(single[0]) if recorded is not None else None
        if recorded is not None and bundle is None:
            groups[(single[0], None)] = [single]  # alone in its own message
            continue
        groups.setdefault((",".join(single[1].connections) or single[1].attribute, bundle), []).append(single)
    messages: list[Message] = []
    members: dict[str, list[str]] = {}

    def close(part: list[tuple[str, Message]], bundle: str | None) -> None:
        first = part[0][1]
        if len(part) == 1 and bundle is None:
            message = first
        else:
            bundle = bundle or bundle_id([event_id for event_id, _ in part])
            body = bundle_body(bundle, [m.body for _, m in part])
            message = Message(first.id, body, first.destinations, connections=first.connections)
        messages.append(message)
        members[message.id] = [event_id for event_id, _ in part]

    for (_, bundle), group in groups.items():
        if recorded is not None and bundle is None:
            close(group, None)
            continue
        part: list[tuple[str, Message]] = []
        for single in group:
            overhead = single[1].size - single[1].body_size
            sizes = [m.body_size for _, m in part] + [single[1].body_size]
            if part and (len(part) == per_message or bundle_size(sizes) + overhead > MAX_EVENT_MESSAGE_BYTES):
                close(part, bundle)
                part = []
            part.append(single)
        if part:
            close(part, bundle)
    return messages, members

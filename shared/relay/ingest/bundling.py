"""How the ingest groups a request's events into SQS messages (relay.queued.message, docs/decisions/0005 and
0008): events for the same connections together, up to a message's count and size, each under the bundle its claim
records."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from relay.aws.sns import SNS_MAX_BYTES, Message
from relay.delivery.deadletter import DEAD_LETTER_ATTRIBUTE_BYTES
from relay.queued.message import bundle_body, bundle_id, bundle_size

# an event's own message: within SNS's limit with room for the attributes a dead letter adds, so that the
# relay can always move it to a DLQ
MAX_EVENT_MESSAGE_BYTES = SNS_MAX_BYTES - DEAD_LETTER_ATTRIBUTE_BYTES


def plan_bundles(singles: list[tuple[str, Message]], per_message: int) -> dict[str, str]:
    """The bundle each event is to be published in (events alone in their message have none)."""
    out: dict[str, str] = {}
    for part, _ in _parts(singles, per_message, None):
        if len(part) > 1:
            ids = [event_id for event_id, _ in part]
            out.update(dict.fromkeys(ids, bundle_id(ids)))
    return out


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
    messages: list[Message] = []
    members: dict[str, list[str]] = {}
    for part, bundle in _parts(singles, per_message, recorded):
        first = part[0][1]
        if len(part) == 1 and bundle is None:
            message = first
        else:
            bundle = bundle or bundle_id([event_id for event_id, _ in part])
            body = bundle_body(bundle, [m.body for _, m in part])
            message = Message(first.id, body, first.destinations, connections=first.connections)
        messages.append(message)
        members[message.id] = [event_id for event_id, _ in part]
    return messages, members


def _parts(
    singles: list[tuple[str, Message]], per_message: int, recorded: Mapping[str, str] | None
) -> Iterator[tuple[list[tuple[str, Message]], str | None]]:
    """The events of each message `bundles` makes, and the bundle its claims record (None: not recorded yet,
    or alone in its own message)."""
    groups: dict[tuple[str, str | None], list[tuple[str, Message]]] = {}  # by connections (and bundle)
    for single in singles:
        bundle = recorded.get(single[0]) if recorded is not None else None
        if recorded is not None and bundle is None:
            groups[(single[0], None)] = [single]  # alone in its own message
            continue
        groups.setdefault((",".join(single[1].connections) or single[1].attribute, bundle), []).append(single)
    for (_, bundle), group in groups.items():
        if recorded is not None and bundle is None:
            yield group, None
            continue
        part: list[tuple[str, Message]] = []
        sizes: list[int] = []
        for single in group:
            overhead = single[1].size - single[1].body_size
            sizes.append(single[1].body_size)
            if part and (len(part) == per_message or bundle_size(sizes) + overhead > MAX_EVENT_MESSAGE_BYTES):
                yield part, bundle
                part, sizes = [], [single[1].body_size]
            part.append(single)
        if part:
            yield part, bundle

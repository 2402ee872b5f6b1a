"""The ingest's archive messages (relay.archive): the request's published events, as the client sent them, with
the connections each was queued for and its bundle. They ride in the ingest's PublishBatch calls with the
attribute `archive` only, so the vendor queues' filter policies (on `destinations`) never take them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core

from relay.archive import ARCHIVE_ATTRIBUTE, FORMAT
from relay.aws.sns import SNS_MAX_BYTES, Message

# a message's envelope ({"archive":1,"source":...,"accepted_at":...,"events":[]}) and attribute, with room
ENVELOPE_BYTES = 512


@dataclass(frozen=True, slots=True)
class Accepted:
    """One published event for the archive."""

    event: Mapping[str, Any]  # the event's JSON object as the client sent it
    connections: Sequence[str]  # the connections it was queued for
    bundle: str | None = None  # the bundle it was published in (its identity at each vendor)


def archive_messages(
    source: str, accepted_at: float, events: Sequence[Accepted]
) -> tuple[list[tuple[Message, int]], int]:
    """The archive messages for a request's published `events` (as many as SNS's 256 KiB needs), each with the
    count of events it carries, and how many events are too large to archive (one event over the limit alone:
    counted, never a failure of the request)."""
    quoted, at = pydantic_core.to_json(source).decode(), pydantic_core.to_json(round(accepted_at, 3)).decode()
    head = f'{{"archive":{FORMAT},"source":{quoted},"accepted_at":{at},"events":['
    messages: list[tuple[Message, int]] = []
    part: list[str] = []
    size, too_large = len(head), 0
    limit = SNS_MAX_BYTES - ENVELOPE_BYTES

    def close() -> None:
        if part:
            body = head + ",".join(part) + "]}"
            message = Message(f"archive{len(messages)}", body, [source], attribute_name=ARCHIVE_ATTRIBUTE)
            messages.append((message, len(part)))

    for accepted in events:
        one: dict[str, Any] = {"event": accepted.event, "connections": list(accepted.connections)}
        if accepted.bundle:
            one["bundle"] = accepted.bundle
        raw = pydantic_core.to_json(one)
        text, length = raw.decode("utf-8"), len(raw) + 1
        if len(head) + length > limit:
            too_large += 1
            continue
        if size + length > limit:
            close()
            part, size = [], len(head)
        part.append(text)
        size += length
    close()
    return messages, too_large

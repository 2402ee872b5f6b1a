"""SNS: the ingest publishes queued messages with PublishBatch."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from relay.aws.clients import TRUSTED_CALLS, LazyClient

# SNS PublishBatch: at most 10 entries and 256 KiB in total per call.
SNS_MAX_BATCH = 10
SNS_MAX_BYTES = 262_144


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    body: str
    destinations: Sequence[str]  # the vendors whose queues take it (the subscriptions' filter policies)
    attribute: str = field(init=False)  # the `destinations` attribute value, as sent
    size: int = field(init=False)  # bytes SNS counts against the 256 KiB limit: body + attribute name, type, value
    body_size: int = field(init=False)  # bytes of the body alone
    connections: tuple[str, ...] = ()  # the connections it carries payloads for (what the ingest bundles by)
    # the attribute's name: `destinations`, or `archive` for the archive's messages (relay.archive.outgoing)
    attribute_name: str = "destinations"

    def __post_init__(self) -> None:
        attribute = _attribute(tuple(self.destinations))
        object.__setattr__(self, "attribute", attribute)
        body = len(self.body) if self.body.isascii() else len(self.body.encode("utf-8"))
        object.__setattr__(self, "body_size", body)
        overhead = len(self.attribute_name) + len("String.Array") + len(attribute)
        object.__setattr__(self, "size", body + overhead)


@functools.lru_cache(maxsize=64)
def _attribute(destinations: tuple[str, ...]) -> str:
    """The `destinations` attribute as sent (a handful of vendor sets: made once each)."""
    return json.dumps(list(destinations), separators=(",", ":"))


class SnsPublisher(LazyClient):
    """Publishes queued messages (relay.queued.message) with a `destinations` attribute (the filter policies)."""

    service = "sns"
    # The entries are built here, from validated events: botocore's client-side parameter validation
    # is a large share of the ingest's CPU per event. SNS still validates.
    client_options: ClassVar[dict[str, Any]] = {"config": TRUSTED_CALLS}

    def __init__(self, topic_arn: str, client: Any = None):
        super().__init__(client)
        self.topic_arn = topic_arn

    @staticmethod
    def chunks(messages: Sequence[Message]) -> list[list[Message]]:
        out: list[list[Message]] = []
        current: list[Message] = []
        size = 0
        for message in messages:
            if current and (len(current) == SNS_MAX_BATCH or size + message.size > SNS_MAX_BYTES):
                out.append(current)
                current, size = [], 0
            current.append(message)
            size += message.size
        if current:
            out.append(current)
        return out

    def publish(self, messages: Sequence[Message]) -> list[str]:
        """Publish with PublishBatch; returns the ids that SNS did not take (a call that failed: all of its
        messages; the other calls' messages were published)."""
        failed: list[str] = []
        for chunk in self.chunks(messages):
            try:
                response = self._publish_batch(chunk)
            except Exception as exc:  # noqa: BLE001 - throttled, timed out, refused: the caller answers 503
                from relay.observability import logger

                code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__
                logger.warning("PublishBatch failed", extra={"error": code, "messages": len(chunk)})
                failed += [m.id for m in chunk]
                continue
            failed += [f["Id"] for f in response.get("Failed", [])]
        return failed

    def _publish_batch(self, chunk: Sequence[Message]) -> dict[str, Any]:
        return self.client.publish_batch(
            TopicArn=self.topic_arn,
            PublishBatchRequestEntries=[
                {
                    "Id": m.id,
                    "Message": m.body,
                    "MessageAttributes": {m.attribute_name: {"DataType": "String.Array", "StringValue": m.attribute}},
                }
                for m in chunk
            ],
        )

"""The ingest's part of the archive (relay.archive): each request's published events go to SNS once more, in an
archive message, from a worker thread while the ingest settles its claims, so the answer waits no longer than
it did. An archive message SNS does not take is counted (`ArchiveFailures`, template.yaml's ArchiveFailureAlarm)
and logged by event count, and never changes the answer: the events are queued for their vendors already."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

from relay.archive.outgoing import Accepted, archive_messages
from relay.aws.clients import AWS_CALL_MAX_MS
from relay.aws.sns import SnsPublisher
from relay.observability import MetricUnit, logger, metrics

ARCHIVE_FAILURES = "ArchiveFailures"  # events the archive did not get (template.yaml: ArchiveFailureAlarm)


@dataclass
class Archiving:
    """One request's archive messages on their way: the publish, and the events each message carries."""

    future: Future[list[str]]
    counts: dict[str, int]


class Archiver:
    """`inline`: publish in the calling thread (a test that orders every AWS call of an invocation)."""

    def __init__(self, publisher: SnsPublisher, inline: bool = False):
        self.publisher, self.inline = publisher, inline

    @cached_property
    def pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive")

    def start(self, source: str, accepted_at: float, events: Sequence[Accepted]) -> Archiving | None:
        """Publish the archive messages of `events` (published to the vendors' queues) in the background."""
        if not events:
            return None
        messages, too_large = archive_messages(source, accepted_at, events)
        if too_large:
            _failed(too_large, "an event is too large for an archive message")
        if not messages:
            return None
        counts = {m.id: count for m, count in messages}
        batch = [m for m, _ in messages]
        if self.inline:
            future: Future[list[str]] = Future()
            future.set_result(self.publisher.publish(batch))
            return Archiving(future, counts)
        return Archiving(self.pool.submit(self.publisher.publish, batch), counts)

    def finish(self, archiving: Archiving | None, remaining_ms: Callable[[], int]) -> None:
        """Wait for the archive messages, no longer than the invocation allows; count what SNS did not take."""
        if archiving is None:
            return
        wait = max(remaining_ms() - AWS_CALL_MAX_MS // 4, 0) / 1000
        try:
            failed = archiving.future.result(timeout=wait)
        except Exception:  # noqa: BLE001 - timed out or failed: the events are queued for their vendors all the same
            failed = list(archiving.counts)
        if failed:
            _failed(sum(archiving.counts[m] for m in failed), "SNS did not take an archive message")


def _failed(events: int, why: str) -> None:
    metrics.add_metric(ARCHIVE_FAILURES, MetricUnit.Count, events)
    logger.error("events not archived", extra={"events": events, "reason": why})

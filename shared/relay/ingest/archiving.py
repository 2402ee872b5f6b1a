"""The ingest's part of the archive (relay.archive): each request's published events go to SNS once more, in an
archive message, from a worker thread while the ingest settles its claims, so the answer waits no longer than
it did. An archive message SNS does not take is counted (`ArchiveFailures`, template.yaml's ArchiveFailureAlarm)
and logged by event count, and never changes the answer: the events are queued for their vendors already."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from relay.archive.outgoing import Accepted, archive_messages
from relay.aws.clients import AWS_CALL_MAX_MS
from relay.aws.sns import Message, SnsPublisher
from relay.observability import MetricUnit, logger, metrics

ARCHIVE_FAILURES = "ArchiveFailures"  # events the archive did not get (template.yaml: ArchiveFailureAlarm)


@dataclass
class Archiving:
    """One request's archive messages on their way: the publish, and the events each message carries."""

    future: Future[list[str]]
    counts: dict[str, int]


@dataclass
class Queued:
    """What one request queued, as the ingest knows it once it has published (relay.ingest.request)."""

    raw_events: list[Any]  # the request's events as the client sent them
    singles: list[tuple[str, Message]]  # each valid event's own message: its id is the event's index
    fresh: list[tuple[str, Message]]  # claimed now, and published (unless in `failed`)
    queued_before: Mapping[str, frozenset[str]]  # resent: the connections an earlier request queued it for
    requeued: Mapping[str, list[str]]  # resent: the connections this request queued it for as well
    failed: set[str]  # not published
    recorded: Mapping[str, str]  # each event's bundle, as its claim records it

    def events(self) -> list[Accepted]:
        """The events to archive: those published now, and those resent whose claim was read (an earlier request
        may have been killed before archiving them: the archive may hold an event twice, a replay sends it once),
        each with the connections it is queued for and the bundle its claim records (its identity at every
        vendor)."""
        index = {e: int(m.id) for e, m in self.singles}
        queued = {e: set(m.connections) for e, m in self.fresh}
        for event_id, before in self.queued_before.items():
            queued[event_id] = set(before) | set(self.requeued.get(event_id, ()))
        return [
            Accepted(self.raw_events[index[e]], sorted(c), self.recorded.get(e))
            for e, c in queued.items()
            if e not in self.failed
        ]


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

"""The archive of every accepted event (docs/archive.md, docs/decisions/0010).

The ingest adds one **archive message** per request to the PublishBatch calls it makes anyway
(relay.archive.outgoing); SNS delivers it to Amazon Data Firehose, whose transformation (the ArchiveFunction,
relay.archive.lines) seals each event's personal fields under a KMS data key and writes one JSON line per event,
gzip-compressed, to S3 under ``events/source=<source>/dt=<YYYY-MM-DD>/``. `relay replay` and `relay forget` read
the lines back (relay.archive.reading).
"""

from __future__ import annotations

ARCHIVE_ATTRIBUTE = "archive"  # the SNS message attribute the archive's subscription filters on
FORMAT = 1  # the "v" of every line
PREFIX = "events/"  # the objects: events/source=<source>/dt=<YYYY-MM-DD>/<firehose's name>.gz
# the canonical event's personal fields the archive never holds in clear text: sealed (AES-GCM under a KMS
# data key), and the email and phone also kept as the SHA-256 digests the relay sends (what `relay forget` finds)
SEALED_FIELDS = ("email", "phone", "ip", "first_name", "last_name")


def partition_prefix(source: str, day: str) -> str:
    """The prefix of one source's objects for one UTC day (``2026-12-07``)."""
    return f"{PREFIX}source={source}/dt={day}/"

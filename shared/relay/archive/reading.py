"""The archive's lines read back (relay.archive.lines wrote them): `relay replay` and `relay forget`."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic_core

from relay.archive import FORMAT
from relay.archive.sealing import Opener


class ArchiveLineError(ValueError):
    """A line that is not an archived event; names the field."""


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    source: str  # from the object's partition (source=<name>)
    event_id: str
    accepted_at: datetime
    connections: tuple[str, ...]  # what the ingest queued it for
    bundle: str | None
    line: dict[str, Any]

    @property
    def timestamp(self) -> datetime:
        """When it happened: its own timestamp, else when the relay accepted it."""
        value = self.line.get("timestamp")
        return datetime.fromisoformat(value) if isinstance(value, str) else self.accepted_at

    def event(self, opener: Opener | None) -> dict[str, Any]:
        """The canonical event as the client sent it: its personal fields opened (`opener`: none when None), and
        its timestamp the relay's acceptance when it had none (a vendor then gets the time it happened)."""
        event = pydantic_core.from_json(self.line["event"])
        sealed = self.line.get("sealed")
        if sealed is not None and opener is not None:
            event["user"] = {**(event.get("user") or {}), **opener.unseal(sealed, self.event_id)}
        if event.get("timestamp") is None:
            event["timestamp"] = self.timestamp.isoformat()
        return event


def read_line(text: str | bytes, source: str) -> ArchivedEvent:
    try:
        line = pydantic_core.from_json(text)
    except ValueError:
        raise ArchiveLineError("(line): is not JSON") from None
    if not isinstance(line, dict) or line.get("v") != FORMAT:
        raise ArchiveLineError(f"v: must be {FORMAT}")
    try:
        return ArchivedEvent(
            source,
            str(line["event_id"]),
            datetime.fromisoformat(str(line["accepted_at"])),
            tuple(line.get("connections") or ()),
            line.get("bundle"),
            line,
        )
    except (KeyError, ValueError) as exc:
        raise ArchiveLineError(f"{exc}: missing or malformed") from None


def object_lines(body: bytes) -> Iterator[bytes]:
    """The lines of one archive object: gzip, as Firehose writes them (an object under errors/ that is not, as
    it is)."""
    data = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    for raw in data.splitlines():
        if raw.strip():
            yield raw


def source_of_key(key: str) -> str:
    """The source of an object from its key (events/source=<name>/dt=.../...)."""
    for part in key.split("/"):
        if part.startswith("source="):
            return part[len("source=") :]
    raise ArchiveLineError(f"{key}: not under a source=<name>/ partition")

"""`relay import FILE`: a backfill sent through the ingest API (docs/archive.md, "Backfills").

Every row is read and validated first with the ingest's own rules (relay.ingest.reading: the event model, the
routing, the source's connections) and each bad one reported by its line number; then the good ones are sent,
100 to a request, signed, with the clients' retry rules (clients/python/relay_client.py: a 503 sent again after
its Retry-After, at most five sends). A checkpoint keeps how many were acknowledged, so a killed import run again
resumes after them; what was in flight is sent again, and the ingest answers it "duplicate" (its ledger keeps
event ids per source), never queuing it twice.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from relay.ingest import jsonbody
from relay.ingest.reading import EventReader
from relay.models.config import RelayConfig
from relay.models.event import MAX_EVENTS_PER_REQUEST
from relay.queued.routing import Router

ROOT = Path(__file__).resolve().parents[2]


class ImportError_(ValueError):  # noqa: N801 - not the builtin
    """A file or option the import cannot use at all; names it."""


@dataclass
class Row:
    line: int  # the file's line number (CSV: the row's first line; the header is line 1)
    event: dict[str, Any]


@dataclass
class ImportReport:
    rows: int = 0
    bad: list[dict[str, Any]] = field(default_factory=list)  # {"line", "event_id", "errors"}
    sent: int = 0  # events acknowledged by the ingest (this run and the runs it resumes)
    accepted: int = 0
    duplicates: int = 0  # already imported (or already sent by the client that sent them live)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # what the ingest refused, by line
    # valid rows some connection finds invalid (the others take them): {"line", "event_id", "invalid"}
    partial: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0


def relay_client() -> ModuleType:
    """clients/python/relay_client.py: the clients' signing and retry rules, from one place."""
    path = ROOT / "clients" / "python" / "relay_client.py"
    spec = importlib.util.spec_from_file_location("relay_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_rows(path: Path, mapping: dict[str, str], constants: dict[str, str]) -> Iterator[Row | dict[str, Any]]:
    """The file's events: NDJSON (one canonical event a line) or CSV (a header, then a row per event) by its
    suffix. A row that cannot be read is its error ({"line", "errors"}) in its place."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if path.suffix.lower() == ".csv":
        yield from _csv_rows(text, mapping, constants)
        return
    if mapping:
        raise ImportError_("--map: only for a CSV file (an NDJSON line is a canonical event)")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = jsonbody.loads(line.encode("utf-8"))
        except jsonbody.JsonBodyError as exc:
            yield {"line": number, "errors": [f"(line): {exc}"]}
            continue
        if not isinstance(event, dict):
            yield {"line": number, "errors": ["(line): must be a JSON object, one canonical event"]}
            continue
        yield Row(number, _with(event, constants))


def _csv_rows(text: str, mapping: dict[str, str], constants: dict[str, str]) -> Iterator[Row | dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise ImportError_("the CSV file has no header row")
    unknown = sorted(set(mapping) - set(header))
    if unknown:
        raise ImportError_(f"--map: no column named {unknown[0]!r} (columns: {', '.join(header)})")
    fields = [mapping.get(column, column) for column in header]
    line = 2
    for values in reader:
        start, line = line, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield {"line": start, "errors": [f"(row): {len(values)} columns; the header has {len(header)}"]}
            continue
        event: dict[str, Any] = {}
        for name, value in zip(fields, values, strict=True):
            if value.strip():
                _put(event, name, value.strip())
        yield Row(start, _with(event, constants))


def _put(event: dict[str, Any], path: str, value: Any) -> None:
    """event[a][b] = value for the dotted field path "a.b"."""
    *parents, last = path.split(".")
    node = event
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _with(event: dict[str, Any], constants: dict[str, str]) -> dict[str, Any]:
    for name, value in constants.items():
        _put(event, name, value)
    return event


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        left, sep, right = pair.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise ImportError_(f"{option}: {pair!r} is not NAME=VALUE")
        out[left.strip()] = right.strip()
    return out


class Importer:
    def __init__(
        self,
        config: RelayConfig,
        source: str,
        send: Callable[[bytes], tuple[int, dict[str, Any]]],
        checkpoint: Path,
        rate: float = 100.0,
        now: datetime | None = None,
        progress: Callable[[int, int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config, self.source, self.send = config, source, send
        self.reader = EventReader(config, Router(config))
        self.checkpoint = checkpoint
        self.interval = 1.0 / rate
        self.now = now or datetime.now(UTC)
        self.progress = progress or (lambda done, total: None)
        self.sleep = sleep

    def validate(self, rows: Iterator[Row | dict[str, Any]], report: ImportReport) -> list[Row]:
        """The rows to send; each bad one reported by its line number."""
        good: list[Row] = []
        lines: dict[str, int] = {}
        for row in rows:
            report.rows += 1
            if not isinstance(row, Row):
                report.bad.append({**row, "event_id": None})
                continue
            entry, message, errors = self.reader.read(0, row.event, self.now, jsonbody.Suspect(), {}, self.source)
            event_id = entry.get("event_id")
            if not errors and event_id in lines:
                errors = [f"event_id: repeats the event_id of line {lines[event_id]}"]
            if errors:
                report.bad.append({"line": row.line, "event_id": event_id, "errors": [str(e) for e in errors]})
                continue
            lines[event_id] = row.line
            if entry.get("invalid"):
                invalid = {c: [f"{e['field']}: {e['message']}" for e in v] for c, v in entry["invalid"].items()}
                report.partial.append({"line": row.line, "event_id": event_id, "invalid": invalid})
            good.append(row)
        return good

    def run(self, good: list[Row], report: ImportReport) -> bool:
        """Send the good rows from where the checkpoint says; False when the relay stopped answering."""
        done = self._resume(good)
        report.resumed_from = report.sent = done
        started = time.monotonic()
        for first in range(done, len(good), MAX_EVENTS_PER_REQUEST):
            part = good[first : first + MAX_EVENTS_PER_REQUEST]
            wait = started + first * self.interval - time.monotonic()  # --rate: events a second
            if wait > 0:
                self.sleep(wait)
            body = json.dumps({"events": [r.event for r in part]}, ensure_ascii=False).encode("utf-8")
            status, answer = self.send(body)
            if status >= 500 or status not in (202, 400):
                return False
            self._tally(part, answer, report)
            report.sent += len(part)
            self._save(good, report.sent)
            self.progress(report.sent, len(good))
        return True

    @staticmethod
    def _tally(part: list[Row], answer: dict[str, Any], report: ImportReport) -> None:
        for accepted in answer.get("accepted", []):
            report.accepted += 1
            report.duplicates += bool(accepted.get("duplicate"))
        for rejected in answer.get("rejected", []):
            row = part[rejected["index"]] if 0 <= rejected.get("index", -1) < len(part) else None
            errors = [f"{e['field']}: {e['message']}" for e in rejected.get("errors", [])]
            report.rejected.append(
                {"line": row.line if row else None, "event_id": rejected.get("event_id"), "errors": errors}
            )

    def _identity(self, good: list[Row]) -> str:
        ids = [r.event.get("event_id") for r in good]
        return hashlib.sha256(json.dumps([self.source, ids]).encode()).hexdigest()

    def _resume(self, good: list[Row]) -> int:
        if not self.checkpoint.exists():
            return 0
        data = json.loads(self.checkpoint.read_text())
        return int(data.get("sent", 0)) if data.get("identity") == self._identity(good) else 0

    def _save(self, good: list[Row], sent: int) -> None:
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.checkpoint.with_suffix(".tmp")
        temporary.write_text(json.dumps({"identity": self._identity(good), "sent": sent, "of": len(good)}))
        os.replace(temporary, self.checkpoint)


def default_checkpoint(path: Path, source: str) -> Path:
    digest = hashlib.sha256(f"{path.resolve()}\n{source}".encode()).hexdigest()[:16]
    return Path(".relay") / "imports" / f"{path.stem}-{digest}.json"


def report_json(report: ImportReport) -> dict[str, Any]:
    return asdict(report)

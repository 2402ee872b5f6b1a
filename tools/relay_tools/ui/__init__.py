"""The debugger page (docs/debugger.md): events as they arrive with their outcome per vendor, each event's
requests and the vendors' answers, the DLQs with redrive and purge, and the identifier coverage per vendor.

`relay dev` serves it on its ingest port (at ``/``, the deployed API does not) and `relay ui --stack NAME`
serves it on 127.0.0.1 against a deployed stack with your AWS credentials. Every asset comes from
`static/`: the page loads nothing from elsewhere.

It reads the journeys (relay.journey) and the vendors' DLQs, and changes only the DLQs. The page's API
(``/ui/api/...``) answers only requests whose Host is the loopback address it serves on and that carry
the token the page was served with (``X-Relay-UI``), so that no other site open in the browser can read
events or redrive a DLQ through it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Lock
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from relay.journey import AT, INDEX, MINUTE, SHARDS, JourneyTable
from relay.journey.record import OUTCOMES, PENDING
from relay.journey.refusals import RefusalLog
from relay.journey.trace import trace_event
from relay.models.event import VENDORS
from relay.vendors.base import IDENTIFIER_KINDS
from relay_tools.queues import VendorQueues, dead_letter_count, peek_letters, purge_letters, redrive_letters

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
TOKEN_HEADER = "X-Relay-UI"  # noqa: S105 - a header name, not a secret
WINDOW_MINUTES = 60  # how far back the page lists events and charts their outcomes
MAX_EVENTS = 200
MAX_ITEMS = 500  # journey items read for the list (ingest requests and vendor invocations)
PAGE_LETTERS = 20  # dead letters listed per vendor (the count is the DLQ's own)
REFUSED_HOURS = 24  # how far back the "Refused requests" panel reads
PAGE_REFUSED = 50


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def _json(status: int, data: Any) -> Reply:
    return Reply(status, json.dumps(data).encode())


class RecentJourneys:
    """The latest journey items, read through the table's `journeys` index (relay.journey: hash key
    "<minute>#<shard>", range key `at`). A journey item is written once and never changed, so what was read
    is kept: each refresh queries only the minutes that may still grow, and fetches only new items."""

    SETTLED_MINUTES = 2  # a minute this far back gets no new items (clock skew, invocations that end late)

    def __init__(self, journeys: JourneyTable, minutes: int = WINDOW_MINUTES):
        self.journeys, self.minutes = journeys, minutes
        self._keys: dict[str, list[tuple[int, str]]] = {}  # settled minute -> its items' (at, key)
        self._items: dict[str, dict[str, Any]] = {}  # key -> decoded item
        self._pool = ThreadPoolExecutor(max_workers=SHARDS, thread_name_prefix="journeys")
        self._lock = Lock()

    def _minute(self, minute: str) -> list[tuple[int, str]]:
        def shard(n: int) -> list[tuple[int, str]]:
            keys, start = [], None
            while True:
                response = self.journeys.client.query(
                    TableName=self.journeys.table_name,
                    IndexName=INDEX,
                    KeyConditionExpression="#m = :m",
                    ExpressionAttributeNames={"#m": MINUTE},
                    ExpressionAttributeValues={":m": {"S": f"{minute}#{n}"}},
                    **({"ExclusiveStartKey": start} if start else {}),
                )
                keys += [(int(i[AT]["N"]), i["id"]["S"]) for i in response.get("Items", [])]
                start = response.get("LastEvaluatedKey")
                if not start:
                    return keys

        return [key for part in self._pool.map(shard, range(SHARDS)) for key in part]

    def items(self, limit: int = MAX_ITEMS) -> dict[str, dict[str, Any]]:
        """The decoded items of the window, at most `limit`, the newest (one refresh at a time: the page
        asks from several requests at once)."""
        with self._lock:
            return self._refresh(limit)

    def _refresh(self, limit: int) -> dict[str, dict[str, Any]]:
        now = self.journeys.clock()
        keys: list[tuple[int, str]] = []
        window = [f"{datetime.fromtimestamp(now - back * 60, UTC):%Y-%m-%dT%H:%M}" for back in range(self.minutes)]
        for back, minute in enumerate(window):
            if back >= self.SETTLED_MINUTES and minute in self._keys:
                found = self._keys[minute]
            else:
                found = self._minute(minute)
                if back >= self.SETTLED_MINUTES:
                    self._keys[minute] = found
            keys += found
        newest = [key for _, key in sorted(keys, reverse=True)[:limit]]
        missing = [key for key in newest if key not in self._items]
        fetched = self.journeys.get(missing) if missing else {}
        # what left the window is forgotten: a page left open for days holds one window's worth
        self._keys = {minute: found for minute, found in self._keys.items() if minute in window}
        self._items = {
            key: self._items.get(key) or fetched[key] for key in newest if key in self._items or key in fetched
        }
        return dict(self._items)


class Debugger:
    """The page's API over a stack's journeys and DLQs. `queues(vendor)`: that vendor's queue and DLQ."""

    def __init__(self, journeys: JourneyTable, queues: Callable[[str], VendorQueues]):
        self.journeys = journeys
        self.recent = RecentJourneys(journeys)
        self.queues = queues
        self.token = secrets.token_urlsafe(24)
        # the page reads the DLQs (receiving and releasing each letter) while a redrive or purge reads them too:
        # one at a time, or a letter the listing holds is invisible to the redrive that wants it
        self._dlq = Lock()

    # -- routing -----------------------------------------------------------------------------------

    @staticmethod
    def serves(path: str) -> bool:
        return path == "/" or path.startswith("/ui/")

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes, port: int) -> Reply:
        """One HTTP request to the page or its API."""
        lower = {k.lower(): v for k, v in headers.items()}
        if lower.get("host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            return _json(403, {"error": "the debugger answers only on its loopback address"})
        parts = urlsplit(target)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        if method == "GET" and path == "/":
            page = (STATIC / "index.html").read_text().replace("{{TOKEN}}", self.token)
            return Reply(200, page.encode(), TYPES[".html"])
        if method == "GET" and path.startswith("/ui/static/"):
            return self._asset(path.removeprefix("/ui/static/"))
        if not path.startswith("/ui/api/"):
            return _json(404, {"error": "not found"})
        if not secrets.compare_digest(lower.get(TOKEN_HEADER.lower(), ""), self.token):
            return _json(403, {"error": f"missing or wrong {TOKEN_HEADER} header: reload the page"})
        try:
            return self._api(method, path.removeprefix("/ui/api/"), query, body)
        except Exception as exc:  # noqa: BLE001 - AWS unreachable or refusing: said on the page
            return _json(502, {"error": f"{type(exc).__name__}: {exc}"})

    def _asset(self, name: str) -> Reply:
        path = (STATIC / name).resolve()
        if path.parent != STATIC.resolve() or not path.is_file() or path.suffix not in TYPES:
            return _json(404, {"error": "not found"})
        return Reply(200, path.read_bytes(), TYPES[path.suffix])

    def _api(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> Reply:
        parts = path.split("/")
        if method == "GET" and path == "events":
            wanted = query.get("connection") or query.get("vendor") or None
            filters = {k: query.get(k) or None for k in ("source", "name", "q")}
            return _json(200, self.events(wanted, query.get("outcome") or None, **filters))
        if method == "GET" and path == "refused":
            since = self.journeys.clock() - REFUSED_HOURS * 3600
            return _json(200, {"refused": RefusalLog(self.journeys).recent(since, limit=PAGE_REFUSED)})
        if method == "GET" and parts[0] == "events" and len(parts) == 2:
            journey = trace_event(self.journeys, unquote(parts[1]), query.get("source") or "default")
            return _json(200, journey) if journey else _json(404, {"error": "the relay knows no such event"})
        if method == "GET" and path == "dlq":
            with self._dlq:
                return _json(200, {vendor: self.letters(vendor) for vendor in VENDORS})
        if method == "POST" and parts[0] == "dlq" and len(parts) == 3 and parts[1] in VENDORS:
            try:
                wanted = json.loads(body or b"{}").get("event_ids") or []
            except (ValueError, AttributeError):
                return _json(400, {"error": 'the body must be JSON: {"event_ids": [...]} or {}'})
            with self._dlq:
                return self._dlq_action(parts[1], parts[2], set(wanted))
        return _json(404, {"error": "not found"})

    def _dlq_action(self, vendor: str, action: str, wanted: set[str]) -> Reply:
        """Redrive or purge a vendor's dead letters: those of `wanted` event ids, or all."""
        if action == "redrive":
            return _json(200, {"moved": self.redrive(vendor, wanted)})
        if action == "purge" and wanted:  # one letter (or a few), as `relay dlq purge --event-id`
            return _json(200, {"deleted": purge_letters(self.queues(vendor), wanted)[0]})
        if action == "purge":
            self.queues(vendor).client.purge_queue(QueueUrl=self.queues(vendor).dlq_url)
            return _json(200, {"purged": True})
        return _json(404, {"error": "not found"})

    # -- what the page shows -----------------------------------------------------------------------

    def events(
        self,
        connection: str | None = None,
        outcome: str | None = None,
        source: str | None = None,
        name: str | None = None,
        q: str | None = None,
    ) -> dict[str, Any]:
        """The events of the latest journeys, newest first, with their source, name and outcome per connection;
        the connections, sources and names seen; the outcomes per minute and vendor (the chart); and the
        identifier coverage of what each connection took (the match quality). `connection`: only the events
        sent to it (a vendor's name alone: to any of its connections); `source`, `name`: only those; `q`:
        only event ids holding it (an exact id older than the window is traced)."""
        items = self.recent.items()
        runs = sorted((j for j in items.values() if j.get("kind") == "vendor"), key=lambda j: j["written_at"])
        latest: dict[tuple[str, str, str], str] = {}
        for run in runs:
            for event_id, result in run.get("events", {}).items():
                latest[(run.get("source", "default"), event_id, run["vendor"])] = result["outcome"]
        rows = []
        accepted = sorted((j for j in items.values() if j.get("kind") == "ingest"), key=lambda j: -j["written_at"])
        for journey in accepted:
            sent_by = journey.get("source", "default")
            for event_id, entry in journey["events"].items():
                outcomes = {c: latest.get((sent_by, event_id, c), PENDING) for c in entry.get("destinations", [])}
                outcomes |= dict.fromkeys(entry.get("skipped", {}), "skipped")
                outcomes |= dict.fromkeys(entry.get("invalid", {}), "invalid")
                row = {"event_id": event_id, "source": sent_by, "accepted_at": journey["accepted_at"]}
                rows.append(row | {"name": entry.get("name"), "vendors": outcomes})
        seen = sorted({c for row in rows for c in row["vendors"]})
        listed = {
            "sources": sorted({r["source"] for r in rows}),
            "names": sorted({r["name"] for r in rows if r["name"]}),
        }
        rows = [r for r in rows if (not source or r["source"] == source) and (not name or r["name"] == name)]
        if q:
            rows = [r for r in rows if q in r["event_id"]] or self._traced(q, source or "default")
        if connection:
            mine = [c for c in seen if c == connection or c.startswith(f"{connection}.")]
            rows = [
                r for r in rows if any(c in r["vendors"] and (not outcome or r["vendors"][c] == outcome) for c in mine)
            ]
        elif outcome:
            rows = [r for r in rows if outcome in r["vendors"].values()]
        events = rows[:MAX_EVENTS]
        chart = outcomes_per_minute(runs, self.journeys.clock(), self.recent.minutes)
        out = {"events": events, "connections": seen, "match": match_quality(runs), "outcomes": list(OUTCOMES)}
        return out | listed | {"chart": chart}

    def _traced(self, event_id: str, source: str) -> list[dict[str, Any]]:
        """The row of an event searched by its exact id that the window does not hold (older, or refused)."""
        journey = trace_event(self.journeys, event_id, source)
        if journey is None:
            return []
        outcomes = {c: part["outcome"] for c, part in journey["vendors"].items()}
        row = {"event_id": event_id, "source": source, "accepted_at": journey["accepted_at"], "name": None}
        return [row | {"vendors": outcomes, "refused": len(journey.get("refused", []))}]

    def letters(self, vendor: str) -> dict[str, Any]:
        """How many letters the vendor's DLQ holds (its attributes: nothing received), and the first
        PAGE_LETTERS of them, read and released at once (none when it is empty: a DLQ polled every two
        seconds is not received from while there is nothing to show)."""
        queues = self.queues(vendor)
        count = dead_letter_count(queues)
        letters = peek_letters(queues, PAGE_LETTERS, hold_seconds=5) if count else []
        return {"count": count, "letters": [letter.summary() for letter in letters]}

    def redrive(self, vendor: str, wanted: set[str]) -> int:
        """Move the vendor's dead letters (those carrying `wanted` event_ids; all when empty) back to its queue."""
        return redrive_letters(self.queues(vendor), wanted)[0]


def outcomes_per_minute(runs: list[dict[str, Any]], now: float, minutes: int) -> dict[str, Any]:
    """Per vendor and outcome, how many events each vendor invocation of the last `minutes` ended with, by the
    minute its journey item was written (UTC, oldest first)."""
    first = int(now // 60) - minutes + 1
    labels = [datetime.fromtimestamp((first + n) * 60, UTC).strftime("%Y-%m-%dT%H:%MZ") for n in range(minutes)]
    series: dict[str, dict[str, list[int]]] = {v: {o: [0] * minutes for o in OUTCOMES} for v in VENDORS}
    for run in runs:
        slot, vendor = int(run["written_at"] // 60_000) - first, str(run.get("vendor", "")).split(".")[0]
        if not 0 <= slot < minutes or vendor not in series:  # a connection's runs count for its vendor
            continue
        for result in run.get("events", {}).values():
            if result.get("outcome") in series[vendor]:
                series[vendor][result["outcome"]][slot] += 1
    return {"minutes": labels, "series": series}


def match_quality(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per vendor: the events it took, and the share of them carrying each kind of identifier."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        match = run.get("match") or {}
        entry = out.setdefault(run["vendor"], {"forwarded": 0, "counts": dict.fromkeys(IDENTIFIER_KINDS, 0)})
        entry["forwarded"] += match.get("forwarded", 0)
        for kind, n in (match.get("identifiers") or {}).items():
            entry["counts"][kind] = entry["counts"].get(kind, 0) + n
    for entry in out.values():
        total = entry["forwarded"]
        entry["coverage"] = {k: (n / total if total else 0.0) for k, n in entry.pop("counts").items()}
    return out


def respond(request: BaseHTTPRequestHandler, debugger: Debugger) -> None:
    """Answer `request` (an http.server handler whose path the debugger serves)."""
    length = int(request.headers.get("Content-Length") or 0)
    body = request.rfile.read(length) if length else b""
    port = request.server.server_address[1]
    reply = debugger.handle(request.command, request.path, dict(request.headers.items()), body, port)
    request.send_response(reply.status)
    request.send_header("Content-Type", reply.content_type)
    request.send_header("Content-Length", str(len(reply.body)))
    request.send_header("Cache-Control", "no-store")
    request.send_header("X-Content-Type-Options", "nosniff")
    request.send_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
    request.end_headers()
    request.wfile.write(reply.body)


def serve(debugger: Debugger, port: int = 0) -> ThreadingHTTPServer:
    """A server for the page alone on 127.0.0.1:`port` (0: any free port); the caller runs serve_forever."""

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            respond(self, debugger)

        do_GET = do_POST = _any  # noqa: N815

    return ThreadingHTTPServer(("127.0.0.1", port), Page)

"""`make demo`: start the local stack, send every sample (as each source of the configuration), wait until each
connection has answered, print event -> connection -> outcome, stop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from relay.aws.ledger import DeliveryLedger
from relay.delivery import deadletter
from relay.models.config import RelayConfig
from relay.models.names import VENDOR_TITLES, namespace_parts
from relay.queued.message import parse_message
from relay_tools.connections import signed_headers
from relay_tools.dev import ROOT, LocalStack
from relay_tools.queues import letter_connection

SAMPLES = ROOT / "events" / "samples"


Key = tuple[str, str, str]  # (connection, source, event_id)


def _ledger(stack: LocalStack) -> dict[Key, str]:
    """(connection, source, event_id) -> "delivered (HTTP 200)" from the idempotency table (settled claims)."""
    ddb = stack.clients["dynamodb"]
    table = stack.stack.physical["IdempotencyTable"]  # type: ignore[union-attr]
    items = [item for page in ddb.get_paginator("scan").paginate(TableName=table) for item in page.get("Items", [])]
    return {
        (*namespace_parts(namespace), event_id): f"delivered (HTTP {http})"
        for (namespace, event_id), http in DeliveryLedger.delivered_events(items).items()
    }


def _dead_letters(stack: LocalStack) -> dict[Key, str]:
    sqs = stack.clients["sqs"]
    out = {}
    for vendor, logical in VENDOR_TITLES.items():
        url = stack.stack.physical[f"{logical}DeadLetterQueue"]  # type: ignore[union-attr]
        letters = list(deadletter.read_all(sqs, url, hold_seconds=1))
        deadletter.release(sqs, url, letters)
        for letter in letters:
            source = parse_message(letter.message_id, letter.body, vendor)[0].sent_by  # a message is one source's
            key = (letter_connection(letter, vendor), source, letter.event_id or "?")
            out[key] = f"dead-lettered: {letter.reason}"
    return out


def run_demo(
    config: RelayConfig,
    out: Callable[[str], None] = print,
    timeout_s: float = 90.0,
    samples: Path = SAMPLES,
    paths: list[Path] | None = None,
) -> int:
    """Send every sample of `samples` (or only `paths`) through a local stack; print each outcome."""
    requests_log: list[str] = []
    stack = LocalStack(config, ingest_port=0, aws_port=0, sandbox_port=0, log=requests_log.append).start()
    try:
        out(f"local stack up: ingest {stack.ingest_url}, AWS {stack.aws_endpoint}")
        rows: list[tuple[str, str, str, str]] = []
        pending: dict[Key, str] = {}
        sources = list(config.source_configs())
        with httpx.Client(timeout=30) as client:
            for source in sources:
                for path in paths or sorted(samples.glob("*.json")):
                    event = json.loads(path.read_text())
                    raw = json.dumps({"events": [event]}).encode()
                    response = client.post(stack.ingest_url, content=raw, headers=signed_headers(raw, config, source))
                    sample = path.name if len(sources) == 1 else f"{path.name} ({source})"
                    _answer(sample, source, response, rows, pending)
        deadline = time.monotonic() + timeout_s
        outcomes: dict[Key, str] = {}
        while pending.keys() - outcomes.keys() and time.monotonic() < deadline:
            time.sleep(0.5)
            outcomes = {**_ledger(stack), **_dead_letters(stack)}
        missing = 0
        for (connection, source, event_id), sample in pending.items():
            outcome = outcomes.get((connection, source, event_id))
            if outcome is None:
                missing += 1
            rows.append((sample, event_id, connection, outcome or f"no answer within {timeout_s:.0f} s"))
        _table(rows, out)
        out("")
        out("vendor requests (connection, status, events, latency):")
        for line in requests_log:
            out(f"  {line}")
        return 0 if missing == 0 else 1
    finally:
        stack.stop()


def _answer(
    sample: str, source: str, response: httpx.Response, rows: list[tuple[str, str, str, str]], pending: dict[Key, str]
) -> None:
    """The ingest's answer to one sample: its refusals as rows, its destinations as pending outcomes."""
    body: dict[str, Any] = response.json()
    for r in body.get("rejected", []):
        why = "; ".join(f"{e['field']}: {e['message']}" for e in r["errors"])
        rows.append((sample, str(r["event_id"]), "-", f"rejected by the ingest ({response.status_code}): {why}"))
    for a in body.get("accepted", []):
        for connection in a["destinations"]:
            pending[(connection, source, a["event_id"])] = sample
        for connection, reason in a.get("skipped", {}).items():
            rows.append((sample, a["event_id"], connection, f"skipped: {reason}"))
        for connection, errors in a.get("invalid", {}).items():
            why = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            rows.append((sample, a["event_id"], connection, f"invalid: {why}"))
    if "error" in body:
        rows.append((sample, "?", "-", f"refused ({response.status_code}): {body['error']}"))


def _table(rows: list[tuple[str, str, str, str]], out: Callable[[str], None]) -> None:
    rows.sort()
    widths = [max(len(r[i]) for r in [("sample", "event", "connection", ""), *rows]) for i in range(3)]
    out("")
    out(f"{'sample':<{widths[0]}}  {'event':<{widths[1]}}  {'connection':<{widths[2]}}  outcome")
    for sample, event_id, connection, outcome in rows:
        out(f"{sample:<{widths[0]}}  {event_id:<{widths[1]}}  {connection:<{widths[2]}}  {outcome}")

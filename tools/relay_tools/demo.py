"""`make demo`: start the local stack, send every sample, wait until each vendor has answered, print
event -> vendor -> outcome, stop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from relay.aws.ledger import DeliveryLedger
from relay.delivery import deadletter
from relay.ingest.signing import sign
from relay.models.config import RelayConfig
from relay_tools.dev import ROOT, LocalStack

SAMPLES = ROOT / "events" / "samples"


def _ledger(stack: LocalStack) -> dict[tuple[str, str], str]:
    """(vendor, event_id) -> "delivered (HTTP 200)" from the idempotency table (settled claims)."""
    ddb = stack.clients["dynamodb"]
    table = stack.stack.physical["IdempotencyTable"]  # type: ignore[union-attr]
    items = [item for page in ddb.get_paginator("scan").paginate(TableName=table) for item in page.get("Items", [])]
    return {key: f"delivered (HTTP {http})" for key, http in DeliveryLedger.delivered_events(items).items()}


def _dead_letters(stack: LocalStack) -> dict[tuple[str, str], str]:
    sqs = stack.clients["sqs"]
    out = {}
    for vendor, logical in (("applovin", "AppLovin"), ("appsflyer", "AppsFlyer"), ("adroll", "AdRoll")):
        url = stack.stack.physical[f"{logical}DeadLetterQueue"]  # type: ignore[union-attr]
        letters = list(deadletter.read_all(sqs, url, hold_seconds=1))
        deadletter.release(sqs, url, letters)
        for letter in letters:
            out[(vendor, letter.event_id or "?")] = f"dead-lettered: {letter.reason}"
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
        secret = config.ingest.secrets[0].get_secret_value()
        rows: list[tuple[str, str, str, str]] = []
        pending: dict[tuple[str, str], str] = {}
        with httpx.Client(timeout=30) as client:
            for path in paths or sorted(samples.glob("*.json")):
                event = json.loads(path.read_text())
                raw = json.dumps({"events": [event]}).encode()
                response = client.post(
                    stack.ingest_url,
                    content=raw,
                    headers={"Content-Type": "application/json", "X-Relay-Signature": sign(raw, secret)},
                )
                body: dict[str, Any] = response.json()
                for r in body.get("rejected", []):
                    why = "; ".join(f"{e['field']}: {e['message']}" for e in r["errors"])
                    rows.append(
                        (path.name, str(r["event_id"]), "-", f"rejected by the ingest ({response.status_code}): {why}")
                    )
                for a in body.get("accepted", []):
                    for vendor in a["destinations"]:
                        pending[(vendor, a["event_id"])] = path.name
                    for vendor, reason in a.get("skipped", {}).items():
                        rows.append((path.name, a["event_id"], vendor, f"skipped: {reason}"))
                    for vendor, errors in a.get("invalid", {}).items():
                        why = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
                        rows.append((path.name, a["event_id"], vendor, f"invalid: {why}"))
                if "error" in body:
                    rows.append((path.name, "?", "-", f"refused ({response.status_code}): {body['error']}"))
        deadline = time.monotonic() + timeout_s
        outcomes: dict[tuple[str, str], str] = {}
        while pending.keys() - outcomes.keys() and time.monotonic() < deadline:
            time.sleep(0.5)
            outcomes = {**_ledger(stack), **_dead_letters(stack)}
        missing = 0
        for (vendor, event_id), sample in pending.items():
            outcome = outcomes.get((vendor, event_id))
            if outcome is None:
                missing += 1
            rows.append((sample, event_id, vendor, outcome or f"no answer within {timeout_s:.0f} s"))
        rows.sort()
        widths = [max(len(r[i]) for r in [("sample", "event", "vendor", ""), *rows]) for i in range(3)]
        out("")
        out(f"{'sample':<{widths[0]}}  {'event':<{widths[1]}}  {'vendor':<{widths[2]}}  outcome")
        for sample, event_id, vendor, outcome in rows:
            out(f"{sample:<{widths[0]}}  {event_id:<{widths[1]}}  {vendor:<{widths[2]}}  {outcome}")
        out("")
        out("vendor requests (vendor, status, events, latency):")
        for line in requests_log:
            out(f"  {line}")
        return 0 if missing == 0 else 1
    finally:
        stack.stop()

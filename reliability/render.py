"""Render the README's reliability figures from the result files `make reliability` writes.

    python reliability/render.py            # rewrite the README's blocks from reliability/*.json
    python reliability/render.py --check    # exit 1 when the README does not show what the files hold

Each block stands between ``<!-- reliability:NAME -->`` and ``<!-- /reliability:NAME -->`` in README.md,
so no figure is copied by hand (tests/local/test_reliability.py runs --check).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
VENDORS = {"applovin": "AppLovin", "appsflyer": "AppsFlyer", "adroll": "AdRoll"}
FAULTS = (
    ("5xx", "5xx"),
    ("429", "429s with Retry-After"),
    ("timeout", "holds past the deadline"),
    ("drip", "answers dripped past the deadline"),
    ("slow", "late answers (the latency tail)"),
    ("reset", "connection resets"),
    ("invalid", "requests refused for an invalid event"),
    ("crash", "invocations crashed after their work"),
)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def soak(data: dict[str, Any]) -> str:
    rows = [
        "| vendor | valid deliveries expected | delivered | duplicates | lost | invalid events | in the DLQ with"
        " a reason (the refusal) | DLQ messages (relay) | moved by SQS | vendor requests |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for vendor, name in VENDORS.items():
        lost = data["lost"].get(vendor, 0) + data["valid_dead_lettered"].get(vendor, 0)
        rows.append(
            f"| {name} | {_n(data['expected'][vendor])} | {_n(data['delivered'][vendor])} |"
            f" {_n(data['duplicates'][vendor])} | {_n(lost)} | {_n(data['invalid_expected'][vendor])} |"
            f" {_n(data['invalid_in_dlq'][vendor])} ({_n(data.get('invalid_refused', {}).get(vendor, 0))}) |"
            f" {_n(data['dlq_messages'][vendor])} |"
            f" {_n(data['moved_by_sqs'][vendor])} | {_n(sum(data['vendor_requests'][vendor].values()))} |"
        )
    faults = data.get("faults", {})
    injected = ", ".join(f"{_n(faults[k])} {label}" for k, label in FAULTS if faults.get(k))
    killed = data.get("killed") or {}
    ended = ", ".join(f"{VENDORS[v]} {n}" for v, n in sorted(killed.items()) if n) or "none"
    lines = [
        f"{_n(data['events'])} events in {_n(data['ingest_requests'])} signed requests of {data['per_request']};"
        f" {_n(sum(data['expected'].values()))} valid vendor deliveries expected.",
        f"Faults injected: {injected}.",
        f"Invocations ended at their timeout: {ended}. Events near the size limit: {_n(data.get('big_events', 0))}.",
    ]
    if data.get("disabled"):
        lines.append(
            f"{VENDORS[data['disabled']]} turned off in its function mid-run: {_n(data['disabled_dead_lettered'])}"
            f" events dead-lettered as `disabled` ({_n(data['redriven'])} messages), redriven once it was back on."
        )
    verdict = "**passed**: exactly once, nothing lost" if data["passed"] else "**failed**"
    lines.append(f"Drained in {data['drain_seconds']:.0f} s; {verdict}.")
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {line}" for line in lines)


def load(runs: list[dict[str, Any]]) -> str:
    rows = [
        "| events per request | clients | requests | requests/s | events/s | p50 | p99 | max | resent after a 503 |"
        " errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        ms = run["latency_ms"]
        rows.append(
            f"| {run['per_request']} | {run['concurrency']} | {_n(run['requests'])} | {run['requests_per_s']:.1f} |"
            f" {run['events_per_s']:.1f} | {_n(ms['p50'])} ms | {_n(ms['p99'])} ms | {_n(ms['max'])} ms |"
            f" {_n(run.get('resends', 0))} | {_n(run['errors'])} |"
        )
    return "\n".join(rows)


def blocks(folder: Path = HERE) -> dict[str, str]:
    read = lambda name: json.loads((folder / name).read_text())  # noqa: E731
    return {"soak": soak(read("soak.json")), "load": load([read("load-1.json"), read("load-100.json")])}


def render(text: str, rendered: dict[str, str]) -> str:
    for name, body in rendered.items():
        pattern = re.compile(rf"(<!-- reliability:{name} -->\n)(?:.*?\n)?(<!-- /reliability:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- reliability:{name} --> block")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the README is not up to date")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = render(text, blocks())
    if args.check:
        if new != text:
            print("README.md's reliability figures differ from reliability/*.json: run python reliability/render.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`relay load`: sustained signed requests at an ingest URL (the local stack's or a deployment's) for a
fixed time, from this process; reports requests/s, events/s, latency percentiles and every error.

`local_load` runs it as issue #7 asks: the local stack in this process, `relay load` in a second one.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from relay.ingest.signing import HEADER, sign
from relay_tools.traffic import purchase_event


@dataclass
class LoadReport:
    url: str
    seconds: float
    per_request: int
    concurrency: int
    requests: int = 0
    events: int = 0
    errors: int = 0
    resends: int = 0  # requests sent again after a 503 (the answer counted is the last one)
    statuses: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_s": self.requests_per_s, "events_per_s": self.events_per_s}

    def line(self) -> str:
        lat = self.latency_ms
        return (
            f"{self.per_request:>3} event(s)/request, {self.concurrency} client(s), {self.seconds:.0f} s: "
            f"{self.requests:,} requests ({self.requests_per_s:,.1f}/s), {self.events:,} events "
            f"({self.events_per_s:,.1f}/s), latency p50 {lat.get('p50', 0):.1f} ms p99 {lat.get('p99', 0):.1f} ms "
            f"max {lat.get('max', 0):.1f} ms, resent after a 503 {self.resends}, errors {self.errors}"
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


RESEND_ATTEMPTS = 5  # a request answered 503 is sent this many times at most


def run_load(url: str, secret: str, seconds: float, per_request: int = 1, concurrency: int = 4) -> LoadReport:
    """Each client thread sends, one request at a time, a fresh body of `per_request` new events, signed
    anew (the ingest refuses a replayed signature); a 503 is resent, as the API tells clients to. Success =
    HTTP 202 with every event accepted for both of its vendors (none invalid or skipped for one of them)."""
    report = LoadReport(url=url, seconds=seconds, per_request=per_request, concurrency=concurrency)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    run = uuid.uuid4().hex[:8]
    deadline = time.monotonic() + seconds

    def client_loop(n: int) -> None:
        sent = 0
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                ids = [f"load-{run}-{n}-{sent}-{i}" for i in range(per_request)]
                sent += 1
                raw = json.dumps({"events": [purchase_event(i) for i in ids]}).encode()
                started = time.perf_counter()
                try:
                    wait = 0.0
                    for attempt in range(RESEND_ATTEMPTS):  # a 503 is resent, signed anew, as the API says
                        if attempt:
                            with lock:
                                report.resends += 1
                            time.sleep(wait)
                        response = client.post(
                            url, content=raw, headers={"Content-Type": "application/json", HEADER: sign(raw, secret)}
                        )
                        if response.status_code != 503:
                            break
                        wait = float(response.headers.get("Retry-After", "1"))
                    ms = (time.perf_counter() - started) * 1000
                    answer = response.json() if response.status_code == 202 else {}
                    accepted = sum(
                        1
                        for a in answer.get("accepted", [])
                        if sorted(a.get("destinations", [])) == ["adroll", "applovin"] and not a.get("invalid")
                    )
                    ok, status = accepted == per_request, str(response.status_code)
                    problem = "" if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except (httpx.HTTPError, ValueError) as exc:
                    ms, ok, status, accepted = (time.perf_counter() - started) * 1000, False, type(exc).__name__, 0
                    problem = type(exc).__name__
                with lock:
                    report.requests += 1
                    report.events += accepted
                    statuses[status] += 1
                    latencies.append(ms)
                    if not ok:
                        report.errors += 1
                        if len(report.error_examples) < 5:
                            report.error_examples.append(problem)

    threads = [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.monotonic() - started
    report.statuses = dict(statuses)
    report.latency_ms = {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies, default=0.0),
        "mean": statistics.fmean(latencies) if latencies else 0.0,
    }
    return report


def local_load(seconds: float, per_request: int, concurrency: int = 4) -> LoadReport:
    """Start the local stack here (the soak's configuration, vendor sandboxes without faults) and run
    `relay load` against it from a second process."""
    from relay_tools.dev import LocalStack
    from relay_tools.soak import SECRET, soak_config

    config = soak_config(f"load-{uuid.uuid4().hex[:8]}")
    stack = LocalStack(config, ingest_port=0, aws_port=0, sandbox_port=0, log=lambda line: None).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            signing = Path(tmp) / "relay.toml"
            signing.write_text(f"[ingest]\nsecrets = [{json.dumps(SECRET)}]\n")
            result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "relay_tools.cli",
                    "load",
                    "--url",
                    stack.ingest_url,
                    "--config",
                    str(signing),
                    "--seconds",
                    str(seconds),
                    "--per-request",
                    str(per_request),
                    "--concurrency",
                    str(concurrency),
                    "--json",
                    str(Path(tmp) / "load.json"),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                check=False,
            )
            if result.returncode not in (0, 1):
                raise RuntimeError(f"relay load exited {result.returncode}: {result.stderr[-2000:]}")
            data = json.loads((Path(tmp) / "load.json").read_text())
        for derived in ("requests_per_s", "events_per_s"):
            data.pop(derived)
        return LoadReport(**data)
    finally:
        stack.stop()

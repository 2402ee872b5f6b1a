"""`relay outage`: vendor outages through the whole local stack, with time compressed.

`hour_seconds` real seconds stand for one hour. The [delivery] settings are scaled with it (the retry
window, the longest retry delay, the probe interval), and so are the outages the vendor double plays while
signed traffic keeps arriving at the ingest: by default AppsFlyer answers 503 for 6 hours, AdRoll 401 for 2
and AppLovin lets every request time out for 1. Then it counts, per vendor and event_id, what the double
accepted and what is left in the DLQs: every valid event delivered exactly once, nothing left, and the
vendor requests made while the vendor was down against the events that waited for it. `window_hours`
shorter than an outage shows the other path: events dead-lettered as `retries_exhausted`, moved back by the
automatic redrive once the vendor answers, and delivered once. `traffic_hours` shorter than the outages
leaves the relay in silence after them: no event arrives to find the vendor healthy again, and the
template's schedule (every 5 minutes, compressed with the hour) recovers the dead letters by itself.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from relay.delivery.circuit import OPEN_AFTER
from relay.delivery.sending import SEND_WORKERS
from relay.models.config import MIN_RETRY_WINDOW_HOURS, RelayConfig
from relay_tools.dev import LocalStack
from relay_tools.faults import Fault, FaultPlan
from relay_tools.soak import (
    DLQ,
    EMAIL_DOMAIN,
    VENDORS,
    _accepted,
    post_signed,
    soak_config,
    soak_event,
)

KINDS = {"503": Fault("5xx", status=503), "401": Fault("auth", status=401), "timeout": Fault("timeout")}
DEFAULT_OUTAGES = {"appsflyer": ("503", 6.0), "adroll": ("401", 2.0), "applovin": ("timeout", 1.0)}
VENDOR_TIMEOUT_SECONDS = 1.0  # the relay's request deadline here; a "timeout" fault holds a request longer


@dataclass(frozen=True)
class Outage:
    vendor: str
    kind: str  # a key of KINDS
    start: float  # seconds after the run starts
    seconds: float

    @property
    def end(self) -> float:
        return self.start + self.seconds


class OutagePlan(FaultPlan):
    """The vendor double of an outage run: each vendor fails the whole time its outage lasts, and answers
    normally otherwise (no random faults, no crashes)."""

    def __init__(self, outages: list[Outage], started: float):
        super().__init__(server_error=0, throttled=0, timeout=0, reset=0, drip=0, slow=0, crash=0)
        self.outages, self.started = outages, started
        self.hold_seconds = VENDOR_TIMEOUT_SECONDS * 1.5

    def pick(self, vendor: str | None = None) -> Fault | None:
        now = time.monotonic() - self.started
        for outage in self.outages:
            if outage.vendor == vendor and outage.start <= now < outage.end:
                fault = KINDS[outage.kind]
                self.count(outage.kind)
                return (
                    Fault(fault.kind, fault.status, hold_seconds=self.hold_seconds)
                    if fault.kind == "timeout"
                    else fault
                )
        return None


@dataclass
class OutageReport:
    hour_seconds: float
    window_hours: float
    probe_seconds: int = 0
    outages: dict[str, dict[str, Any]] = field(default_factory=dict)  # vendor -> kind, hours
    expected: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    dlq_left: dict[str, int] = field(default_factory=dict)
    waited: dict[str, int] = field(default_factory=dict)  # events sent while the vendor was down
    requests_while_down: dict[str, int] = field(default_factory=dict)
    exhausted: dict[str, int] = field(default_factory=dict)  # events the function dead-lettered as retries_exhausted
    ingest_errors: list[str] = field(default_factory=list)
    ingest_resends: int = 0  # requests resent after a 503 (moto's transactions slow down as the table grows)
    clear_text_emails: int = 0
    drained: bool = False
    seconds: float = 0.0

    def share_while_down(self, vendor: str) -> float:
        return self.requests_while_down.get(vendor, 0) / max(self.waited.get(vendor, 0), 1)

    def request_budget(self, vendor: str) -> int:
        """The most requests the relay should make to `vendor` while it is down, whatever the traffic: a send
        pool's worth before the first failures are counted, the failures that open the circuit, then one
        probe per interval (and one more for the interval the outage ends in)."""
        down_seconds = self.outages[vendor]["hours"] * self.hour_seconds
        probes = math.ceil(down_seconds / max(self.probe_seconds, 1)) + 1
        return SEND_WORKERS + OPEN_AFTER + probes

    @property
    def passed(self) -> bool:
        return (
            self.drained
            and not self.ingest_errors
            and self.clear_text_emails == 0
            and all(self.delivered[v] == self.expected[v] > 0 for v in self.outages)
            and not any(self.duplicates.values())
            and not any(self.lost.values())
            and not any(self.dlq_left.values())
            and all(self.requests_while_down[v] <= self.request_budget(v) for v in self.outages)
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def lines(self) -> list[str]:
        out = [
            f"outage run: 1 h = {self.hour_seconds:g} s, retry window {self.window_hours:g} h, a probe every"
            f" {self.probe_seconds} s, {self.seconds:.0f} s in all",
            "vendor     outage      expected  delivered  dup  lost  DLQ  waited  requests-while-down  share  exhausted",
        ]
        for v, o in self.outages.items():
            out.append(
                f"{v:<10} {o['kind']:<7}{o['hours']:>3g} h {self.expected[v]:>9} {self.delivered[v]:>10}"
                f" {self.duplicates[v]:>4} {self.lost[v]:>5} {self.dlq_left[v]:>4} {self.waited[v]:>7}"
                f" {self.requests_while_down[v]:>20} {self.share_while_down(v):>6.1%} {self.exhausted.get(v, 0):>10}"
            )
        out.append(
            "PASSED: exactly once, nothing left, requests while down within the circuit's budget"
            if self.passed
            else "FAILED"
        )
        return out


def outage_config(run: str, hour_seconds: float, window_hours: float, probe_seconds: int) -> RelayConfig:
    """The soak's configuration with the [delivery] settings scaled: `window_hours` of `hour_seconds` each,
    the longest delay an hour, and a probe every `probe_seconds` (real seconds: the 60 s of a deployed relay
    scaled would be a fraction of a second, which probes far more often per waiting event than a deployed
    relay does; see OutageReport.share_while_down)."""
    delivery = {
        "retry_window_hours": max(MIN_RETRY_WINDOW_HOURS, window_hours * hour_seconds / 3600),
        "max_retry_delay_seconds": max(1, math.ceil(hour_seconds)),
        "probe_interval_seconds": probe_seconds,
    }
    return soak_config(f"outage-{run}", delivery)


SCHEDULE_MINUTES = 5  # template.yaml's Recovery schedule: rate(5 minutes)


def run_outage(
    hour_seconds: float = 2.0,
    window_hours: float = 24.0,
    outages: dict[str, tuple[str, float]] | None = None,
    start_hours: float = 1.0,
    traffic_hours: float | None = None,
    per_request: int = 50,
    requests_per_second: float = 4.0,
    probe_seconds: int = 3,
    timeout_s: float = 600.0,
    log: Callable[[str], None] = lambda line: None,
) -> OutageReport:
    """`outages`: vendor -> (kind, hours); each starts `start_hours` into the run. Traffic lasts
    `traffic_hours` (by default until an hour after the longest outage)."""
    plan_of = outages if outages is not None else DEFAULT_OUTAGES
    run = f"{int(time.time() * 1000)}"
    longest = max((hours for _, hours in plan_of.values()), default=0.0)
    traffic_s = (traffic_hours if traffic_hours is not None else start_hours + longest + 1) * hour_seconds
    report = OutageReport(hour_seconds=hour_seconds, window_hours=window_hours, probe_seconds=probe_seconds)
    report.outages = {v: {"kind": kind, "hours": hours} for v, (kind, hours) in plan_of.items()}
    started = time.monotonic()
    windows = [
        Outage(v, kind, start_hours * hour_seconds, hours * hour_seconds) for v, (kind, hours) in plan_of.items()
    ]
    plan = OutagePlan(windows, started)
    stack = LocalStack(
        outage_config(run, hour_seconds, window_hours, probe_seconds),
        ingest_port=0,
        aws_port=0,
        sandbox_port=0,
        log=log,
        faults=plan,
        redelivery_seconds=1,
        vendor_timeout_seconds=VENDOR_TIMEOUT_SECONDS,
        # the template's schedule (every 5 minutes), compressed with the hour
        schedule_seconds=max(0.5, hour_seconds * SCHEDULE_MINUTES / 60),
    ).start()
    plan.started = started = time.monotonic()
    expected: dict[str, set[str]] = {v: set() for v in VENDORS}
    waited: Counter[str] = Counter()
    try:
        _traffic(stack, run, traffic_s, per_request, requests_per_second, windows, started, expected, waited, report)
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            time.sleep(1.0)
            got = _accepted(stack)
            if all(expected[v] <= set(got[v]) for v in VENDORS) and _depth(stack) == 0:
                report.drained = True
                break
        report.seconds = time.monotonic() - started
        _count(stack, report, expected, waited, windows, started)
        return report
    finally:
        stack.stop()


def _traffic(stack, run, seconds, per_request, rate, windows, started, expected, waited, report) -> None:  # noqa: PLR0913
    """Signed requests at `rate` per second for `seconds`; notes which events arrived during an outage."""
    i = 0
    with httpx.Client(timeout=60) as client:
        while (now := time.monotonic()) - started < seconds:
            batch = range(i, i + per_request)
            i += per_request
            body = json.dumps({"events": [soak_event(event_index(n), run) for n in batch]}).encode()
            response, resends = post_signed(client, stack.ingest_url, body)
            report.ingest_resends += resends
            answer = response.json()
            if response.status_code != 202 or answer.get("rejected"):
                report.ingest_errors.append(f"{response.status_code}: {json.dumps(answer)[:200]}")
            at = time.monotonic() - started
            down = {w.vendor for w in windows if w.start <= at < w.end}
            for accepted in answer.get("accepted", []):
                for vendor in accepted["destinations"]:
                    expected[vendor].add(accepted["event_id"])
                    waited[vendor] += vendor in down
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - now)))


def event_index(n: int) -> int:
    """The n-th event's soak index: two in three are app events (AppsFlyer, which takes one request per
    event, so that the most events wait for the vendor whose outage costs the most requests), one in three
    a web event (AppLovin and AdRoll); soak_event's own mix has a third of app events."""
    return 6 * (n // 3) + (0, 2, 5)[n % 3]


def _depth(stack: LocalStack) -> int:
    """Messages in the vendor queues and DLQs, visible or not."""
    sqs, physical = stack.clients["sqs"], stack.stack.physical  # type: ignore[union-attr]
    total = 0
    for logical in (*DLQ.values(), "AppLovinQueue", "AppsFlyerQueue", "AdRollQueue"):
        attrs = sqs.get_queue_attributes(
            QueueUrl=physical[logical],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        total += int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
    return total


def _count(stack, report, expected, waited, windows, started) -> None:  # noqa: PLR0913
    got = _accepted(stack)
    sqs = stack.clients["sqs"]
    down: Counter[str] = Counter()
    for r in stack.sandboxes.requests():
        at = r.at - (time.time() - (time.monotonic() - started))
        if any(w.vendor == r.vendor and w.start <= at < w.end for w in windows):
            down[r.vendor] += 1
        if r.body is not None and EMAIL_DOMAIN in json.dumps(r.body):
            report.clear_text_emails += 1
    for v in report.outages:
        report.expected[v] = len(expected[v])
        report.delivered[v] = len(expected[v] & set(got[v]))
        report.duplicates[v] = sum(n - 1 for n in got[v].values() if n > 1)
        report.lost[v] = len(expected[v] - set(got[v]))
        url = stack.stack.physical[DLQ[v]]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        report.dlq_left[v] = int(attrs["ApproximateNumberOfMessages"])
        report.waited[v] = waited[v]
        report.requests_while_down[v] = down[v]
        report.exhausted[v] = len(
            {e for e, outcome in stack.dead_lettered.get(v, []) if outcome == "retries_exhausted"}
        )


__all__ = ["DEFAULT_OUTAGES", "OutageReport", "run_outage"]

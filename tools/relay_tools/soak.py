"""`relay soak`: the fault soak through the whole local stack.

Signed HTTP requests -> the real IngestFunction handler -> SNS -> the three SQS queues (moto, created from
template.yaml) -> the real vendor handlers -> the vendor double (the sandboxes with a FaultPlan injecting
5xx, 429 + Retry-After, timeouts, connection resets, answers dripped past the relay's deadline, a latency
tail, and invalid-event refusals), while vendor-function invocations crash after their work so SQS
redelivers whole batches, and invocations that outlive their (short) timeout are ended there. Some events
are near the size limit; one vendor is turned off in its function for a while mid-run (its messages go to
its DLQ with the reason) and its DLQ redriven once it is back on, as an operator would. Then it counts,
per vendor and event_id, what the double accepted and what is in the DLQs: every valid event delivered
exactly once, every invalid one in the DLQ with its reason, nothing lost.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from relay.delivery import deadletter
from relay.delivery.deadletter import SQS_MOVED
from relay.delivery.outcomes import Outcome
from relay.ingest.bundling import MAX_EVENT_MESSAGE_BYTES
from relay.ingest.signing import sign
from relay.models.config import RelayConfig, config_from_mapping
from relay.models.names import VENDORS
from relay_tools.dev import LocalStack
from relay_tools.faults import SOAK_ID_PROPERTY, FaultPlan, event_ids
from relay_tools.memory import LIMIT_MB, MemoryWatch
from relay_tools.traffic import purchase_event

SECRET = "soak-signing-secret"  # noqa: S105 - a local placeholder, like relay.example.toml's
EMAIL_DOMAIN = "@soak.example.com"
DLQ = {
    "applovin": "AppLovinDeadLetterQueue",
    "appsflyer": "AppsFlyerDeadLetterQueue",
    "adroll": "AdRollDeadLetterQueue",
}
QUEUES = {"applovin": "AppLovinQueue", "appsflyer": "AppsFlyerQueue", "adroll": "AdRollQueue"}
INGEST_ATTEMPTS = 5  # a request answered 503 is resent up to this many times in all


# retries a second or two apart, and a window no soak reaches (relay.outage runs test the window)
SOAK_DELIVERY = {"retry_window_hours": 1, "max_retry_delay_seconds": 2, "probe_interval_seconds": 1}


def soak_config(stack_name: str, delivery: dict[str, Any] | None = None) -> RelayConfig:
    """All three vendors on, endpoints left to the local stack's sandboxes (the double)."""
    return config_from_mapping(
        {
            "ingest": {"secrets": [SECRET]},
            "delivery": delivery or SOAK_DELIVERY,
            "applovin": {"pixel_id": "soak-pixel", "api_key": "soak-applovin-key"},
            "appsflyer": {
                "key": "soak-appsflyer-key",
                "ios_app_id": "id123456789",
                "android_app_id": "com.example.app",
            },
            "adroll": {
                "advertisable_eid": "SOAKADV",
                "pixel_eid": "SOAKPIX",
                "token": "soak-adroll-token",
                "app_url_domain": "app.example.com",
            },
            "local": {"stack_name": stack_name},
        }
    )


def is_app_event(i: int) -> bool:
    return i % 3 == 2


def soak_id(run: str, i: int) -> str:
    return f"soak-{run}-{i:06d}"


# a big event's property: its queued message (AppLovin's and AdRoll's payloads, the blob in AdRoll's
# external_data) stays just under the ingest's limit (relay.ingest.MAX_EVENT_MESSAGE_BYTES)
BIG_PROPERTY_CHARS = MAX_EVENT_MESSAGE_BYTES - 3_000


def soak_event(i: int, run: str, big: bool = False) -> dict[str, Any]:
    """Two of three events are web purchases (AppLovin + AdRoll), one an Android app purchase (AppsFlyer
    only). The event id travels in properties.soak_id too (see relay.faults.event_ids). `big`: a web
    event whose message is near the size limit."""
    event_id = soak_id(run, i)
    properties: dict[str, Any] = {SOAK_ID_PROPERTY: event_id}
    if big:
        properties["blob"] = "x" * BIG_PROPERTY_CHARS
    return purchase_event(event_id, app=is_app_event(i), email=f"u{i}{EMAIL_DOMAIN}", properties=properties)


def is_big(i: int, big_every: int) -> bool:
    return bool(big_every) and not is_app_event(i) and i % big_every == 0


@dataclass
class SoakReport:
    events: int
    per_request: int
    ingest_requests: int = 0
    ingest_errors: list[str] = field(default_factory=list)
    ingest_resends: int = 0  # requests resent after a 503 (the ingest keeping to its deadline, say)
    expected: dict[str, int] = field(default_factory=dict)  # vendor -> valid deliveries expected
    invalid_expected: dict[str, int] = field(default_factory=dict)  # vendor -> refusals expected in the DLQ
    delivered: dict[str, int] = field(default_factory=dict)  # vendor -> distinct event ids accepted
    duplicates: dict[str, int] = field(default_factory=dict)  # vendor -> accepted more than once
    lost: dict[str, int] = field(default_factory=dict)  # vendor -> valid, neither delivered nor anywhere
    valid_dead_lettered: dict[str, int] = field(default_factory=dict)
    invalid_in_dlq: dict[str, int] = field(default_factory=dict)  # with the relay's reason
    invalid_refused: dict[str, int] = field(default_factory=dict)  # of those, the reason naming the refusal
    invalid_missing: dict[str, int] = field(default_factory=dict)
    dlq_messages: dict[str, int] = field(default_factory=dict)  # moved by the relay, with its reason
    # moved by SQS itself after MaxReceiveCount receives (invocations that kept crashing after their work):
    # events already delivered, parked in the DLQ by SQS; a redrive finds them delivered and drops them
    moved_by_sqs: dict[str, int] = field(default_factory=dict)
    dlq_reasons: dict[str, str] = field(default_factory=dict)  # one example per vendor
    big_events: int = 0  # events whose message is near the size limit
    killed: dict[str, int] = field(default_factory=dict)  # vendor -> invocations ended at their timeout
    disabled: str = ""  # the vendor turned off in its function for a while
    disabled_dead_lettered: int = 0  # its events moved to its DLQ meanwhile (each message whole), with the reason
    redriven: int = 0  # DLQ messages redriven once the vendor was back on
    vendor_requests: dict[str, dict[str, int]] = field(default_factory=dict)  # vendor -> status -> count
    faults: dict[str, int] = field(default_factory=dict)
    clear_text_emails: int = 0  # vendor requests carrying a soak event's email in clear text
    drain_seconds: float = 0.0
    drained: bool = False
    peak_mb: int = 0  # the local stack's peak memory (moto's server and the relay's process, relay_tools.memory)
    moto_peak_mb: int = 0

    @property
    def passed(self) -> bool:
        return (
            self.drained
            and not self.ingest_errors
            and not any(self.duplicates.values())
            and not any(self.lost.values())
            and not any(self.valid_dead_lettered.values())
            and not any(self.invalid_missing.values())
            and self.delivered == self.expected
            and self.clear_text_emails == 0
            and self.peak_mb < LIMIT_MB
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def lines(self) -> list[str]:
        out = [
            f"events sent: {self.events} in {self.ingest_requests} signed requests of {self.per_request}"
            f" (resent after a 503: {self.ingest_resends}; ingest errors: {len(self.ingest_errors)})",
            "faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
            f"drained: {self.drained} in {self.drain_seconds:.1f} s; vendor requests with a clear-text email:"
            f" {self.clear_text_emails}",
            f"the local stack's peak memory: {self.peak_mb} MB (moto's server {self.moto_peak_mb} MB; at most"
            f" {LIMIT_MB} MB)",
            f"big events: {self.big_events}; invocations ended at their timeout: "
            + (", ".join(f"{v} {n}" for v, n in sorted(self.killed.items())) or "none"),
            f"{self.disabled or 'no vendor'} turned off mid-run: {self.disabled_dead_lettered} events dead-lettered"
            f" as disabled ({self.redriven} messages), redriven once it was back on",
            "",
            f"{'vendor':<10}{'expected':>9}{'delivered':>10}{'dupes':>6}{'lost':>5}"
            f"{'invalid':>8}{'in DLQ':>7}{'DLQ msgs':>9}{'by SQS':>7}{'requests':>9}",
        ]
        for v in VENDORS:
            out.append(
                f"{v:<10}{self.expected.get(v, 0):>9}{self.delivered.get(v, 0):>10}{self.duplicates.get(v, 0):>6}"
                f"{self.lost.get(v, 0) + self.valid_dead_lettered.get(v, 0):>5}{self.invalid_expected.get(v, 0):>8}"
                f"{self.invalid_in_dlq.get(v, 0):>7}{self.dlq_messages.get(v, 0):>9}{self.moved_by_sqs.get(v, 0):>7}"
                f"{sum(self.vendor_requests.get(v, {}).values()):>9}"
            )
        out += ["", *(f"DLQ reason ({v}): {r}" for v, r in self.dlq_reasons.items())]
        out.append("PASSED: exactly once, nothing lost" if self.passed else "FAILED")
        return out


def post_signed(client: httpx.Client, url: str, body: bytes) -> tuple[httpx.Response, int]:
    """POST a signed body; a 503 is resent after its Retry-After, as the API tells clients to, up to
    INGEST_ATTEMPTS times in all. Returns the last answer and how many resends it took."""
    wait = 0.0
    for attempt in range(INGEST_ATTEMPTS):
        if attempt:
            time.sleep(wait)
        response = client.post(
            url, content=body, headers={"Content-Type": "application/json", "X-Relay-Signature": sign(body, SECRET)}
        )
        if response.status_code != 503:
            return response, attempt
        wait = float(response.headers.get("Retry-After", "1"))
    return response, INGEST_ATTEMPTS - 1


def _backlog(stack: LocalStack) -> int:
    """The messages in the vendor queues, visible or not (the deepest queue)."""
    sqs = stack.clients["sqs"]
    deepest = 0
    for logical in QUEUES.values():
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.stack.physical[logical],  # type: ignore[union-attr]
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        deepest = max(
            deepest, int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        )
    return deepest


def run_soak(
    events: int = 1500,
    per_request: int = 50,
    plan: FaultPlan | None = None,
    invalid_rate: float = 0.01,
    timeout_s: float = 900.0,
    vendor_timeout_seconds: float = 2.0,
    function_timeout_seconds: int = 12,
    redelivery_seconds: int = 1,
    max_backlog: int = 300,
    big_every: int = 300,
    disable: str | None = "adroll",
    disabled_seconds: float = 20.0,
    log: Callable[[str], None] = lambda line: None,
    verbose: bool = False,
    parameters: dict[str, str] | None = None,
) -> SoakReport:
    """`max_backlog`: the next ingest request waits while a vendor queue holds more messages than this.
    moto's SQS rescans the whole queue for every message it sends or receives, so a deep backlog slows
    the local stack quadratically; AWS has no such cost. `function_timeout_seconds`: every vendor
    function's timeout here (the deployed ones: 30 to 60 s), short enough for slow vendors to reach it.
    `big_every`: every n-th web event is near the size limit (0: none). `disable`: the vendor whose
    function is turned off for `disabled_seconds` once half the requests are sent (None: none)."""
    run = f"{int(time.time() * 1000)}"
    rng = random.Random(plan.seed if plan else 7)  # noqa: S311 - which events are invalid, not security
    poison: frozenset[str] = frozenset()
    if invalid_rate:  # drawn among web and app events alike, so that every vendor gets some
        for app in (True, False):
            ids = [soak_id(run, i) for i in range(events) if is_app_event(i) == app]
            poison |= frozenset(rng.sample(ids, min(len(ids), max(1, round(len(ids) * invalid_rate)))))
    plan = plan or FaultPlan()
    plan.reject_ids = poison
    report = SoakReport(events=events, per_request=per_request)
    expected: dict[str, set[str]] = {v: set() for v in VENDORS}
    stack = LocalStack(
        soak_config(f"soak-{run}"),
        ingest_port=0,
        aws_port=0,
        sandbox_port=0,
        log=log,
        faults=plan,
        redelivery_seconds=redelivery_seconds,
        vendor_timeout_seconds=vendor_timeout_seconds,
        function_timeout_seconds=function_timeout_seconds,
        verbose=verbose,
        parameters=parameters,
    ).start()
    watch = MemoryWatch(stack.moto.pid).start()
    switch = _Switch(stack, disable, disabled_seconds)
    report.disabled = disable or ""
    try:
        started = time.monotonic()
        # an ingest request may take long on moto: its TransactWriteItems copies the whole table per item
        with httpx.Client(timeout=180) as client:
            for start in range(0, events, per_request):
                if start >= events // 2:
                    switch.off()
                switch.tick()
                while _backlog(stack) > max_backlog and time.monotonic() < started + timeout_s:
                    switch.tick()
                    time.sleep(0.5)
                batch = range(start, min(events, start + per_request))
                report.big_events += sum(is_big(i, big_every) for i in batch)
                raw = json.dumps({"events": [soak_event(i, run, is_big(i, big_every)) for i in batch]})
                body = raw.encode()
                response, resends = post_signed(client, stack.ingest_url, body)
                report.ingest_resends += resends
                report.ingest_requests += 1
                answer = response.json()
                if response.status_code != 202 or answer.get("rejected"):
                    report.ingest_errors.append(f"{response.status_code}: {json.dumps(answer)[:200]}")
                for accepted in answer.get("accepted", []):
                    for vendor in accepted["destinations"]:
                        expected[vendor].add(accepted["event_id"])
        deadline = started + timeout_s
        assert stack.sandboxes is not None
        while time.monotonic() < deadline:
            time.sleep(1.0)
            switch.tick()
            if _backlog(stack) == 0 and switch.back_on():  # what went to the DLQ as disabled goes back
                report.redriven += switch.redrive()
            accepted_now = _accepted(stack)
            if all(expected[v] - poison <= set(accepted_now[v]) for v in VENDORS) and _backlog(stack) == 0:
                report.drained = True
                break
        report.drain_seconds = time.monotonic() - started
        accepted_ids = _accepted(stack)
        statuses: dict[str, Counter[str]] = {v: Counter() for v in VENDORS}
        for r in stack.sandboxes.requests():
            if r.vendor in statuses:
                statuses[r.vendor][str(r.status)] += 1
            if r.body is not None and EMAIL_DOMAIN in json.dumps(r.body):
                report.clear_text_emails += 1
        dead = _dead_letters(stack)
        for v in VENDORS:
            valid, invalid = expected[v] - poison, expected[v] & poison
            got = accepted_ids[v]
            by_sqs = [letter for letter in dead[v] if letter.outcome == SQS_MOVED]
            letters = [letter for letter in dead[v] if letter.outcome != SQS_MOVED]
            in_dlq = {letter.event_id for letter in letters} | {
                event_id for letter in by_sqs for event_id in letter.event_ids if event_id not in got
            }
            report.expected[v] = len(valid)
            report.invalid_expected[v] = len(invalid)
            report.delivered[v] = len(valid & set(got))
            report.duplicates[v] = sum(n - 1 for n in got.values() if n > 1) + len(invalid & set(got))
            report.valid_dead_lettered[v] = len(valid & (in_dlq - set(got)))
            report.lost[v] = len(valid - set(got) - in_dlq)
            # in the DLQ with the relay's reason; most with the double's refusal naming this very event, some
            # given up on after MaxReceiveCount receives before the bisection isolated them (faults and
            # deadlines kept cutting it short): `retries_exhausted` with the last error
            report.invalid_in_dlq[v] = len({letter.event_id for letter in letters if letter.event_id in invalid})
            report.invalid_refused[v] = len(
                {
                    letter.event_id
                    for letter in letters
                    if letter.event_id in invalid and letter.status == "400" and letter.event_id in letter.response
                }
            )
            report.invalid_missing[v] = len(invalid) - report.invalid_in_dlq[v]
            report.dlq_messages[v] = len(letters)
            report.moved_by_sqs[v] = sum(len(letter.event_ids) for letter in by_sqs)  # events, not messages
            if letters:
                report.dlq_reasons[v] = f"{letters[0].outcome}: {letters[0].reason}"
            report.vendor_requests[v] = dict(statuses[v])
        report.faults = dict(plan.injected)
        report.killed = dict(stack.killed)
        report.disabled_dead_lettered = switch.dead_lettered
        watch.stop()
        report.peak_mb, report.moto_peak_mb = watch.peak_mb, watch.moto_peak_mb
        return report
    finally:
        watch.stop()
        stack.stop()


class _Switch:
    """Turns one vendor off in its function for a while, then back on, and redrives what its function
    dead-lettered as disabled meanwhile (as an operator would, with `relay dlq redrive`)."""

    def __init__(self, stack: LocalStack, vendor: str | None, seconds: float):
        self.stack, self.vendor, self.seconds = stack, vendor, seconds
        self.until: float | None = None
        self.dead_lettered = 0

    def off(self) -> None:
        if self.vendor and self.until is None:
            self.stack.set_enabled(self.vendor, False)
            self.until = time.monotonic() + self.seconds

    def tick(self) -> None:
        if self.vendor and self.until is not None and time.monotonic() >= self.until:
            self.stack.set_enabled(self.vendor, True)

    def back_on(self) -> bool:
        return bool(self.vendor) and self.until is not None and time.monotonic() >= self.until

    def redrive(self) -> int:
        assert self.vendor and self.stack.stack is not None
        sqs, physical = self.stack.clients["sqs"], self.stack.stack.physical
        dlq, source = physical[DLQ[self.vendor]], physical[QUEUES[self.vendor]]
        letters = list(deadletter.read_all(sqs, dlq, hold_seconds=30))
        disabled = [letter for letter in letters if letter.outcome == Outcome.DISABLED]
        deadletter.release(sqs, dlq, [letter for letter in letters if letter.outcome != Outcome.DISABLED])
        self.dead_lettered += sum(len(letter.event_ids) for letter in disabled)
        return deadletter.redrive(sqs, dlq, source, disabled)


def _accepted(stack: LocalStack) -> dict[str, Counter[str]]:
    """(vendor -> event_id -> times) over the requests the double answered 200."""
    out: dict[str, Counter[str]] = {v: Counter() for v in VENDORS}
    for r in stack.sandboxes.requests():  # type: ignore[union-attr]
        if r.status == 200 and r.vendor in out:
            out[r.vendor].update(event_ids(r.vendor, r.body))
    return out


def _dead_letters(stack: LocalStack) -> dict[str, list[deadletter.Letter]]:
    """vendor -> every message in its DLQ (held, not deleted: the stack is stopped afterwards)."""
    sqs = stack.clients["sqs"]
    return {
        vendor: list(deadletter.read_all(sqs, stack.stack.physical[logical], hold_seconds=30))  # type: ignore[union-attr]
        for vendor, logical in DLQ.items()
    }

"""Fault injection for the local stack (`relay soak`): what the vendor double does wrong, and
which invocations of the vendor functions crash.

The double is the vendor sandboxes (relay.sandbox) with a FaultPlan: before a request reaches the
sandbox's checks, the plan may answer it with a 5xx, a 429 with Retry-After, hold it past the relay's
timeout, reset the connection, or answer 200 with a body dripped a byte at a time past the relay's
deadline. Those faults happen *before* the vendor processes the request, so the double records nothing
for them (a vendor that processed a request whose answer was then lost would count the resend as a
duplicate, which no client can prevent without a vendor-side dedupe key). A "slow" request is processed
and answered, late: the latency tail within the relay's deadline, which costs invocations their time.
Events whose id is in `reject_ids` are refused as invalid (400; AppLovin and AdRoll drop the whole
batch, as they document). A request that passes gets the sandbox's own checks and answer.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# the canonical property a soak event carries its id in, for the vendors whose bodies have no event id
SOAK_ID_PROPERTY = "soak_id"


@dataclass(frozen=True)
class Fault:
    kind: str  # "5xx" | "429" | "timeout" | "reset" | "drip" | "slow"
    status: int = 0
    retry_after: int = 0
    hold_seconds: float = 0.0

    @property
    def processed(self) -> bool:
        """A slow answer is the vendor's real answer, late; every other fault answers without processing."""
        return self.kind == "slow"


@dataclass
class FaultPlan:
    """Rates are per vendor request (5xx, 429, timeout, reset) and per invocation (crash). `crash_every`
    makes every n-th invocation of each vendor function crash as well (a short run with few invocations
    then has crashes for sure)."""

    server_error: float = 0.20
    throttled: float = 0.05
    timeout: float = 0.02
    reset: float = 0.01
    drip: float = 0.02  # a 200 whose body comes a byte at a time, for longer than the relay's deadline
    slow: float = 0.03  # the vendor's own answer, after most of the relay's deadline (the latency tail)
    crash: float = 0.10
    crash_every: int = 0
    retry_after_seconds: int = 1
    hold_seconds: float = 3.0  # how long a "timeout" request is held (longer than the relay's timeout)
    drip_seconds: float = 4.0  # how long a "drip" answer takes to its last byte
    slow_seconds: float = 1.2  # how late a "slow" answer comes (within the relay's timeout)
    reject_ids: frozenset[str] = frozenset()
    seed: int = 7
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - fault injection, not security
        self._lock = threading.Lock()
        self._invocations: Counter[str] = Counter()

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.injected[kind] += n

    def pick(self, vendor: str | None = None) -> Fault | None:
        """The fault for one request to `vendor`, or None to let the sandbox answer (the same odds for
        every vendor)."""
        x = self._draw()
        for kind, rate, fault in (
            ("5xx", self.server_error, Fault("5xx", status=(500, 502, 503)[int(x * 1000) % 3])),
            ("429", self.throttled, Fault("429", status=429, retry_after=self.retry_after_seconds)),
            ("timeout", self.timeout, Fault("timeout", hold_seconds=self.hold_seconds)),
            ("reset", self.reset, Fault("reset")),
            ("drip", self.drip, Fault("drip", status=200, hold_seconds=self.drip_seconds)),
            ("slow", self.slow, Fault("slow", hold_seconds=self.slow_seconds)),
        ):
            if x < rate:
                self.count(kind)
                return fault
            x -= rate
        return None

    def crashes(self, vendor: str) -> bool:
        """Whether this vendor-function invocation fails after its work (see relay.dev)."""
        with self._lock:
            self._invocations[vendor] += 1
            nth = self._invocations[vendor]
        if (self.crash_every and nth % self.crash_every == 0) or self._draw() < self.crash:
            self.count("crash")
            return True
        return False

    def rejected(self, vendor: str, body: Any) -> list[str]:
        """The ids in this request the double refuses as invalid."""
        return [i for i in event_ids(vendor, body) if i in self.reject_ids]


def event_ids(vendor: str, body: Any) -> list[str]:
    """The canonical event ids in a vendor body: AppLovin's `dedupe_id` is the event id; AppsFlyer and
    AdRoll bodies have no id field, so soak events carry theirs in `properties.soak_id` (AppsFlyer puts
    properties in `eventValue`, AdRoll in `external_data`, both JSON strings)."""
    try:
        if vendor == "applovin":
            return [str(e["dedupe_id"]) for e in body["events"]]
        if vendor == "appsflyer":
            return [str(json.loads(body["eventValue"])[SOAK_ID_PROPERTY])]
        if vendor == "adroll":
            return [str(json.loads(e["external_data"])[SOAK_ID_PROPERTY]) for e in body]
    except (KeyError, TypeError, ValueError):
        pass
    return []

"""Vendor side: map a batch of queued events and send it in as few vendor requests as allowed.

AppLovin and AdRoll take up to 100 events per request; AppsFlyer one, sent concurrently with a
bounded pool. Every event gets a Delivery: ok (sent, or skipped with a reason) or failed (with the
reason, the HTTP status and the vendor's answer, truncated). A failure is never reported as success.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from .config import RelayConfig
from .model import Event
from .routing import Router
from .vendors import Invalid, Mapped, Skipped, VendorRequest

MAX_RESPONSE_TEXT = 200
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
AUTH_STATUSES = frozenset({401, 403})


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    outcome: str  # "forwarded" | "skipped" | "invalid" | "rejected" | "auth" | "error"
    reason: str = ""
    status: int | None = None
    response: str = ""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    status: int | None
    events: int
    latency_ms: float


def new_http_client(**kwargs: Any) -> httpx.Client:
    """One client per container (connection reuse), explicit timeouts."""
    return httpx.Client(timeout=DEFAULT_TIMEOUT, limits=httpx.Limits(max_connections=32), **kwargs)


class Forwarder:
    def __init__(
        self,
        vendor: str,
        config: RelayConfig,
        client: httpx.Client,
        max_workers: int = 16,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.vendor = vendor
        self.router = Router(config)
        self.adapter = self.router.adapters[vendor]
        self.client = client
        self.max_workers = max_workers
        self.clock = clock
        self.requests: list[RequestRecord] = []

    def deliver(self, events: Mapping[str, Event]) -> dict[str, Delivery]:
        """`events` keyed by SQS message id; returns a Delivery for every key."""
        results: dict[str, Delivery] = {}
        groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for key, event in events.items():
            outcome = self.router.route_one(event, self.vendor)
            if isinstance(outcome, Skipped):
                results[key] = Delivery(True, "skipped", outcome.reason)
            elif isinstance(outcome, Invalid):
                results[key] = Delivery(False, "invalid", "; ".join(map(str, outcome.errors)))
            elif isinstance(outcome, Mapped):
                groups.setdefault(outcome.target, []).append((key, outcome.payload))
        batches: list[tuple[list[str], VendorRequest]] = []
        size = self.adapter.max_batch
        for target, items in groups.items():
            for start in range(0, len(items), size):
                chunk = items[start : start + size]
                batches.append(([k for k, _ in chunk], self.adapter.build_request(target, [p for _, p in chunk])))
        if len(batches) > 1:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(batches))) as pool:
                answers = list(pool.map(lambda b: self._send(b[1], len(b[0])), batches))
        else:
            answers = [self._send(request, len(keys)) for keys, request in batches]
        for (keys, _), delivery in zip(batches, answers, strict=True):
            for key in keys:
                results[key] = delivery
        return results

    def _send(self, request: VendorRequest, events: int) -> Delivery:
        started = self.clock()
        try:
            response = self.client.request(
                request.method, request.url, headers=request.headers, content=request.content
            )
        except httpx.HTTPError as exc:
            self.requests.append(RequestRecord(None, events, (self.clock() - started) * 1000))
            return Delivery(False, "error", f"{type(exc).__name__} calling {self.vendor}")
        self.requests.append(RequestRecord(response.status_code, events, (self.clock() - started) * 1000))
        text = response.text[:MAX_RESPONSE_TEXT]
        if response.is_success:
            return Delivery(True, "forwarded", status=response.status_code)
        if response.status_code in AUTH_STATUSES:
            return Delivery(False, "auth", f"{self.vendor} refused the credentials", response.status_code, text)
        return Delivery(False, "rejected", f"{self.vendor} answered {response.status_code}", response.status_code, text)

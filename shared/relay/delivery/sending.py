"""How a vendor function sends (relay.delivery.forwarding): the deadlines and retries of one vendor request,
what each answer means, the HTTP client, and what one invocation counts of its requests.

Deadlines: every vendor request has one total deadline (REQUEST_TIMEOUT_SECONDS for connecting, sending and
the whole answer: relay.deadline), and no request — first attempt, retry, bisection half, fan-out request —
starts unless it can finish before the invocation's deadline less BOOKKEEPING_MS, the time the handler keeps
to move dead letters and write the batch record. What could not start is `deferred`: kept for a later
receive, while what was delivered is recorded. A slow vendor costs time, never a duplicate.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from threading import Barrier, Lock, local
from typing import Any

import httpx

from relay.aws.clients import AWS_CALL_MAX_MS
from relay.delivery.outcomes import Delivery, Outcome
from relay.journey.record import Call

MAX_RESPONSE_TEXT = 256
REQUEST_TIMEOUT_SECONDS = 10.0  # one vendor request, all of it: connect, send, the whole answer
CONNECT_TIMEOUT_SECONDS = 3.0
# kept at the end of an invocation for the dead-letter moves and the batch record: the longest an AWS call
# may take (relay.aws.clients.AWS_CALLS bounds each), and a margin for the few calls the bookkeeping makes when AWS
# answers at its usual speed
BOOKKEEPING_MS = AWS_CALL_MAX_MS + 500
# requests in flight per container (AppsFlyer: one event each); template.yaml's AppsFlyerMaxConcurrency x
# this = the requests in flight against AppsFlyer's 60,000 POSTs per minute per app
SEND_WORKERS = 20
DEFAULT_TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
AUTH_STATUSES = frozenset({401, 403})
CIRCUIT_FAILURES = frozenset({Outcome.TRANSIENT, Outcome.AUTH})  # what counts towards opening the circuit
TRANSIENT_STATUSES = frozenset({408, 429})
# a refusal of a batch of several events that says nothing of any one of them: the batch is split until each
# part is taken or an event is refused on its own (400: one invalid event fails AppLovin's and AdRoll's whole
# batch; 413 Content Too Large, 414 and 431: the request's size, RFC 9110 15.5.14-15 and RFC 6585 5)
SPLIT_STATUSES = frozenset({400, 413, 414, 431})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_attempts: int = 6
    request_seconds: float = REQUEST_TIMEOUT_SECONDS  # a request's total deadline
    connect_seconds: float = CONNECT_TIMEOUT_SECONDS
    reserve_ms: int = BOOKKEEPING_MS  # the end of the invocation kept for the handler's bookkeeping


@dataclass
class Stats:
    retries: int = 0
    bisect_requests: int = 0
    deferred_requests: int = 0  # requests not started: the invocation's deadline was too near
    identifiers: Counter[str] = field(default_factory=Counter)  # kind -> forwarded events carrying it
    ledger_errors: int = 0
    answered: int = 0  # requests the vendor answered (2xx, or a 4xx about the events): it is up
    failed: int = 0  # requests that failed for the vendor's sake (401/403, 408, 429, 5xx, no answer)
    streak: int = 0  # failed requests since the last answered one
    calls: list[Call] = field(default_factory=list)  # every request made: the metrics', the journeys'
    lock: Lock = field(default_factory=Lock)

    def note(self, delivery: Delivery) -> None:
        """Count one vendor request's result for the circuit breaker."""
        with self.lock:
            if delivery.outcome in CIRCUIT_FAILURES:
                self.failed += 1
                self.streak += 1
            else:
                self.answered += 1
                self.streak = 0

    def record(self, call: Call) -> None:
        """One vendor request made (from any send thread)."""
        with self.lock:
            self.calls.append(call)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class _NoCookies(httpx.Cookies):
    """A jar that stays empty: what a vendor's answer sets (a load balancer's cookie, say) is not kept."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise ValueError("vendor requests carry no cookies")

    def update(self, cookies: Any = None) -> None:  # type: ignore[override]
        if cookies:
            raise ValueError("vendor requests carry no cookies")


class VendorClient(httpx.Client):
    """The vendors' HTTP client: no cookie jar. A vendor API authenticates each request by its key, and one
    container sends for every connection of its vendor: a cookie one account's answer set must not ride on
    the next account's request. (httpx would also read every answer's cookies into its jar, building two
    urllib objects per request.)"""

    def __init__(self, **kwargs: Any):
        if kwargs.pop("cookies", None):
            raise ValueError("vendor requests carry no cookies")
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("vendor requests carry no cookies")


_NO_COOKIES = _NoCookies()


class ThreadPools(httpx.BaseTransport):
    """A connection pool per sending thread, made on its first request, all sharing one TLS context: a thread
    reuses its own keep-alive connections, and no thread waits on another's pool. One pool shared by the
    send pool's threads (AppsFlyer sends a request per event, 20 at a time) is locked for every request and
    searched connection by connection, each asked whether its socket is still readable: a sixth of the
    transport's CPU per request (docs/decisions/0012)."""

    def __init__(self, limits: httpx.Limits):
        self._options = {"verify": httpx.create_ssl_context(), "limits": limits}
        self._mine = local()
        self._pools: list[httpx.HTTPTransport] = []
        self._lock = Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pool = getattr(self._mine, "pool", None)
        if pool is None:
            pool = self._mine.pool = httpx.HTTPTransport(**self._options)
            with self._lock:
                self._pools.append(pool)
        return pool.handle_request(request)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = self._pools, []
        for pool in pools:
            pool.close()


def new_http_client(**kwargs: Any) -> httpx.Client:
    """One client per container, explicit timeouts, no cookies kept (VendorClient), a connection pool per
    sending thread (ThreadPools) unless `transport` is given."""
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
    kwargs.setdefault("transport", ThreadPools(httpx.Limits(max_connections=32)))
    return VendorClient(**kwargs)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def refusal(vendor: str, status: int, answer: str, retry_after: str | None, now: float) -> Delivery:
    """What a vendor's answer other than 2xx means for the events of its request: 401/403 the credentials
    (retried later), 408, 429 and 5xx transient (retried, after Retry-After when given), any other refused."""
    text = answer[:MAX_RESPONSE_TEXT]
    if status in AUTH_STATUSES:
        return Delivery(False, Outcome.AUTH, f"{vendor} refused the credentials ({status})", status, text)
    if status in TRANSIENT_STATUSES or status >= 500:
        wait = retry_after_seconds(retry_after, now)
        return Delivery(False, Outcome.TRANSIENT, f"{vendor} answered {status}", status, text, wait)
    return Delivery(False, Outcome.REJECTED, f"{vendor} rejected the request ({status})", status, text)


def start_pool(max_workers: int, prefix: str) -> ThreadPoolExecutor:
    """The threads that send a vendor's requests, all started now: starting threads per batch would cost more
    than an AppsFlyer request, and the executor adds a thread only when no idle one is counted (it counts one
    per finished task), so after a burst of quick tasks (the ledger claims) a fan-out of slow requests would
    run on the few threads those made."""
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=prefix)
    barrier = Barrier(max_workers)
    for started in [pool.submit(barrier.wait) for _ in range(max_workers)]:
        started.result()
    return pool

"""Deadlines: one total time limit per vendor request, and the invocation's own.

httpx's timeouts are per operation — a connect, one write, one read — so a vendor that drips its answer a
byte at a time holds a request far longer than any of them. `send_within` gives a request one deadline for
all of it (waiting for a pooled connection, connecting, sending, the whole response): each phase may only
take what is left, and a watchdog shuts the socket when the deadline passes while the body is being read.
"""

from __future__ import annotations

import contextlib
import functools
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

# a response body is read up to this size; a vendor's answer is kept to a few hundred characters anyway
MAX_BODY_BYTES = 65_536
# the phases of an HTTP/1.1 request whose timeout httpcore reads from the request when the phase starts
_PHASES = frozenset(
    {
        "http11.send_request_headers.started",
        "http11.send_request_body.started",
        "http11.receive_response_headers.started",
        "http11.receive_response_body.started",
    }
)


# the request is sent, its answer not read yet
_SENT = "http11.receive_response_headers.started"


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> httpx.URL:
    """A vendor URL parsed once: httpx parses a URL given as text on every request, which took two thirds of
    building one (a vendor function sends to a few URLs, AppsFlyer one request per event)."""
    return httpx.URL(url)


class DeadlineExceeded(Exception):
    """The request did not finish within its total deadline."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A vendor's whole answer, read within the deadline: what `send_within` returns (an httpx.Response built
    again from the read body would cost a vendor request a tenth more CPU, AppsFlyer's one per event)."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The body as text, as httpx reads it: the Content-Type's charset if it names one, else UTF-8, an
        undecodable byte replaced (without a charset, httpx's parse of the header is skipped)."""
        if "charset" in self.headers.get("content-type", "").lower():
            return httpx.Response(self.status_code, headers=self.headers, content=self.content).text
        return self.content.decode("utf-8", "replace")


def _shutdown(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown: unblocks a recv() in another thread (TLS sockets included)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """One thread for the whole process that shuts the socket of every request still reading its answer
    at its deadline (a thread per request would cost more than AppsFlyer's whole per-event budget)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, socket.socket]] = {}
        self._tokens = 0
        self._thread: threading.Thread | None = None
        self._wakes_at = math.inf  # when the thread's current wait ends
        self.wakes = 0  # its rounds (each a wake-up: what a request's arming saves when it need not wake it)

    def arm(self, deadline: float, sock: socket.socket) -> int:
        """Shut `sock` at `deadline` (time.monotonic) unless disarmed first."""
        with self._cond:
            self._tokens += 1
            self._armed[self._tokens] = (deadline, sock)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="relay-request-deadlines", daemon=True)
                self._thread.start()
            if deadline < self._wakes_at:  # else the thread wakes before this deadline anyway, and sees it
                self._cond.notify()
            return self._tokens

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token in [t for t, (deadline, _) in self._armed.items() if deadline <= now]:
                    _shutdown(self._armed.pop(token)[1])
                soonest = min((deadline for deadline, _ in self._armed.values()), default=now + 60)
                self._wakes_at = now + max(soonest - now, 0.001)
                self.wakes += 1
                self._cond.wait(timeout=self._wakes_at - now)


_WATCHDOG = _Watchdog()


def _meanwhile(work: Callable[[], None] | None) -> None:
    """`work` while a sent request waits for its answer. The vendor has the request: only its answer may
    decide what became of it, so whatever `work` raises is dropped."""
    if work is not None:
        with contextlib.suppress(Exception):
            work()


def _tracer(
    timeouts: dict[str, float], left: Callable[[], float], while_waiting: Callable[[], None] | None
) -> Callable[[str, Any], None]:
    """httpcore's trace hook for one request: each phase gets the time that is left as its timeout, and
    `while_waiting` runs once the request is sent."""

    def trace(name: str, info: Any) -> None:
        if name == _SENT:
            _meanwhile(while_waiting)
        if name in _PHASES:  # the phase reads its timeout right after this: give it what is left
            timeouts["read"] = timeouts["write"] = left()

    return trace


def send_within(
    client: httpx.Client,
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes,
    seconds: float,
    connect_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    while_waiting: Callable[[], None] | None = None,
) -> Answer:
    """Send one request and read its whole answer within `seconds` of starting, or raise
    DeadlineExceeded (httpx.HTTPError for a failure before then), the answer read whole (up to MAX_BODY_BYTES).
    `while_waiting`: work that needs no answer, done once the request is sent and before its answer is read
    (in this thread, while the vendor takes its time; HTTP/1.1); it may not fail the request: what it
    raises is dropped, and the time it takes counts against the deadline."""
    deadline = clock() + seconds
    timeouts: dict[str, float] = {
        "connect": min(connect_seconds, seconds),
        "read": seconds,
        "write": seconds,
        "pool": seconds,
    }

    def left() -> float:
        rest = deadline - clock()
        if rest <= 0:
            raise DeadlineExceeded(f"no complete answer within {seconds:g} s")
        return rest

    extensions = {"timeout": timeouts, "trace": _tracer(timeouts, left, while_waiting)}
    try:
        with client.stream(
            method, _parsed(url), headers=dict(headers), content=content, extensions=extensions
        ) as response:
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            token = _WATCHDOG.arm(time.monotonic() + left(), sock) if sock is not None else None
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    left()
                    body += chunk
                    if len(body) >= MAX_BODY_BYTES:
                        break
            finally:
                if token is not None:
                    _WATCHDOG.disarm(token)
            return Answer(response.status_code, response.headers, bytes(body))
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
        if clock() >= deadline:  # the watchdog shut the socket, or the last read had the time that was left
            raise DeadlineExceeded(f"no complete answer within {seconds:g} s") from None
        raise


class InvocationDeadline:
    """The time left to a Lambda invocation, less what it keeps for its own bookkeeping at the end."""

    def __init__(self, remaining_ms: Callable[[], int], reserve_ms: int):
        self.remaining_ms = remaining_ms
        self.reserve_ms = reserve_ms

    def usable_ms(self) -> int:
        return self.remaining_ms() - self.reserve_ms

    def allows(self, ms: float) -> bool:
        """Whether something that may take `ms` can finish before the reserve starts."""
        return self.usable_ms() >= ms

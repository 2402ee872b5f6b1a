"""Deadlines: one total time limit per vendor request, and the invocation's own.

httpx's timeouts are per operation — a connect, one write, one read — so a vendor that drips its answer a
byte at a time holds a request far longer than any of them. `send_within` gives a request one deadline for
all of it (waiting for a pooled connection, connecting, sending, the whole response): each phase may only
take what is left, and a watchdog shuts the socket when the deadline passes while the body is being read.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
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


class DeadlineExceeded(Exception):
    """The request did not finish within its total deadline."""


def _shutdown(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown: unblocks a recv() in another thread (TLS sockets included)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def send_within(
    client: httpx.Client,
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes,
    seconds: float,
    connect_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """Send one request and read its whole answer within `seconds` of starting, or raise
    DeadlineExceeded (httpx.HTTPError for a failure before then). The returned response is fully read."""
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

    def trace(name: str, info: Any) -> None:
        if name in _PHASES:  # the phase reads its timeout right after this: give it what is left
            timeouts["read"] = timeouts["write"] = left()

    extensions = {"timeout": timeouts, "trace": trace}
    try:
        with client.stream(method, url, headers=dict(headers), content=content, extensions=extensions) as response:
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            watchdog = threading.Timer(left(), _shutdown, (sock,)) if sock is not None else None
            if watchdog is not None:
                watchdog.daemon = True
                watchdog.start()
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    left()
                    body += chunk
                    if len(body) >= MAX_BODY_BYTES:
                        break
            finally:
                if watchdog is not None:
                    watchdog.cancel()
            return httpx.Response(response.status_code, headers=response.headers, content=bytes(body))
    except httpx.HTTPError:
        if clock() >= deadline:  # the watchdog shut the socket: the deadline, not the vendor, ended it
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

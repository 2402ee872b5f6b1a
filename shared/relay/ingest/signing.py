"""Request signing for the ingest API.

Header: ``X-Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
Several ``v1=`` values may be sent (one per secret while a client rotates) and the ingest may hold
several active secrets (while the relay rotates): a request is valid when any ``v1`` matches any
secret. Comparison is constant-time; ``|now - t|`` must be within the tolerance (default 300 s).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

HEADER = "X-Relay-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only (str.isdigit also takes ² and ٣)


class SignatureError(Exception):
    """Why a signature was refused (never contains a secret or a digest). `diagnosis`: missing, malformed,
    milliseconds, stale or mismatch (relay.journey.refusals keeps it); `skew_seconds`: how far the signed
    time was from the relay's clock, when that is why."""

    def __init__(self, message: str, diagnosis: str = "malformed", skew_seconds: int | None = None):
        super().__init__(message)
        self.diagnosis, self.skew_seconds = diagnosis, skew_seconds


class SignatureMismatch(SignatureError):
    """A well-formed, timely signature that none of the configured secrets made: the one case a fresher
    copy of the secret (a rotation) can fix."""

    def __init__(self, message: str):
        super().__init__(message, "mismatch")


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    msg = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: str | Sequence[str], timestamp: int | None = None) -> str:
    """The header value a client sends with `body` (one ``v1=`` per secret)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys or not all(keys):
        raise ValueError("sign() needs at least one non-empty secret")
    t = int(time.time()) if timestamp is None else int(timestamp)
    return ",".join([f"t={t}", *(f"v1={_digest(k, t, body)}" for k in keys)])


def parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {HEADER} header: expected t=<unix seconds>,v1=<hex>")
        if key == "t":
            if timestamp is not None or not _SECONDS.fullmatch(value):
                millis = value.isascii() and value.isdigit() and len(value) == 13
                hint = "; this t looks like milliseconds" if millis else ""
                raise SignatureError(
                    f"malformed {HEADER} header: t must appear once, as unix seconds (1 to 12 ASCII digits){hint}",
                    "milliseconds" if millis else "malformed",
                )
            timestamp = int(value)
        elif key == "v1":
            if not _HEX64.fullmatch(value):
                raise SignatureError(f"malformed {HEADER} header: v1 must be 64 lower-case hex characters")
            sigs.append(value)
        # other schemes (v0, v2…) are ignored so that clients can send newer ones during upgrades
    if timestamp is None:
        raise SignatureError(f"malformed {HEADER} header: t=<unix seconds> is missing")
    if not sigs:
        raise SignatureError(f"malformed {HEADER} header: no v1 signature")
    return timestamp, sigs


def verify(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check `header` against the raw `body`; returns the signed timestamp or raises SignatureError."""
    if not header:
        raise SignatureError(f"missing {HEADER} header", "missing")
    keys = [s for s in secrets if s]
    if not keys:
        raise SignatureMismatch("no signing secret is configured")
    timestamp, sigs = parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        hint, diagnosis = "", "stale"
        if abs(current - timestamp / 1000) <= tolerance_seconds:
            hint, diagnosis = ": t looks like milliseconds; send unix seconds", "milliseconds"
        raise SignatureError(
            f"signature timestamp is outside the {tolerance_seconds} s tolerance{hint}",
            diagnosis,
            int(current - timestamp) if diagnosis == "stale" else None,
        )
    matched = False
    for key in keys:  # no early exit: the time taken does not tell which secret matched
        expected = _digest(key, timestamp, body)
        for sig in sigs:
            matched |= hmac.compare_digest(expected, sig)
    if not matched:
        raise SignatureMismatch(
            "no active signing secret made this signature over this body: sign the raw bytes you send, "
            "keyed with the secret's UTF-8 bytes, as lower-case hex"
        )
    return timestamp

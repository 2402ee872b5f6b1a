#!/usr/bin/env python3
"""S2S Relay client: sign a request body and POST it to the relay's ingest (Python 3.8+, standard library only).

As a library::

    from relay_client import send
    status, answer = send("https://…/v1/events", secret, body_bytes)
    status, journey = event_status("https://…/v1/events", secret, "order-1001")

As a command::

    relay_client.py --url URL --secret SECRET FILE.json      # or RELAY_URL / RELAY_SECRET
    relay_client.py --url URL --secret SECRET --status EVENT_ID

``--status`` asks what became of one event (GET /v1/events/{event_id}) and prints its journey: exit 0 when
the relay knows it, 1 when it does not (404) or refuses the request, 2 when it cannot be reached.

FILE.json is an ingest body, ``{"events": [...]}``, sent byte for byte as it is. The command prints the
relay's JSON answer, lists on stderr every event that was rejected or that a vendor found invalid, and
exits 0 on 2xx, 1 on 4xx, 2 when the relay cannot be reached or still answers 5xx after the retries.
A 503 is sent again, freshly signed, after its Retry-After (at most MAX_ATTEMPTS sends).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HEADER = "X-Relay-Signature"
MAX_ATTEMPTS = 5
MAX_RETRY_AFTER_SECONDS = 30


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The X-Relay-Signature value: ``t=<unix seconds>,v1=<lower-case hex HMAC-SHA256>`` of
    ``<t>.<body>``, keyed with the secret's UTF-8 bytes. Sign the exact bytes you send."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), str(t).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def status_path(event_id: str) -> str:
    """``/v1/events/`` and the event_id percent-encoded: every UTF-8 byte but ``A-Z a-z 0-9 - . _ ~``."""
    return "/v1/events/" + urllib.parse.quote(event_id, safe="")


def sign_status(event_id: str, secret: str, timestamp: int | None = None) -> str:
    """The X-Relay-Signature of GET /v1/events/{event_id}: the HMAC of ``<t>.GET <status_path(event_id)>``."""
    return sign(f"GET {status_path(event_id)}".encode(), secret, timestamp)


def event_status(url: str, secret: str, event_id: str, timeout: float = 30.0) -> tuple[int, dict]:
    """GET what became of `event_id`; `url` is the ingest URL (ending in /v1/events). Returns (status, JSON
    answer): 200 with the journey, 404 for an id the relay does not know. Raises OSError when unreachable."""
    target = url.rstrip("/") + status_path(event_id)[len("/v1/events") :]
    request = urllib.request.Request(target, method="GET", headers={HEADER: sign_status(event_id, secret)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())


def send(url: str, secret: str, body: bytes, timeout: float = 30.0, sleep=time.sleep) -> tuple[int, dict]:
    """POST `body`, signed anew for every send; a 503 is resent after its Retry-After. Returns the last
    (status, JSON answer). Raises OSError when the relay cannot be reached."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", HEADER: sign(body, secret)}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            status, answer, wait = error.code, _json(error.read()), error.headers.get("Retry-After")
        if status != 503 or attempt == MAX_ATTEMPTS:
            return status, answer
        sleep(min(float(wait) if wait and wait.strip().isdigit() else 1.0, MAX_RETRY_AFTER_SECONDS))
    raise AssertionError("unreachable")


def problems(answer: dict) -> list[str]:
    """One line per event the relay rejected, and per vendor that found an accepted event invalid."""
    lines = []
    for r in answer.get("rejected") or []:
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in r.get("errors") or [])
        lines.append(f"rejected events[{r.get('index')}] {r.get('event_id')}: {fields}")
    for a in answer.get("accepted") or []:
        for vendor, errors in (a.get("invalid") or {}).items():
            fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
            lines.append(f"invalid for {vendor}: events[{a.get('index')}] {a.get('event_id')}: {fields}")
    return lines


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"answer": value}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sign FILE.json and POST it to the S2S Relay ingest.")
    parser.add_argument("file", metavar="FILE.json", nargs="?", help='an ingest body {"events": [...]}')
    parser.add_argument("--status", metavar="EVENT_ID", help="print what became of this event instead of sending")
    parser.add_argument("--url", default=os.environ.get("RELAY_URL"), help="the ingest URL (RELAY_URL)")
    parser.add_argument("--secret", default=os.environ.get("RELAY_SECRET"), help="the signing secret (RELAY_SECRET)")
    parser.add_argument("--print-signature", action="store_true", help="print the header value, send nothing")
    parser.add_argument("--timestamp", type=int, help="sign with this unix time (with --print-signature)")
    args = parser.parse_args(argv)
    if not args.secret or not (args.url or args.print_signature):
        parser.error("--url and --secret (or RELAY_URL and RELAY_SECRET) are required")
    if args.status is not None:
        return _status(args)
    if not args.file:
        parser.error("FILE.json (or --status EVENT_ID) is required")
    try:
        with open(args.file, "rb") as f:
            body = f.read()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.print_signature:
        print(sign(body, args.secret, args.timestamp))
        return 0
    try:
        status, answer = send(args.url, args.secret, body)
    except OSError as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    for line in problems(answer):
        print(line, file=sys.stderr)
    return 0 if 200 <= status < 300 else 1 if 400 <= status < 500 else 2


def _status(args: argparse.Namespace) -> int:
    if args.print_signature:
        print(sign_status(args.status, args.secret, args.timestamp))
        return 0
    try:
        status, answer = event_status(args.url, args.secret, args.status)
    except OSError as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    if status != 200:
        print(f"{status}: {answer.get('error', '')}", file=sys.stderr)
    return 0 if status == 200 else 1 if 400 <= status < 500 else 2


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""S2S Relay client: sign a request body and POST it to the relay's ingest (Python 3.8+, standard library only).

As a library::

    from relay_client import send
    status, answer = send("https://…/v1/events", secret, body_bytes)
    status, journey = event_status("https://…/v1/events", secret, "order-1001")

As a command::

    relay_client.py --url URL --secret SECRET FILE.json      # or RELAY_URL / RELAY_SECRET
    relay_client.py --url URL --secret SECRET --status EVENT_ID
    relay_client.py --source eu ...                          # or RELAY_SOURCE: sign as the source `eu`

``--status`` asks what became of one event (GET /v1/events/{event_id}) and prints its journey: exit 0 when
the relay knows it, 1 when it does not (404) or refuses the request, 2 when it cannot be reached.

FILE.json is an ingest body, ``{"events": [...]}``, sent byte for byte as it is. The command prints the
relay's JSON answer, lists on stderr every event that was rejected or that a vendor found invalid, and
exits 0 on 2xx, 1 on 4xx, 2 when the relay cannot be reached or still answers 5xx after the retries.
A 503 is sent again, freshly signed, after its Retry-After (at most MAX_ATTEMPTS sends): delay-seconds
(ASCII digits, leading zeros allowed) or an HTTP-date (IMF-fixdate, RFC 850 or asctime, RFC 9110 5.6.7);
1 s when it is missing or malformed; never more than ``--max-retry-wait`` (30 s). ``--retry-wait VALUE``
prints the seconds a Retry-After of VALUE makes it wait (at ``--timestamp``, default now), sending nothing.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HEADER = "X-Relay-Signature"
SOURCE_HEADER = "X-Relay-Source"  # the source that signs, when it is not `default` (docs/connections.md)
MAX_ATTEMPTS = 5
MAX_RETRY_AFTER_SECONDS = 30
DEFAULT_RETRY_SECONDS = 1  # a 503 without a usable Retry-After
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HTTP_DATES = (  # RFC 9110 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime forms
    re.compile(r"[A-Z][a-z]{2}, ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"),
    re.compile(r"[A-Z][a-z]+, ([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"),
    re.compile(r"[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ 0-9][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})"),
)


def http_date(text: str, now: float) -> int | None:
    """Unix seconds of an HTTP-date; None when `text` is not one. A two-digit year more than 50 years ahead
    of `now` is the most recent past year with those digits (RFC 9110 5.6.7)."""
    for index, pattern in enumerate(_HTTP_DATES):
        m = pattern.fullmatch(text)
        if not m:
            continue
        if index == 2:
            month, day, hh, mm, ss, year = m.groups()
        else:
            day, month, year, hh, mm, ss = m.groups()
        if month not in MONTHS:
            return None
        y = int(year)
        if index == 1:
            this_year = time.gmtime(now).tm_year
            y += this_year // 100 * 100
            if y > this_year + 50:
                y -= 100
        fields = (y, MONTHS.index(month) + 1, int(day), int(hh), int(mm), int(ss))
        if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] < 61):
            return None
        return calendar.timegm((*fields, 0, 0, 0))
    return None


def retry_wait(value: str | None, now: float | None = None, cap: float = MAX_RETRY_AFTER_SECONDS) -> float:
    """Seconds to wait before resending a 503 answered with `Retry-After: value` (None: no such header)."""
    text = (value or "").strip(" \t")
    now = time.time() if now is None else now
    if text and text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"  # leading zeros allowed; a number of more than 9 digits is the cap
        wait = float(int(digits)) if len(digits) <= 9 else cap
    elif (at := http_date(text, now)) is not None:
        wait = max(0.0, at - now)
    else:
        wait = DEFAULT_RETRY_SECONDS
    return min(wait, cap)


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


def _source(source: str | None) -> dict[str, str]:
    return {SOURCE_HEADER: source} if source else {}


def event_status(
    url: str, secret: str, event_id: str, timeout: float = 30.0, source: str | None = None
) -> tuple[int, dict]:
    """GET what became of `event_id` (`source`: the source whose event it is, signing with its secret); `url`
    is the ingest URL (ending in /v1/events). Returns (status, JSON answer): 200 with the journey, 404 for an
    id the relay does not know. Raises OSError when unreachable."""
    target = url.rstrip("/") + status_path(event_id)[len("/v1/events") :]
    headers = {HEADER: sign_status(event_id, secret), **_source(source)}
    request = urllib.request.Request(target, method="GET", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())


def send(
    url: str,
    secret: str,
    body: bytes,
    timeout: float = 30.0,
    sleep=time.sleep,
    max_wait: float = MAX_RETRY_AFTER_SECONDS,
    log=lambda line: None,
    source: str | None = None,
) -> tuple[int, dict]:
    """POST `body`, signed anew for every send (`source`: the source signing, when not `default`); a 503 is
    resent after its Retry-After (`retry_wait`, at most `max_wait` seconds). Returns the last (status, JSON
    answer). Raises OSError when the relay cannot be reached."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        headers = {"Content-Type": "application/json", HEADER: sign(body, secret), **_source(source)}
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            status, answer, wait = error.code, _json(error.read()), error.headers.get("Retry-After")
        if status != 503 or attempt == MAX_ATTEMPTS:
            return status, answer
        seconds = retry_wait(wait, cap=max_wait)
        log(f"503: sending again in {seconds:g} s (Retry-After: {wait if wait is not None else 'none'})")
        sleep(seconds)
    raise AssertionError("unreachable")


def problems(answer: dict) -> list[str]:
    """One line per event the relay rejected, and per vendor that found an accepted event invalid."""
    lines = []
    for r in answer.get("rejected") or []:
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in r.get("errors") or [])
        lines.append(f"rejected events[{r.get('index')}] {r.get('event_id')}: {fields}")
    for a in answer.get("accepted") or []:
        for vendor, errors in sorted((a.get("invalid") or {}).items()):  # by name, as every client lists them
            fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
            lines.append(f"invalid for {vendor}: events[{a.get('index')}] {a.get('event_id')}: {fields}")
    return lines


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"answer": value}


HELP = """\
usage: relay_client.py [options] FILE.json
       relay_client.py [options] --status EVENT_ID

Sign FILE.json (an ingest body, {"events": [...]}) and POST it to the S2S Relay ingest, or ask what
became of one event. Prints the relay's JSON answer, and on stderr each event it rejected or a vendor
found invalid.

options:
  --url URL                 the ingest URL (or RELAY_URL)
  --secret SECRET           the signing secret (or RELAY_SECRET)
  --source NAME             sign as this source, not default (or RELAY_SOURCE)
  --status EVENT_ID         print what became of this event instead of sending
  --print-signature         print the header value, send nothing
  --timestamp T             sign at this unix time (with --print-signature or --retry-wait)
  --max-retry-wait SECONDS  the longest wait a 503's Retry-After may ask (default 30)
  --retry-wait VALUE        print the wait a Retry-After of VALUE makes, send nothing
  -h, --help                print this help

exit: 0 on 2xx, 1 on 4xx, 2 when the relay cannot be reached or answers 5xx after the retries
"""


class _Help(argparse.Action):
    """-h, --help: the help every client prints (clients/README.md), then exit 0."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(HELP, end="")
        parser.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(usage=HELP.split("\n\n")[0][len("usage: ") :], add_help=False)
    parser.add_argument("-h", "--help", action=_Help, nargs=0, help="print this help")
    parser.add_argument("file", metavar="FILE.json", nargs="?", help='an ingest body {"events": [...]}')
    parser.add_argument("--status", metavar="EVENT_ID", help="print what became of this event instead of sending")
    parser.add_argument("--url", default=os.environ.get("RELAY_URL"), help="the ingest URL (RELAY_URL)")
    parser.add_argument("--secret", default=os.environ.get("RELAY_SECRET"), help="the signing secret (RELAY_SECRET)")
    parser.add_argument(
        "--source", default=os.environ.get("RELAY_SOURCE"), help="sign as this source, not `default` (RELAY_SOURCE)"
    )
    parser.add_argument("--print-signature", action="store_true", help="print the header value, send nothing")
    parser.add_argument("--timestamp", type=int, help="sign with this unix time (with --print-signature)")
    parser.add_argument("--max-retry-wait", type=float, default=MAX_RETRY_AFTER_SECONDS, metavar="SECONDS")
    parser.add_argument(
        "--retry-wait", metavar="VALUE", help="print the wait a Retry-After of VALUE makes, send nothing"
    )
    args = parser.parse_args(argv)
    if args.retry_wait is not None:
        print(f"{retry_wait(args.retry_wait, args.timestamp, args.max_retry_wait):g}")
        return 0
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
        log = lambda line: print(line, file=sys.stderr)  # noqa: E731
        status, answer = send(args.url, args.secret, body, max_wait=args.max_retry_wait, log=log, source=args.source)
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
        status, answer = event_status(args.url, args.secret, args.status, source=args.source)
    except OSError as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    if status != 200:
        print(f"{status}: {answer.get('error', '')}", file=sys.stderr)
    return 0 if status == 200 else 1 if 400 <= status < 500 else 2


if __name__ == "__main__":
    sys.exit(main())

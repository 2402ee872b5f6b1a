"""The local stack's console (`relay dev`): whole lines only, each log line naming the function that wrote
it, and one line per ingest request.

Lambda runs one invocation per process; the local stack runs every function's invocations side by side in
one process, sharing the handlers' one Powertools Logger, whose `inject_lambda_context` keys are the
process's. `FunctionNames` gives each record the keys of the invocation whose thread wrote it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TextIO

_current = threading.local()  # the invocation a thread runs: (function name, request id)


class Console:
    """Writes whole lines: one write each, under a lock, so that lines from several threads never run
    together (print writes the text and its newline apart)."""

    def __init__(self, out: TextIO | None = None):
        self.out = out
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        out = self.out or sys.stdout
        with self._lock:
            out.write(line + "\n")
            out.flush()


def invoking(function_name: str) -> str:
    """Mark the calling thread as running an invocation of `function_name`; returns its request id."""
    request_id = str(uuid.uuid4())
    _current.invocation = (function_name, request_id)
    return request_id


def done() -> None:
    _current.invocation = None


class FunctionNames(logging.Filter):
    """Gives each log record the function (and invocation) of the thread that wrote it: the thread marked by
    `invoking`, or a vendor function's send pool (`<vendor>-send_<n>`, named in `pools`)."""

    def __init__(self, pools: Mapping[str, str], arn: Callable[[str], str]):
        super().__init__()
        self.pools, self.arn = pools, arn

    def filter(self, record: logging.LogRecord) -> bool:
        invocation = getattr(_current, "invocation", None)
        if invocation is None:
            vendor = threading.current_thread().name.split("-send", 1)[0]
            invocation = (self.pools[vendor], None) if vendor in self.pools else None
        if invocation is not None:
            name, request_id = invocation
            record.function_name, record.function_arn = name, self.arn(name)
            record.function_request_id = request_id
            if name != "IngestFunction":
                record.correlation_id = None  # the ingest's, set on the shared logger; not this function's
        return True


def ingest_line(method: str, path: str, response: Mapping[str, Any]) -> str:
    """One ingest request for the console: its status, its events, or why it was refused."""
    status = response.get("statusCode", 0)
    try:
        body = json.loads(response.get("body") or "{}")
    except ValueError:
        body = {}
    if method == "POST" and "accepted" in body:
        accepted, rejected = len(body["accepted"]), len(body["rejected"])
        duplicates = sum(1 for a in body["accepted"] if a.get("duplicate"))
        again = f", {duplicates} duplicate" if duplicates else ""
        counts = f"{accepted} accepted{again}, {rejected} rejected"
        line = f"{'ingest':<9} {status}  {accepted + rejected:>3} event(s)  {counts}"
    elif method == "POST":
        line = f"{'ingest':<9} {status}  {body.get('reason') or 'error'}: {body.get('error', '')}"
    else:
        line = f"{'ingest':<9} {status}  {method} {path}"
        if status >= 400:
            line += f"  {body.get('reason') or ''}: {body.get('error', '')}".rstrip(": ")
    if status >= 400 and body.get("request_id"):
        line += f"  (request {body['request_id']})"
    return line

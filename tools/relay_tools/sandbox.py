"""Vendor sandboxes for the local stack: loopback HTTP endpoints that check each request against the
vendors' documented rules (VENDORS.md), answer as the vendor does (200 / 400 / 401), and keep what they
received. The checks are written from the vendor documents, independently of the relay's mappers (only
the documented event-name lists are shared with them), so a mapper bug shows up as a sandbox 400.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from relay.models.config import RelayConfig
from relay.models.event_names import ADROLL_EVENT_NAMES as ADROLL_NAMES
from relay.models.event_names import APPLOVIN_EVENT_NAMES as APPLOVIN_NAMES
from relay.models.event_names import APPLOVIN_RESTRICTED_EVENT_NAMES
from relay.models.names import is_connection, vendor_of
from relay_tools.faults import Fault, FaultPlan

APPLOVIN_IDS = ("aleid", "axwrt", "alart", "client_id", "user_id", "email", "phone")
AF_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")
AF_ID = re.compile(r"\d{13}-\d+")
FPC = re.compile(r"[0-9a-fA-F]{32}-\d{13}")
HEX64 = re.compile(r"[0-9a-f]{64}")


class Refusal(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Received:
    vendor: str
    status: int
    events: int
    path: str
    message: str
    at: float
    body: Any = field(repr=False, default=None)
    connection: str = ""  # the connection whose sandbox endpoint took it (its vendor alone: the default one)
    url: str = ""  # the path with its query, as the relay sent it

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "body"}


def _http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).hostname)


def check_applovin(config: Any, query: dict[str, list[str]], headers: Any, body: Any) -> int:
    if headers.get("Authorization") != config.api_key.get_secret_value():
        raise Refusal(401, "Authentication failed")
    if query.get("pixel_id") != [config.pixel_id]:
        raise Refusal(400, "unknown pixel_id")
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or not 1 <= len(events) <= 100:
        raise Refusal(400, "events must be a list of 1 to 100 events")
    restricted = config.mode == "restricted_lead_gen"
    for i, e in enumerate(events):
        ud = e.get("user_data") or {}
        problems = [
            e.get("name") not in (APPLOVIN_RESTRICTED_EVENT_NAMES if restricted else APPLOVIN_NAMES) and "name",
            not (isinstance(e.get("event_time"), int) and 10**12 <= e["event_time"] < 10**13) and "event_time (ms)",
            not _http_url(e.get("event_source_url")) and "event_source_url",
            "data" not in e and "data",
            e.get("name") == "generate_lead" and not {"currency", "value"} <= set(e.get("data") or {}) and "data",
            not ud.get("client_ip_address") and "client_ip_address",
            not ud.get("client_user_agent") and "client_user_agent",
            ud.get("esi") not in ("web", "app") and "esi",
            not any(ud.get(k) for k in APPLOVIN_IDS) and "identifier",
        ]
        for key in ("email", "phone"):  # the relay promises hashes only
            if key in ud and not HEX64.fullmatch(str(ud[key])):
                problems.append(f"{key} not hashed")
        if restricted:
            path = urlsplit(e.get("event_source_url", "")).path
            problems += [
                path not in ("", "/") and "event_source_url has a path",
                ("email" in ud or "phone" in ud) and "email/phone in restricted mode",
                "user_id" in ud and not str(ud["user_id"]).isdigit() and "user_id not numeric",
            ]
        bad = [p for p in problems if p]
        if bad:
            raise Refusal(400, f"events[{i}]: invalid {', '.join(bad)}; entire batch is dropped")
    return len(events)


def check_appsflyer(config: Any, app_id: str, headers: Any, raw: bytes, body: Any) -> int:
    if headers.get("authentication") != config.key.get_secret_value():
        raise Refusal(401, "Unauthorized")
    if len(raw) > 1024:
        raise Refusal(400, "Payload too large")
    if not isinstance(body, dict):
        raise Refusal(400, "Payload is missing or failed to parse")
    if not AF_ID.fullmatch(str(body.get("appsflyer_id", ""))):
        raise Refusal(400, "appsflyer_id is a mandatory field")
    if not body.get("eventName") or not isinstance(body.get("eventValue"), str):
        raise Refusal(400, "eventName and eventValue (a string) are mandatory")
    if body["eventValue"]:
        try:
            values = json.loads(body["eventValue"])
        except ValueError:
            raise Refusal(400, "eventValue is not JSON") from None
        if not all(isinstance(v, str | list) for v in values.values()):
            raise Refusal(400, "eventValue values must be strings")
    if "eventTime" in body and not AF_TIME.fullmatch(str(body["eventTime"])):
        raise Refusal(400, "eventTime must be yyyy-mm-dd hh:mm:ss.sss")
    if len(str(body.get("ip", ""))) > 16:
        raise Refusal(400, "ip: at most 16 characters")
    for key in ("email", "phone"):
        if key in body:
            raise Refusal(400, f"clear-text {key} is not a field")
    if app_id.isdigit():
        return 0  # AppsFlyer's trap: an iOS id without "id" gets 200 OK and records nothing
    if app_id not in (config.ios_app_id, config.android_app_id):
        raise Refusal(400, "app_id")
    return 1


def check_adroll(config: Any, query: dict[str, list[str]], headers: Any, body: Any) -> int:
    if headers.get("Authorization") != f"Token {config.token.get_secret_value()}":
        raise Refusal(401, "Unauthorized")
    if query.get("advertisable") != [config.advertisable_eid]:
        raise Refusal(400, "unknown advertisable")
    if not isinstance(body, list) or not 1 <= len(body) <= 100:
        raise Refusal(400, "body must be an array of 1 to 100 events")
    for i, e in enumerate(body):
        ids = e.get("identifiers") or {}
        problems = [
            e.get("advertisable_eid") != config.advertisable_eid and "advertisable_eid",
            e.get("pixel_eid") != config.pixel_eid and "pixel_eid",
            e.get("event_name") not in ADROLL_NAMES and "event_name",
            not _http_url(e.get("page_location")) and "page_location",
            not e.get("ip") and "ip",
            not FPC.fullmatch(str(ids.get("first_party_cookie", ""))) and "identifiers.first_party_cookie",
            "email" in ids and "clear-text email",
            "timestamp" in e
            and not (isinstance(e["timestamp"], int | float) and e["timestamp"] < 10**11)
            and "timestamp (seconds)",
            "external_data" in e and not isinstance(e["external_data"], str) and "external_data (a JSON string)",
        ]
        bad = [p for p in problems if p]
        if bad:
            raise Refusal(400, f"[{i}]: invalid {', '.join(bad)}")
    return len(body)


class _Server(ThreadingHTTPServer):
    # a listen backlog for AppsFlyer's 20 requests in flight per function (socketserver's default, 5, makes
    # the kernel drop connection attempts, each then retried a second later)
    request_queue_size = 128


class Sandboxes:
    """One loopback HTTP server for the three vendors: /applovin/v1/event, /appsflyer/inappevent/<app>,
    /adroll/api; GET /_sandbox/requests lists what was received. With a FaultPlan it is the fault-
    injecting vendor double of `relay soak` (relay.faults)."""

    def __init__(self, config: RelayConfig, port: int = 0, faults: FaultPlan | None = None):
        self.config = config
        self.faults = faults
        self.received: list[Received] = []
        self.lock = threading.Lock()
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: relay dev prints its own lines
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                if parts.path != "/_sandbox/requests":
                    return self._answer(404, {"error": "not found"})
                vendor = parse_qs(parts.query).get("vendor", [None])[0]
                return self._answer(200, [r.summary() | {"body": r.body} for r in sandbox.requests(vendor)])

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                vendor = vendor_of(unquote(urlsplit(self.path).path.strip("/").split("/")[0]))
                fault = sandbox.faults.pick(vendor) if sandbox.faults else None
                if fault is not None and fault.processed:
                    time.sleep(fault.hold_seconds)  # then the vendor's own answer
                elif fault is not None:
                    return self._fault(fault)
                status, message, vendor, events = sandbox.handle(self.path, self.headers, raw)
                self._answer(status, {"message": message} if vendor != "appsflyer" else message, vendor, events)

            def _fault(self, fault: Fault) -> None:
                """Answer without processing (recorded with status 0 for a timeout or a reset)."""
                path = urlsplit(self.path).path
                with sandbox.lock:
                    sandbox.received.append(
                        Received(
                            path.strip("/").split("/")[0], fault.status, 0, path, f"fault: {fault.kind}", time.time()
                        )
                    )
                if fault.kind == "drip":
                    return self._drip(fault)
                if fault.kind == "timeout":
                    time.sleep(fault.hold_seconds)  # the relay has given up by now
                if fault.kind in ("timeout", "reset"):
                    # RST instead of FIN: the client sees a connection reset (or its own timeout)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                data = b'{"message": "injected fault"}'
                self.send_response(fault.status)
                if fault.retry_after:
                    self.send_header("Retry-After", str(fault.retry_after))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drip(self, fault: Fault) -> None:
                """200 at once, then the body a byte at a time over `hold_seconds`: each byte well within any
                read timeout, the whole answer past the relay's deadline (which must hang up)."""
                data = b'{"message": "OK, eventually"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.flush()
                try:
                    for i in range(len(data)):
                        time.sleep(fault.hold_seconds / len(data))
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                except OSError:  # the relay hung up, as it should
                    self.close_connection = True

            def _answer(self, status: int, payload: Any, vendor: str = "", events: int = 0) -> None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client hung up first (its deadline passed): nothing to answer
                    self.close_connection = True

        self.server = _Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="sandboxes", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def endpoints(self) -> dict[str, str]:
        """Each connection's sandbox endpoint, by connection id: its path starts with the id."""
        paths = {"applovin": "v1/event", "appsflyer": "", "adroll": "api"}
        out = {}
        for connection in self.config.sections():
            path = paths[vendor_of(connection)]
            out[connection] = f"{self.url}/{connection}" + (f"/{path}" if path else "")
        return out

    def start(self) -> Sandboxes:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, vendor: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if vendor in (None, r.vendor)]

    def handle(self, path: str, headers: Any, raw: bytes) -> tuple[int, str, str, int]:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        connection = segments[0] if segments else ""
        vendor = vendor_of(connection)
        events = 0
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        try:
            section = self.config.connection(connection) if is_connection(connection) else None
            if section is None:
                raise Refusal(404, "unknown vendor or connection")
            if vendor == "applovin" and segments[1:] == ["v1", "event"]:
                events = check_applovin(section, query, headers, body)
            elif vendor == "appsflyer" and len(segments) == 3 and segments[1] == "inappevent":
                app_id = segments[2]
                events = check_appsflyer(section, app_id, headers, raw, body)
            elif vendor == "adroll" and segments[1:] == ["api"]:
                events = check_adroll(section, query, headers, body)
            else:
                raise Refusal(404, "unknown path")
            rejected = self.faults.rejected(vendor, body) if self.faults else []
            if rejected:
                self.faults.count("invalid")  # type: ignore[union-attr]  # requests refused
                batch = "; entire batch is dropped" if vendor != "appsflyer" else ""
                raise Refusal(400, f"invalid event {', '.join(rejected)}{batch}")
            status, message = 200, "OK"
        except Refusal as exc:
            status, message = exc.status, str(exc)
        with self.lock:
            self.received.append(
                Received(vendor, status, events, parts.path, message, time.time(), body, connection, path)
            )
        return status, message, vendor, events

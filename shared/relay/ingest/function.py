"""IngestFunction's logic: POST /v1/events in, the events published to SNS, an HTTP API response out.

`functions/ingest/app.py` decorates a `lambda_handler` that calls `handle_request` with the container's
`IngestFunction` (`ingest_function()`, made once); tests and the local stack pass their own.

The function has two routes (POST /v1/events, GET /v1/events/{event_id}: the only ones API Gateway sends
it) and reads the raw body (the signature covers the exact bytes), so it routes by hand: Powertools'
APIGatewayHttpResolver would import every event handler of the package at each cold start for two routes.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable
from typing import Any

from relay.aws.ledger import INGEST, DeliveryLedger
from relay.aws.replay import ReplayGuard
from relay.aws.secrets import SecretRefresh, load_ingest_config
from relay.aws.sns import SnsPublisher
from relay.ingest.archiving import Archiver
from relay.ingest.refused import keep, refusal
from relay.ingest.request import Ingest, IngestResult
from relay.ingest.status import REQUESTS_PREFIX, STATUS_PREFIX, event_status, request_status
from relay.journey import JourneyTable
from relay.journey.refusals import RefusalLog
from relay.models.config import ConfigError, RelayConfig
from relay.models.environment import IngestEnvironment, get_environment, read_environment
from relay.models.event import build_validators
from relay.observability import MetricUnit, logger, metrics

build_validators()  # the event models defer theirs (vendor functions never need them): the ingest needs them at once

ROUTE = ("POST", "/v1/events")
MISCONFIGURED = "the relay is misconfigured; its operators have been alerted"
SERVER_ERRORS = "IngestServerErrors"  # every 5xx answered (template.yaml: IngestServerErrorAlarm)


def _json_response(
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) response; an error's body names its `request_id` (API Gateway's: the
    client can quote it, or GET /v1/requests/{request_id} what the relay kept of a refusal) and a refusal's
    its `reason` (relay.journey.refusals.REASONS)."""
    if status >= 400 and request_id:
        body = {**body, "request_id": request_id}
    if reason is not None:
        body = {**body, "reason": reason}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _route(event: dict[str, Any]) -> tuple[str, str]:
    """(method, path) of an HTTP API event; the path without a named stage's prefix."""
    http = (event.get("requestContext") or {}).get("http") or {}
    path = event.get("rawPath") or http.get("path") or ""
    stage = (event.get("requestContext") or {}).get("stage") or "$default"
    if stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1 :]
    return str(http.get("method", "")).upper(), path


class IngestFunction:
    """What the ingest's invocations share: its environment, configuration, SNS, replay guard and ledger.

    Each dependency is made on first use unless injected (`load_config` replaces the environment and
    Secrets Manager; `secrets_client`: the Secrets Manager client). A signature that no cached secret made
    re-reads the signing secret once (`secret_refresh`: at most once a minute) and is checked again: a
    client that signs with a rotated secret is not refused until the cache expires."""

    def __init__(
        self,
        environment: IngestEnvironment | None = None,
        load_config: Callable[[], RelayConfig] | None = None,
        publisher: SnsPublisher | None = None,
        clock: Callable[[], float] = time.time,
        replay_guard: ReplayGuard | None = None,
        secret_refresh: SecretRefresh | None = None,
        ledger: DeliveryLedger | None = None,
        secrets_client: Any = None,
        archiver: Archiver | None = None,
        refusals: RefusalLog | None = None,
    ):
        self._environment = environment
        self._load_config = load_config
        self._publisher, self._guard, self._ledger = publisher, replay_guard, ledger
        self._secrets_client = secrets_client
        self.clock = clock
        self.refresh = secret_refresh or SecretRefresh()
        self._ingests: dict[tuple[str, ...], Ingest] = {}
        self._journeys: JourneyTable | None = None
        self._archiver = archiver
        self._refusals = refusals

    @property
    def environment(self) -> IngestEnvironment:
        if self._environment is None:
            self._environment = read_environment(IngestEnvironment)
        return self._environment

    @property
    def journeys(self) -> JourneyTable:
        """The events' journeys: the ledger's table, client and horizon (relay.journey)."""
        if self._journeys is None:
            ledger = self._parts()[2]
            self._journeys = JourneyTable(
                ledger.table_name, ledger.client, clock=self.clock, horizon_seconds=ledger.horizon_seconds
            )
        return self._journeys

    @property
    def refusals(self) -> RefusalLog:
        """What the function keeps of the requests it refuses (relay.journey.refusals), in the ledger's table."""
        if self._refusals is None:
            self._refusals = RefusalLog(self.journeys)
        return self._refusals

    @property
    def archiver(self) -> Archiver | None:
        """The archive's publisher (relay.ingest.archiving), when the stack has an archive (RELAY_ARCHIVE)."""
        if self._archiver is None and self.environment.archive:
            self._archiver = Archiver(self._parts()[0])
        return self._archiver

    def _parts(self) -> tuple[SnsPublisher, ReplayGuard | None, DeliveryLedger]:
        if self._publisher is None:
            self._publisher = SnsPublisher(self.environment.topic_arn)
        if self._guard is None and self.environment.replay_table:
            self._guard = ReplayGuard(self.environment.replay_table)
        if self._ledger is None:
            self._ledger = DeliveryLedger.for_function(INGEST, self.environment, clock=self.clock)
        return self._publisher, self._guard, self._ledger

    def ingest(self, force: bool = False) -> Ingest:
        """The Ingest for the current signing secrets (`force`: read them anew); made again when they change."""
        if self._load_config is not None:
            config = self._load_config()
        else:
            config = load_ingest_config(self.environment, self._secrets_client, refresh=force)
        key = tuple(config.secret_values())
        if key not in self._ingests:  # the secret changed (rotation): rebuild once
            self._ingests.clear()
            publisher, guard, ledger = self._parts()
            archiver = self.archiver
            self._ingests[key] = Ingest(
                config, publisher, self.clock, guard, ledger=ledger, journeys=self.journeys, archiver=archiver
            )
        return self._ingests[key]


@functools.cache
def ingest_function() -> IngestFunction:
    """The container's IngestFunction, from its environment."""
    return IngestFunction(get_environment(IngestEnvironment))


def _request_id(event: dict[str, Any]) -> str:
    return str((event.get("requestContext") or {}).get("requestId") or "")


def handle_request(event: dict[str, Any], context: Any, function: IngestFunction) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) request in, its response out."""
    method, path = _route(event)
    request_id = _request_id(event)
    if method == "GET" and path.startswith((STATUS_PREFIX, REQUESTS_PREFIX)):
        return get_status(event, path, function)
    if (method, path) != ROUTE:
        routes = "POST /v1/events, GET /v1/events/{event_id} or GET /v1/requests/{request_id}"
        return _json_response(404, {"error": f"not found: {routes}"}, request_id=request_id)
    try:
        result = post_events(event, context.get_remaining_time_in_millis, function)
    except ConfigError as exc:
        logger.error("relay configuration unusable", extra={"errors": [str(e) for e in exc.errors]})
        metrics.add_metric(SERVER_ERRORS, MetricUnit.Count, 1)
        return _json_response(500, {"error": MISCONFIGURED}, request_id=request_id)
    record(result, request_id)
    if result.reason is not None:
        answer = (result.status, result.body, result.reason)
        refused_request(event, answer, function, result.signature)
    return _json_response(result.status, result.body, result.headers or None, request_id, result.reason)


def refused_request(
    event: dict[str, Any],
    answer: tuple[int, dict[str, Any], str],
    function: IngestFunction,
    signature: dict[str, Any] | None = None,
    event_ids: list[str] | None = None,
) -> None:
    """Keep and count a refused request (relay.ingest.refused): never its body, nor a value it held. Under a
    flood (the log's budget spent) it is counted only, its body not read for event ids."""
    if function.refusals.budget.available() < 1:
        keep(function.refusals, answer[2])
        return
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    method = _route(event)[0]
    try:
        config = function.ingest().config
    except ConfigError:  # the refusal was answered from a configuration read earlier; nothing more to say
        return
    request = (_request_id(event), method, raw, headers)
    keep(function.refusals, answer[2], refusal(answer, request, config, function.clock(), signature, event_ids))


def post_events(event: dict[str, Any], remaining_ms: Callable[[], int], function: IngestFunction) -> IngestResult:
    """Verify, validate, route and publish the request's events; a secret mismatch re-reads the secret once."""
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    ingest = function.ingest()
    context = event.get("requestContext") or {}
    origin = {"request_id": context.get("requestId"), "source_ip": (context.get("http") or {}).get("sourceIp")}
    result = ingest.handle(raw, headers, remaining_ms, origin)
    fresh = refreshed(function, ingest) if result.secret_mismatch else None
    # the secret was rotated: check the signature against the new one
    return fresh.handle(raw, headers, remaining_ms, origin) if fresh is not None else result


def refreshed(function: IngestFunction, ingest: Ingest) -> Ingest | None:
    """After a signature no cached secret made: the Ingest for the signing secret read anew (at most once a
    minute per container, SecretRefresh), when it changed; None when it did not or cannot be read now."""
    function.refresh.due()
    if not function.refresh.take():
        return None
    try:
        fresh = function.ingest(force=True)
    except ConfigError:  # the secret cannot be read right now: the refusal stands (a 401, not a 500)
        logger.warning("could not read the signing secret again after a signature mismatch")
        return None
    return fresh if fresh is not ingest else None


def get_status(event: dict[str, Any], path: str, function: IngestFunction) -> dict[str, Any]:
    """GET /v1/events/{event_id} (the event's journey) or GET /v1/requests/{request_id} (a refused request),
    signed like a POST over "<t>.GET <path>". A signature no cached secret made re-reads the signing secret
    once, as for a POST."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    params = event.get("pathParameters")
    request_id = _request_id(event)
    try:
        ingest = function.ingest()
    except ConfigError as exc:
        logger.error("relay configuration unusable", extra={"errors": [str(e) for e in exc.errors]})
        metrics.add_metric(SERVER_ERRORS, MetricUnit.Count, 1)
        return _json_response(500, {"error": MISCONFIGURED}, request_id=request_id)
    requests = path.startswith(REQUESTS_PREFIX)
    read, store = (request_status, function.refusals) if requests else (event_status, function.journeys)
    result = read(path, headers, ingest.config, store, function.clock(), params)
    fresh = refreshed(function, ingest) if result.secret_mismatch else None
    if fresh is not None:
        result = read(path, headers, fresh.config, store, function.clock(), params)
    if result.status >= 500:
        metrics.add_metric(SERVER_ERRORS, MetricUnit.Count, 1)
    logger.info("status request", extra={"status": result.status, "request_id": request_id})
    if result.reason is not None:
        answer = (result.status, result.body, result.reason)
        refused_request(event, answer, function, result.signature, result.event_ids or [])
    retry = {"Retry-After": "1"} if result.status == 503 else None
    return _json_response(result.status, result.body, retry, request_id, result.reason)


def record(result: IngestResult, request_id: str = "") -> None:
    """The request's metrics and its log line: counts, and the fields each rejected event broke."""
    if result.status >= 500:
        metrics.add_metric(SERVER_ERRORS, MetricUnit.Count, 1)
    metrics.add_metric("EventsReceived", MetricUnit.Count, result.received)
    metrics.add_metric("EventsRejected", MetricUnit.Count, result.rejected)
    if result.duplicates:
        metrics.add_metric("DuplicateEvents", MetricUnit.Count, result.duplicates)
    if result.ledger_error:
        metrics.add_metric("LedgerErrors", MetricUnit.Count, 1)
        logger.error("could not record published events in the idempotency table")
    log: dict[str, Any] = {
        "status": result.status,
        "received": result.received,
        "rejected": result.rejected,
        "published": result.published,
        "duplicates": result.duplicates,
    }
    if result.source is not None:
        log["source"] = result.source
    if result.reason is not None:
        log["reason"], log["request_id"] = result.reason, request_id
    if "error" in result.body:
        log["error"] = result.body["error"]
    else:
        log["rejected_events"] = [
            {"event_id": r["event_id"], "fields": [e["field"] for e in r["errors"]]} for r in result.body["rejected"]
        ]
    logger.info("ingest request", extra=log)

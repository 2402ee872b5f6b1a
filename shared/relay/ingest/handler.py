"""The IngestFunction handler, built by a factory so that tests inject the configuration and SNS.

`functions/ingest/app.py` is one line: ``lambda_handler = ingest_handler()``. Kept apart from the vendor
handler so that each function imports only what it runs (cold start).

The function has one route (POST /v1/events, the only one API Gateway sends it) and reads the raw body
(the signature covers the exact bytes), so it routes by hand: Powertools' APIGatewayHttpResolver would
import every event handler of the package (AppSync, Bedrock agents, asyncio...), ~30-40 ms of each cold
start for a single route (README "Performance and cost").
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from relay.aws.ledger import INGEST, DeliveryLedger
from relay.aws.replay import ReplayGuard
from relay.aws.secrets import SecretRefresh, load_ingest_config
from relay.aws.sns import SnsPublisher
from relay.ingest.request import Ingest
from relay.models.config import ConfigError, RelayConfig
from relay.models.event import build_validators
from relay.observability import MetricUnit, logger, metrics, traced

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

build_validators()  # the event models defer theirs (vendor functions never need them): the ingest needs them at once


ROUTE = ("POST", "/v1/events")


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) response."""
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


def ingest_handler(
    load_config: Callable[[], RelayConfig] | None = None,
    publisher: SnsPublisher | None = None,
    clock: Callable[[], float] = time.time,
    replay_guard: ReplayGuard | None = None,
    secret_refresh: SecretRefresh | None = None,
    ledger: DeliveryLedger | None = None,
) -> Handler:
    """A signature that no cached secret made re-reads the signing secret once (`SecretRefresh`: at most
    once a minute) and is checked again: a client that signs with a rotated secret is not refused until
    the cache expires."""
    cache: dict[tuple[str, ...], Ingest] = {}
    refresh = secret_refresh or SecretRefresh()

    def current(force: bool = False) -> Ingest:
        config = load_config() if load_config else load_ingest_config(refresh=force)
        key = tuple(config.secret_values())
        if key not in cache:  # the secret changed (rotation): rebuild once
            cache.clear()
            pub = publisher or SnsPublisher(os.environ["RELAY_TOPIC_ARN"])
            guard = replay_guard or (ReplayGuard(table) if (table := os.environ.get("RELAY_REPLAY_TABLE")) else None)
            accepted = ledger or (
                DeliveryLedger.from_env(INGEST, os.environ, clock=clock)
                if os.environ.get("RELAY_IDEMPOTENCY_TABLE")
                else None
            )
            cache[key] = Ingest(config, pub, clock, guard, ledger=accepted)
        return cache[key]

    def post_events(event: dict[str, Any], remaining_ms: Callable[[], int]) -> dict[str, Any]:
        body = event.get("body") or ""
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        ingest = current()
        result = ingest.handle(raw, headers, remaining_ms)
        if result.secret_mismatch:
            refresh.due()
            if refresh.take():
                try:
                    fresh = current(force=True)
                except ConfigError:  # the secret cannot be read right now: the refusal stands (a 401, not a 500)
                    logger.warning("could not read the signing secret again after a signature mismatch")
                    fresh = ingest
                if fresh is not ingest:  # the secret was rotated: check the signature against the new one
                    result = fresh.handle(raw, headers, remaining_ms)
        metrics.add_metric("EventsReceived", MetricUnit.Count, result.received)
        metrics.add_metric("EventsRejected", MetricUnit.Count, result.rejected)
        if result.duplicates:
            metrics.add_metric("DuplicateEvents", MetricUnit.Count, result.duplicates)
        if result.ledger_error:
            metrics.add_metric("LedgerErrors", MetricUnit.Count, 1)
            logger.error("could not record published events in the idempotency table")
        log = {
            "status": result.status,
            "received": result.received,
            "rejected": result.rejected,
            "published": result.published,
            "duplicates": result.duplicates,
        }
        if "error" in result.body:
            log["error"] = result.body["error"]
        else:
            log["rejected_events"] = [
                {"event_id": r["event_id"], "fields": [e["field"] for e in r["errors"]]}
                for r in result.body["rejected"]
            ]
        logger.info("ingest request", extra=log)
        return _json_response(result.status, result.body, result.headers or None)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @traced
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if _route(event) != ROUTE:
            return _json_response(404, {"error": "not found: POST /v1/events"})
        try:
            return post_events(event, context.get_remaining_time_in_millis)
        except ConfigError as exc:
            logger.error("relay configuration unusable", extra={"errors": [str(e) for e in exc.errors]})
            return _json_response(500, {"error": "the relay is misconfigured; its operators have been alerted"})

    return handler

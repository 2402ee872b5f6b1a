"""The IngestFunction handler, built by a factory so that tests inject the configuration and SNS.

`functions/ingest/app.py` is one line: ``lambda_handler = ingest_handler()``. Kept apart from the vendor
handler so that each function imports only what it runs (cold start).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths

from .aws import ReplayGuard, SnsPublisher, load_ingest_config
from .config import ConfigError, RelayConfig
from .ingest import Ingest
from .observability import MetricUnit, logger, metrics, traced

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body), headers=headers)


def ingest_handler(
    load_config: Callable[[], RelayConfig] | None = None,
    publisher: SnsPublisher | None = None,
    clock: Callable[[], float] = time.time,
    replay_guard: ReplayGuard | None = None,
) -> Handler:
    app = APIGatewayHttpResolver()
    cache: dict[tuple[str, ...], Ingest] = {}

    def current() -> Ingest:
        config = load_config() if load_config else load_ingest_config()
        key = tuple(config.secret_values())
        if key not in cache:  # the secret changed (rotation): rebuild once
            cache.clear()
            pub = publisher or SnsPublisher(os.environ["RELAY_TOPIC_ARN"])
            guard = replay_guard or (ReplayGuard(table) if (table := os.environ.get("RELAY_REPLAY_TABLE")) else None)
            cache[key] = Ingest(config, pub, clock, guard)
        return cache[key]

    @app.post("/v1/events")
    def post_events() -> Response:
        event = app.current_event
        body = event.body or ""
        raw = base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")
        headers = {k.lower(): v for k, v in (event.headers or {}).items()}
        result = current().handle(raw, headers)
        metrics.add_metric("EventsReceived", MetricUnit.Count, result.received)
        metrics.add_metric("EventsRejected", MetricUnit.Count, result.rejected)
        log = {
            "status": result.status,
            "received": result.received,
            "rejected": result.rejected,
            "published": result.published,
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

    @app.exception_handler(ConfigError)
    def config_error(exc: ConfigError) -> Response:
        logger.error("relay configuration unusable", extra={"errors": [str(e) for e in exc.errors]})
        return _json_response(500, {"error": "the relay is misconfigured; its operators have been alerted"})

    @app.not_found
    def not_found(_: Exception) -> Response:
        return _json_response(404, {"error": "not found: POST /v1/events"})

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @traced
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler

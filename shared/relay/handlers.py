"""Lambda handlers, built by factories so that tests inject clients and configuration.

`functions/<name>/app.py` is one line: ``lambda_handler = ingest_handler()`` or
``lambda_handler = vendor_handler("applovin")``.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json, ValidationError

from .aws import SnsPublisher, load_ingest_config, load_vendor_config
from .config import ConfigError, RelayConfig
from .errors import from_validation_error
from .forwarding import Delivery, Forwarder, new_http_client
from .ingest import Ingest
from .model import Event
from .observability import MetricUnit, logger, metrics, tracer

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class RelayRecord(SqsRecordModel):
    """An SQS record whose body is a canonical event (SNS raw message delivery)."""

    body: Json[Event]  # type: ignore[assignment]


class DeliveryFailed(Exception):
    """Raised for a record the relay could not deliver: Powertools reports it in batchItemFailures."""


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body), headers=headers)


def ingest_handler(
    load_config: Callable[[], RelayConfig] | None = None,
    publisher: SnsPublisher | None = None,
    clock: Callable[[], float] = time.time,
) -> Handler:
    app = APIGatewayHttpResolver()
    cache: dict[tuple[str, ...], Ingest] = {}

    def current() -> Ingest:
        config = load_config() if load_config else load_ingest_config()
        key = tuple(config.secret_values())
        if key not in cache:  # the secret changed (rotation): rebuild once
            cache.clear()
            pub = publisher or SnsPublisher(os.environ["RELAY_TOPIC_ARN"])
            cache[key] = Ingest(config, pub, clock)
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
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler


def vendor_handler(
    vendor: str,
    load_config: Callable[[], RelayConfig] | None = None,
    http_client: httpx.Client | None = None,
    max_workers: int = 16,
) -> Handler:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    cache: dict[tuple[str, ...], Forwarder] = {}
    client_holder: list[httpx.Client] = [http_client] if http_client else []

    def current() -> Forwarder:
        config = load_config() if load_config else load_vendor_config(vendor)
        key = tuple(config.secret_values())
        if key not in cache:
            cache.clear()
            if not client_holder:
                client_holder.append(new_http_client())
            cache[key] = Forwarder(vendor, config, client_holder[0], max_workers=max_workers)
        return cache[key]

    def deliver(records: list[dict[str, Any]]) -> dict[str, Delivery]:
        try:
            forwarder = current()
        except ConfigError as exc:
            logger.error(f"{vendor} configuration unusable", extra={"errors": [str(e) for e in exc.errors]})
            metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
            return {r["messageId"]: Delivery(False, "config", f"{vendor} configuration unusable") for r in records}
        results: dict[str, Delivery] = {}
        events: dict[str, Event] = {}
        for record in records:
            try:
                events[record["messageId"]] = RelayRecord.model_validate(record).body
            except ValidationError as exc:
                errors = "; ".join(map(str, from_validation_error(exc)))
                results[record["messageId"]] = Delivery(False, "invalid", f"not a canonical event: {errors}")
        forwarder.requests.clear()
        results.update(forwarder.deliver(events))
        for request in forwarder.requests:
            metrics.add_metric("VendorLatency", MetricUnit.Milliseconds, request.latency_ms)
        if any(d.outcome == "auth" for d in results.values()):
            metrics.add_metric("VendorAuthFailures", MetricUnit.Count, 1)
            logger.error(
                f"{vendor} refused the relay's credentials",
                extra={"status": sorted({d.status for d in results.values() if d.outcome == "auth"})},
            )
        for key, delivery in results.items():
            if not delivery.ok:
                event = events.get(key)
                logger.warning(
                    "delivery failed",
                    extra={
                        "event_id": event.event_id if event else None,
                        "message_id": key,
                        "outcome": delivery.outcome,
                        "reason": delivery.reason,
                        "status": delivery.status,
                    },
                )
        return results

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.add_dimension("vendor", vendor)
        records = event.get("Records", [])
        results = deliver(records)
        counts = {"forwarded": 0, "skipped": 0, "failed": 0}
        for delivery in results.values():
            counts["failed" if not delivery.ok else delivery.outcome] += 1
        metrics.add_metric("EventsForwarded", MetricUnit.Count, counts["forwarded"])
        metrics.add_metric("EventsSkipped", MetricUnit.Count, counts["skipped"])
        metrics.add_metric("EventsFailed", MetricUnit.Count, counts["failed"])
        logger.info(f"{vendor} batch", extra={"records": len(records), **counts})

        def record_handler(record: SQSRecord) -> None:
            delivery = results[record.message_id]
            if not delivery.ok:
                raise DeliveryFailed(f"{delivery.outcome}: {delivery.reason}")

        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler

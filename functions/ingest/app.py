"""IngestFunction: POST /v1/events, behind API Gateway's HTTP API.

The logic is `relay.ingest.function` in the layer.
"""

from __future__ import annotations

from typing import Any

from relay.coldstart import loading

with loading():  # the cold start's imports (relay.coldstart)
    from aws_lambda_powertools.logging import correlation_paths

    from relay.ingest.function import IngestFunction, handle_request, ingest_function
    from relay.observability import logger, metrics, traced


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any, function: IngestFunction | None = None) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event in, its response out. `function`: injected by tests, the local stack."""
    return handle_request(event, context, function or ingest_function())

"""The adroll function: delivers the events of its SQS queue to AdRoll's S2S events API.

The vendor comes from RELAY_VENDOR (template.yaml); the logic is `relay.delivery.function` in the layer.
"""

from __future__ import annotations

from typing import Any

from relay.coldstart import loading

with loading():  # the cold start's imports (relay.coldstart)
    from relay.delivery.function import VendorFunction, deliver_batch, vendor_function
    from relay.observability import logger, metrics, traced


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any, function: VendorFunction | None = None) -> dict[str, Any]:
    """An SQS batch in; the partial batch response out. `function`: injected by tests and the local stack."""
    return deliver_batch(event, context, function or vendor_function())

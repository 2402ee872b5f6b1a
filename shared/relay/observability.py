"""The one place that creates the Powertools Logger and Metrics, and X-Ray tracing when it is on.

Service name and namespace come from POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE (set in
template.yaml). Log lines carry event_id, vendor, counts and reasons: never an event body, email,
phone, IP address, key or token.

X-Ray tracing is opt-in (template parameter `Tracing=Active`, which also sets
POWERTOOLS_TRACE_DISABLED=false): Powertools Tracer imports the X-Ray SDK even when tracing is disabled,
time at every cold start (docs/decisions/0004), so the Tracer is only created when tracing is on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from relay.models.environment import TracingEnvironment, read_environment

logger = Logger()
metrics = Metrics()
# an invocation that counts nothing (a GET of an event's journey, say) has nothing to publish: that is no news
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

H = TypeVar("H", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """On only in Lambda (AWS_LAMBDA_FUNCTION_NAME set) with POWERTOOLS_TRACE_DISABLED false, the way
    Powertools Tracer itself decides; off when the variable is unset (the template always sets it)."""
    return read_environment(TracingEnvironment).enabled


def traced(handler: H) -> H:
    """`Tracer().capture_lambda_handler(handler)` when tracing is on; the handler itself otherwise."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler)


__all__ = ["MetricUnit", "logger", "metrics", "traced", "tracing_enabled"]

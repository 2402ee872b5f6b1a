"""The one place that creates the Powertools Logger, Tracer and Metrics.

Service name and namespace come from POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE (set in
template.yaml). Log lines carry event_id, vendor, counts and reasons: never an event body, email,
phone, IP address, key or token.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]

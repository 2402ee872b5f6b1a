"""boto3 clients with bounded calls, made on first use or injected (never at import time)."""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.config import Config

# Every AWS call the functions make is bounded, so that an invocation can tell whether the next one fits
# before its deadline: DynamoDB, SNS and SQS answer in milliseconds, a call that does not answer within these
# timeouts is tried once more, then fails (the caller answers 503 or keeps the message for a retry).
AWS_CONNECT_SECONDS = 0.5
AWS_READ_SECONDS = 1.5
AWS_ATTEMPTS = 2
AWS_CALLS = Config(
    connect_timeout=AWS_CONNECT_SECONDS,
    read_timeout=AWS_READ_SECONDS,
    retries={"mode": "standard", "total_max_attempts": AWS_ATTEMPTS},
)
# the longest one AWS call can take: every attempt timing out, and the backoff between them
AWS_CALL_MAX_MS = int(AWS_ATTEMPTS * (AWS_CONNECT_SECONDS + AWS_READ_SECONDS) * 1000) + 500


class LazyClient:
    """Holds a boto3 client: the injected one, else one made on first use (never at import time)."""

    service: ClassVar[str]
    client_options: ClassVar[dict[str, Any]] = {"config": AWS_CALLS}

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(self.service, **self.client_options)
        return self._client

"""boto3 clients with bounded calls, made on first use or injected (never at import time)."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from botocore.config import Config

# Every AWS call the functions make is bounded, so that an invocation can tell whether the next one fits
# before its deadline: DynamoDB, SNS and SQS answer in milliseconds, a call that does not answer within these
# timeouts is tried once more, then fails (the caller answers 503 or keeps the message for a retry).
AWS_CONNECT_SECONDS = 0.5
AWS_READ_SECONDS = 1.5
AWS_ATTEMPTS = 2
# A fixed User-Agent (botocore appends its own name and version): botocore otherwise builds and sanitises its
# own, component by component, on every call (a quarter of the ingest's CPU at one event per request)
USER_AGENT = f"s2s-relay Python/{sys.version_info.major}.{sys.version_info.minor}"
# DynamoDB's account-based endpoints off: every call goes to the region's endpoint, so the endpoint a client
# resolves does not depend on the call, and `steady_endpoints` resolves it once per operation
AWS_CALLS = Config(
    connect_timeout=AWS_CONNECT_SECONDS,
    read_timeout=AWS_READ_SECONDS,
    retries={"mode": "standard", "total_max_attempts": AWS_ATTEMPTS},
    user_agent=USER_AGENT,
    account_id_endpoint_mode="disabled",
)
# the ledger's and the publisher's calls: their items are built from validated data, so botocore's own
# parameter validation would only cost CPU
TRUSTED_CALLS = AWS_CALLS.merge(Config(parameter_validation=False))
# the longest one AWS call can take: every attempt timing out, and the backoff between them
AWS_CALL_MAX_MS = int(AWS_ATTEMPTS * (AWS_CONNECT_SECONDS + AWS_READ_SECONDS) * 1000) + 500


def steady_endpoints(client: Any) -> Any:
    """`client`, its endpoint resolved once per operation. botocore works it out again on every call (its
    builtins, the call's context parameters, the ruleset): a fifth of the ingest's CPU at one event per
    request. With AWS_CALLS the result cannot depend on the call (one endpoint per region, or the endpoint
    given), so the first answer stands for every later call of the operation."""
    resolver = getattr(client, "_ruleset_resolver", None)
    if resolver is None:
        return client
    resolve, known = resolver.construct_endpoint, {}

    def construct_endpoint(operation_model: Any, call_args: Any, request_context: Any) -> Any:
        name = operation_model.name
        if name not in known:
            known[name] = resolve(operation_model=operation_model, call_args=call_args, request_context=request_context)
        return known[name]

    resolver.construct_endpoint = construct_endpoint
    return client


def new_client(service: str, config: Config = AWS_CALLS) -> Any:
    """A boto3 client as every function makes one: bounded calls, its endpoint resolved once per operation,
    and with TRUSTED_CALLS (no parameter validation: the relay built the parameters) plain JSON serialising."""
    import boto3

    return tuned(boto3.client(service, config=config), config)


def tuned(client: Any, config: Config) -> Any:
    """`client` made as `new_client` makes its clients (the benchmarks' stubbed clients too): its endpoint
    steady and, for trusted calls (`config` without parameter validation), a JSON protocol's parameters
    serialised as the plain JSON they are (relay.aws.plain_json; `config`, not the client's, tells: botocore's
    client config does not keep `parameter_validation`)."""
    steady_endpoints(client)
    if config.parameter_validation is False:
        from relay.aws.plain_json import PlainJsonSerializer

        PlainJsonSerializer.adopt(getattr(client, "_serializer", None))
    return client


class LazyClient:
    """Holds a boto3 client: the injected one, else one made on first use (never at import time)."""

    service: ClassVar[str]
    client_options: ClassVar[dict[str, Any]] = {"config": AWS_CALLS}

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = new_client(self.service, self.client_options["config"])
        return self._client

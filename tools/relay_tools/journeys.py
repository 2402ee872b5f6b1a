"""The events' journeys of a deployed stack or of the local stack (`relay trace`, `relay ui`)."""

from __future__ import annotations

from typing import Any, TextIO

from relay.journey import JourneyTable
from relay.models.config import ConfigError, RelayConfig
from relay.models.errors import FieldError
from relay_tools.queues import LOCAL_CREDENTIALS


def journey_table(
    *,
    stack: str | None = None,
    config: RelayConfig | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> JourneyTable:
    """The idempotency table of a deployed stack (its IdempotencyTableName output, with your AWS
    credentials) or of the local stack `relay dev` runs with `config`. Raises ConfigError."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    # a person waits: a stack that does not answer is said at once, not after botocore's five attempts
    quick = Config(connect_timeout=3, read_timeout=20, retries={"mode": "standard", "total_max_attempts": 2})
    try:
        if stack:
            session = boto3.Session(region_name=region)
            cfn = session.client("cloudformation", endpoint_url=endpoint_url, config=quick)
            outputs = {
                o["OutputKey"]: o["OutputValue"]
                for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
            }
            if "IdempotencyTableName" not in outputs:
                raise ConfigError([FieldError("--stack", f"stack {stack} has no output IdempotencyTableName")], "stack")
            client = session.client("dynamodb", endpoint_url=endpoint_url, config=quick)
            return JourneyTable(outputs["IdempotencyTableName"], client)
        if config is None:
            raise ConfigError([FieldError("--stack/--config", "say which stack: --stack NAME or --config relay.toml")])
        local = config.local
        client = boto3.Session(region_name=local.region).client(
            "dynamodb",
            endpoint_url=endpoint_url or str(local.aws_endpoint).rstrip("/"),
            config=quick,
            **LOCAL_CREDENTIALS,
        )
        return JourneyTable(f"{local.stack_name}-IdempotencyTable", client)
    except (ClientError, BotoCoreError) as exc:
        where = f"stack {stack}" if stack else "the local stack (is `relay dev` running?)"
        raise ConfigError(
            [FieldError("table", f"cannot reach the journeys in {where}: {type(exc).__name__}")], "AWS"
        ) from None


def print_journey(journey: dict[str, Any], out: TextIO) -> None:
    """The journey for people: when it was accepted, then per connection its outcome, attempts and request."""
    accepted = journey.get("accepted_at") or "(no ingest record kept)"
    request_id = f"  request {journey['request_id']}" if journey.get("request_id") else ""
    source = f"  source {journey['source']}" if journey.get("source", "default") != "default" else ""
    print(f"{journey['event_id']}{source}  accepted {accepted}{request_id}", file=out)
    for vendor, part in journey["vendors"].items():
        why = part.get("reason") or ""
        if part.get("errors"):
            why = "; ".join(f"{e['field']}: {e['message']}" for e in part["errors"])
        status = f" (HTTP {part['status']})" if part.get("status") else ""
        print(f"  {vendor:<10} {part['outcome']}{status}{': ' + why if why else ''}", file=out)
        if part.get("next_attempt_at"):
            print(f"             next attempt at {part['next_attempt_at']}", file=out)
        for n, attempt in enumerate(part.get("attempts", []), 1):
            answer = " ".join(str(attempt.get("response") or "").split())[:120]
            http = f"HTTP {attempt['status']}" if attempt.get("status") else "no answer"
            print(
                f"    {n}. {attempt['at']}  try {attempt['attempt']}  {http}  {attempt['latency_ms']:.0f} ms  {answer}",
                file=out,
            )
        if part.get("request"):
            request = part["request"]
            print(f"    request: {request['method']} {request['url']}  (the body: relay trace --json)", file=out)

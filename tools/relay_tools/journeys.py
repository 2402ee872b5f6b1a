"""The events' journeys of a deployed stack or of the local stack (`relay trace`, `relay refused`, `relay ui`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
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
    accepted = "accepted " + (journey.get("accepted_at") or "(no ingest record kept)")
    if not journey.get("accepted_at") and not journey["vendors"]:
        accepted = "never accepted"
    request_id = f"  request {journey['request_id']}" if journey.get("request_id") else ""
    source = f"  source {journey['source']}" if journey.get("source", "default") != "default" else ""
    print(f"{journey['event_id']}{source}  {accepted}{request_id}", file=out)
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
    if journey.get("refused"):
        print(f"  refused {len(journey['refused'])} time(s) (relay refused):", file=out)
        for refusal in journey["refused"]:
            print(f"    {refusal_line(refusal, journey['event_id'])}", file=out)


def refusal_line(refusal: dict[str, Any], event_id: str | None = None) -> str:
    """One refused request for people: when, HTTP status, reason, source, request id, and why in its words
    (`event_id`: that event's field errors only)."""
    why = refusal["error"]
    rejected = [r for r in refusal.get("rejected", []) if event_id is None or r.get("event_id") == event_id]
    if rejected:
        why = "; ".join(f"{r.get('event_id') or '#' + str(r['index'])}: " + errors_of(r) for r in rejected[:3])
    skew = (refusal.get("signature") or {}).get("skew_seconds")
    if skew is not None:
        why += f" (signed {abs(skew)} s {'before' if skew > 0 else 'after'} the relay's clock)"
    source = "" if refusal["source"] == "default" else f" source {refusal['source']}"
    head = f"{refusal['at']}  HTTP {refusal['status']}  {refusal['reason']}{source}"
    return f"{head}  request {refusal['request_id']}: {why}"


def errors_of(rejected: dict[str, Any]) -> str:
    return ", ".join(f"{e['field']} {e['message']}" for e in rejected.get("errors", []))


_AGO = re.compile(r"([0-9]+)\s*([mhd])")


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`--since`: an ISO time (UTC unless it has an offset) or a duration back from now: 30m, 6h, 2d."""
    now = now or datetime.now(UTC)
    ago = _AGO.fullmatch(value.strip())
    if ago:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[ago.group(2)]
        return now - timedelta(**{unit: int(ago.group(1))})
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--since: must be a duration (30m, 6h, 7d) or an ISO-8601 time, not {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)

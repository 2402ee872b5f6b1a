"""AWS access: Secrets Manager (through Powertools Parameters, cached) and SNS publishing.

Clients are created on first use or injected, never at import time.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aws_lambda_powertools.utilities import parameters
from botocore.config import Config

from .config import SECRET_KEYS, ConfigError, Credentials, RelayConfig, config_from_env
from .errors import FieldError

# Secrets are cached an hour (as AWS's own Secrets Manager caching client does) and re-read at once when
# they stop working — a vendor refusing the credentials, a signature that does not verify — but at most
# once per SECRET_REFRESH_MIN_SECONDS per container: a rotation takes effect on the first refusal, and
# nobody can make the relay call Secrets Manager more than once a minute.
SECRET_MAX_AGE_SECONDS = 3600
SECRET_REFRESH_MIN_SECONDS = 60
INGEST_SECRET_ENV = "RELAY_INGEST_SECRET_ARN"  # noqa: S105 (an env var name)
VENDOR_SECRET_ENV = "RELAY_VENDOR_SECRET_ARN"  # noqa: S105 (an env var name)
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
# SNS PublishBatch: at most 10 entries and 256 KiB in total per call.
SNS_MAX_BATCH = 10
SNS_MAX_BYTES = 262_144


class SecretRefresh:
    """When a container may re-read its secret before the cache expires: after `due()` was called (the
    secret stopped working), and no sooner than SECRET_REFRESH_MIN_SECONDS after its last forced read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._due = False
        self._last = float("-inf")

    def due(self) -> None:
        self._due = True

    def take(self) -> bool:
        """True once per allowed refresh: the caller then reads the secret with `refresh=True`."""
        now = self.clock()
        if not self._due or now - self._last < SECRET_REFRESH_MIN_SECONDS:
            return False
        self._due, self._last = False, now
        return True


def read_secret(arn: str, section: str, client: Any = None, refresh: bool = False) -> dict[str, Any]:
    """A JSON secret, cached for SECRET_MAX_AGE_SECONDS (`refresh`: read it anew). Errors name the section,
    never the value."""
    try:
        if client is not None:
            provider = parameters.SecretsProvider(boto3_client=client)
            value = provider.get(arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh)
        else:
            value = parameters.get_secret(arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh)
    except parameters.exceptions.TransformParameterError:
        raise ConfigError([FieldError(section, "the secret is not a JSON object")], "Secrets Manager") from None
    except parameters.exceptions.GetParameterError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
        raise ConfigError(
            [
                FieldError(
                    section, f"the secret cannot be read ({cause}); fill it with aws secretsmanager put-secret-value"
                )
            ],
            "Secrets Manager",
        ) from None
    if not isinstance(value, dict):
        raise ConfigError([FieldError(section, "the secret is not a JSON object")], "Secrets Manager")
    return value


def ingest_secrets(secret: Mapping[str, Any]) -> list[str]:
    """The ingest secret is ``{"secret": current, "previous": optional}`` (rotation keeps both)."""
    return [s for s in (secret.get("secret"), secret.get("previous")) if isinstance(s, str) and s]


def load_ingest_config(
    environ: Mapping[str, str] | None = None, client: Any = None, refresh: bool = False
) -> RelayConfig:
    env = os.environ if environ is None else environ
    secret = read_secret(env.get(INGEST_SECRET_ENV, ""), "ingest.secrets", client, refresh)
    return config_from_env(env, {"ingest": {"secrets": ingest_secrets(secret)}}, credentials=False)


def load_vendor_config(
    vendor: str, environ: Mapping[str, str] | None = None, client: Any = None, refresh: bool = False
) -> RelayConfig:
    env = os.environ if environ is None else environ
    secret = read_secret(env.get(VENDOR_SECRET_ENV, ""), vendor, client, refresh)
    values = {k: secret[k] for k in SECRET_KEYS[vendor] if k in secret}
    credentials: Credentials = frozenset({vendor})
    return config_from_env(env, {vendor: values}, credentials=credentials)


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    body: str
    destinations: Sequence[str]
    attribute: str = field(init=False)  # the `destinations` attribute value, as sent
    size: int = field(init=False)  # bytes SNS counts against the 256 KiB limit: body + attribute name, type, value
    body_size: int = field(init=False)  # bytes of the body alone

    def __post_init__(self) -> None:
        attribute = _attribute(tuple(self.destinations))
        object.__setattr__(self, "attribute", attribute)
        body = len(self.body) if self.body.isascii() else len(self.body.encode("utf-8"))
        object.__setattr__(self, "body_size", body)
        object.__setattr__(self, "size", body + len("destinations") + len("String.Array") + len(attribute))


@functools.lru_cache(maxsize=64)
def _attribute(destinations: tuple[str, ...]) -> str:
    """The `destinations` attribute as sent (a handful of vendor sets: made once each)."""
    return json.dumps(list(destinations), separators=(",", ":"))


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


class SnsPublisher(LazyClient):
    """Publishes queued messages (relay.queued) with a `destinations` attribute (the queues' filter policies)."""

    service = "sns"
    # The entries are built here, from validated events: botocore's client-side parameter validation
    # cost a sixth of the ingest's CPU per event (README "Performance and cost"). SNS still validates.
    client_options: ClassVar[dict[str, Any]] = {"config": AWS_CALLS.merge(Config(parameter_validation=False))}

    def __init__(self, topic_arn: str, client: Any = None):
        super().__init__(client)
        self.topic_arn = topic_arn

    @staticmethod
    def chunks(messages: Sequence[Message]) -> list[list[Message]]:
        out: list[list[Message]] = []
        current: list[Message] = []
        size = 0
        for message in messages:
            if current and (len(current) == SNS_MAX_BATCH or size + message.size > SNS_MAX_BYTES):
                out.append(current)
                current, size = [], 0
            current.append(message)
            size += message.size
        if current:
            out.append(current)
        return out

    def publish(self, messages: Sequence[Message]) -> list[str]:
        """Publish with PublishBatch; returns the ids that SNS did not take (a call that failed: all of its
        messages; the other calls' messages were published)."""
        failed: list[str] = []
        for chunk in self.chunks(messages):
            try:
                response = self._publish_batch(chunk)
            except Exception as exc:  # noqa: BLE001 - throttled, timed out, refused: the caller answers 503
                from .observability import logger

                code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__
                logger.warning("PublishBatch failed", extra={"error": code, "messages": len(chunk)})
                failed += [m.id for m in chunk]
                continue
            failed += [f["Id"] for f in response.get("Failed", [])]
        return failed

    def _publish_batch(self, chunk: Sequence[Message]) -> dict[str, Any]:
        return self.client.publish_batch(
            TopicArn=self.topic_arn,
            PublishBatchRequestEntries=[
                {
                    "Id": m.id,
                    "Message": m.body,
                    "MessageAttributes": {"destinations": {"DataType": "String.Array", "StringValue": m.attribute}},
                }
                for m in chunk
            ],
        )


# moto's server takes any credentials; fixed ones keep the local stack away from a real account's.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}  # noqa: S105
VENDOR_LOGICAL = {"applovin": "AppLovin", "appsflyer": "AppsFlyer", "adroll": "AdRoll"}


@dataclass(frozen=True, slots=True)
class VendorQueues:
    client: Any  # SQS client
    source_url: str
    dlq_url: str


def vendor_queues(
    vendor: str,
    *,
    stack: str | None = None,
    config: RelayConfig | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> VendorQueues:
    """A vendor's queue and DLQ: from a deployed stack's Outputs (`stack`) or from the local stack that
    `relay dev` runs with `config` (its [local] section). Raises ConfigError when they cannot be found."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    logical = VENDOR_LOGICAL[vendor]
    try:
        if stack:
            session = boto3.Session(region_name=region)
            cfn = session.client("cloudformation", endpoint_url=endpoint_url)
            outputs = {
                o["OutputKey"]: o["OutputValue"]
                for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
            }
            missing = [k for k in (f"{logical}QueueUrl", f"{logical}DeadLetterQueueUrl") if k not in outputs]
            if missing:
                raise ConfigError([FieldError("--stack", f"stack {stack} has no output {missing[0]}")], "stack")
            client = session.client("sqs", endpoint_url=endpoint_url)
            return VendorQueues(client, outputs[f"{logical}QueueUrl"], outputs[f"{logical}DeadLetterQueueUrl"])
        if config is None:
            raise ConfigError([FieldError("--stack/--config", "say which stack: --stack NAME or --config relay.toml")])
        local = config.local
        client = boto3.Session(region_name=local.region).client(
            "sqs", endpoint_url=endpoint_url or local.aws_endpoint, **LOCAL_CREDENTIALS
        )
        name = f"{local.stack_name}-{logical}"
        return VendorQueues(
            client,
            client.get_queue_url(QueueName=f"{name}Queue")["QueueUrl"],
            client.get_queue_url(QueueName=f"{name}DeadLetterQueue")["QueueUrl"],
        )
    except (ClientError, BotoCoreError) as exc:
        where = f"stack {stack}" if stack else "the local stack (is `relay dev` running?)"
        raise ConfigError(
            [FieldError("queues", f"cannot reach {vendor}'s queues in {where}: {type(exc).__name__}")], "AWS"
        ) from None


class ReplayGuard(LazyClient):
    """Refuses a second request with the same signature (same signed timestamp and body) while it is still
    within the signature tolerance: one conditional DynamoDB write per request, expiring by TTL."""

    service = "dynamodb"

    def __init__(self, table_name: str, client: Any = None):
        super().__init__(client)
        self.table_name = table_name

    def claim(self, key: str, expires_at: int, now: float) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={"id": {"S": key}, "expiration": {"N": str(int(expires_at))}},
                ConditionExpression="attribute_not_exists(id) OR expiration < :now",
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def release(self, key: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"id": {"S": key}})

"""The archive of a deployed stack or of the local stack (`relay replay`, `relay forget`): its bucket, the topic a
replay queues to, the ledger it asks, and the configuration events are routed with (docs/archive.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from relay.archive import PREFIX, partition_prefix
from relay.archive.reading import ArchivedEvent, ArchiveLineError, object_lines, read_line, source_of_key
from relay.archive.sealing import Opener
from relay.models.config import ConfigError, RelayConfig
from relay.models.errors import FieldError
from relay_tools.queues import LOCAL_CREDENTIALS


@dataclass
class ArchiveStack:
    name: str  # the stack's name (a replay's checkpoint is per stack)
    clients: dict[str, Any]  # s3, kms, sns, dynamodb
    bucket: str
    topic_arn: str
    table: str
    config: RelayConfig  # what the functions run with: the connections a replay routes to

    @property
    def opener(self) -> Opener:
        return Opener(self.clients["kms"])

    def sources(self) -> list[str]:
        """The sources the archive holds events of."""
        pages = (
            self.clients["s3"]
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=PREFIX, Delimiter="/")
        )
        found = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
        return sorted(source_of_key(prefix) for prefix in found)

    def keys(self, source: str, first: date, last: date) -> list[str]:
        """The objects of `source` from day `first` to day `last`, in key order (days, then Firehose's names, which
        sort by time): one listing from the first day's partition on, stopped past the last day's."""
        prefix = f"{PREFIX}source={source}/"
        end = partition_prefix(source, last.isoformat())
        pages = (
            self.clients["s3"]
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=partition_prefix(source, first.isoformat())[:-1])
        )
        out: list[str] = []
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"] > end and not item["Key"].startswith(end):
                    return out
                out.append(item["Key"])
        return out

    def body(self, key: str) -> bytes:
        return self.clients["s3"].get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def events(self, key: str) -> Iterator[ArchivedEvent | ArchiveLineError]:
        """The archived events of one object (a line it cannot read: its error, in its place)."""
        source = source_of_key(key)
        for line in object_lines(self.body(key)):
            try:
                yield read_line(line, source)
            except ArchiveLineError as exc:
                yield exc

    def replace(self, key: str, body: bytes) -> None:
        """Write an object anew (`relay forget`): the bucket's default encryption (the archive's key) applies."""
        self.clients["s3"].put_object(Bucket=self.bucket, Key=key, Body=body)


def archive_stack(
    *,
    stack: str | None = None,
    config: RelayConfig | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> ArchiveStack:
    """The archive of a deployed stack (its Outputs, its IngestFunction's settings and the connections file of
    this checkout, with your AWS credentials) or of the local stack `relay dev` runs with `config`."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if stack:
            return _deployed(boto3.Session(region_name=region), stack, endpoint_url)
        if config is None:
            raise ConfigError([FieldError("--stack/--config", "say which stack: --stack NAME or --config relay.toml")])
        local = config.local
        session = boto3.Session(region_name=local.region, **LOCAL_CREDENTIALS)
        endpoint = endpoint_url or str(local.aws_endpoint).rstrip("/")
        clients = {n: session.client(n, endpoint_url=endpoint) for n in ("s3", "kms", "sns", "dynamodb")}
        name = local.stack_name
        topic = next(
            (
                t["TopicArn"]
                for t in clients["sns"].list_topics()["Topics"]
                if t["TopicArn"].endswith(f":{name}-EventsTopic")
            ),
            None,
        )
        if topic is None:
            raise ConfigError([FieldError("--config", f"the local stack {name} has no topic: is `relay dev` running?")])
        bucket = f"{name}-ArchiveBucket".lower()
        clients["s3"].head_bucket(Bucket=bucket)
        return ArchiveStack(name, clients, bucket, topic, f"{name}-IdempotencyTable", config)
    except (ClientError, BotoCoreError) as exc:
        where = f"stack {stack}" if stack else "the local stack (is `relay dev` running, with an archive?)"
        raise ConfigError(
            [FieldError("archive", f"cannot reach the archive of {where}: {type(exc).__name__}")], "AWS"
        ) from None


def _deployed(session: Any, stack: str, endpoint_url: str | None) -> ArchiveStack:
    from relay.models.config import config_from_env
    from relay.models.connections_file import shipped_connections

    cfn = session.client("cloudformation", endpoint_url=endpoint_url)
    outputs = {
        o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    }
    wanted = ("ArchiveBucketName", "EventsTopicArn", "IdempotencyTableName")
    missing = [k for k in wanted if k not in outputs]
    if missing:
        why = f"stack {stack} has no output {missing[0]} (ArchiveRetentionDays=0: no archive)"
        raise ConfigError([FieldError("--stack", why)], "stack")
    function = cfn.describe_stack_resource(StackName=stack, LogicalResourceId="IngestFunction")
    physical = function["StackResourceDetail"]["PhysicalResourceId"]
    lam = session.client("lambda", endpoint_url=endpoint_url)
    env = lam.get_function_configuration(FunctionName=physical).get("Environment", {}).get("Variables", {})
    config = config_from_env(env, credentials=False, shipped=shipped_connections())
    clients = {n: session.client(n, endpoint_url=endpoint_url) for n in ("s3", "kms", "sns", "dynamodb")}
    return ArchiveStack(
        stack, clients, outputs["ArchiveBucketName"], outputs["EventsTopicArn"], outputs["IdempotencyTableName"], config
    )

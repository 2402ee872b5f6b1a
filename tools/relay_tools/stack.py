"""Materialise template.yaml's messaging and storage resources on any AWS endpoint (moto's server or
moto's in-process mock): KMS keys, topics, queues with their DLQs and redrive policies, subscriptions with
their filter and redrive policies, the idempotency table and the secrets. Settings are read from the template, never
restated, so the local stack and the tests run what `sam deploy` would create.

Also resolves each function's environment and SQS event source settings from the template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

CREATED_TYPES = (
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::SNS::Topic",
    "AWS::SQS::Queue",
    "AWS::DynamoDB::Table",
    "AWS::SecretsManager::Secret",
    "AWS::SNS::Subscription",
)


NO_VALUE = object()  # AWS::NoValue: the property is left out


def _units(value: Any) -> Any:
    """Provisioned throughput as boto3 takes it (numbers, where the template may give strings)."""
    if isinstance(value, dict):
        return {k: int(v) if k.endswith("CapacityUnits") else _units(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_units(v) for v in value]
    return value


def load_template(path: str | Path) -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml  # dev dependency: only the local tooling reads templates

    return cfn_yaml.load(str(path))


@dataclass
class EventSource:
    queue: str  # logical id of the queue
    batch_size: int
    window_seconds: int


@dataclass
class Schedule:
    every_seconds: int
    input: dict[str, Any]


def rate_seconds(expression: str) -> int:
    """`rate(5 minutes)` -> 300 (EventBridge's rate expressions; the local stack runs no cron expressions)."""
    match = re.fullmatch(r"rate\(([0-9]+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not match:
        raise ValueError(f"the local stack runs rate(...) schedules only, not {expression!r}")
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return int(match.group(1)) * unit


@dataclass
class Stack:
    name: str
    region: str
    template: dict[str, Any]
    parameters: dict[str, str]
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> Ref value (arn / url / name)
    arns: dict[str, str] = field(default_factory=dict)  # logical id -> ARN

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def resolve(self, value: Any) -> Any:
        """Ref, Fn::GetAtt, Fn::Sub, Fn::If and Fn::FindInMap as the template uses them."""
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::FindInMap":
                name, top, second = (self.resolve(a) for a in arg)
                return self.template["Mappings"][name][top][second]
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(logical, attr)
            if key == "Fn::Join":
                return str(self.resolve(arg[0])).join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(str(self.resolve(arg[0])))
            if key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                literal = "\x00"  # ${!name} is the text ${name}, not a reference
                text = text.replace("${!", literal)
                for name in {p.split("}")[0] for p in text.split("${")[1:]}:
                    text = text.replace(
                        "${" + name + "}",
                        str(
                            self.resolve(
                                {"Fn::GetAtt": name.split(".", 1)}
                                if "." in name and not name.startswith("AWS::")
                                else {"Ref": name}
                            )
                        ),
                    )
                return text.replace(literal, "${")
        if isinstance(value, dict):
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        """A template condition (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition) with the stack's parameters."""
        return self._truth(self.template.get("Conditions", {})[name])

    def _truth(self, expr: Any) -> bool:
        ((key, arg),) = expr.items()
        if key == "Fn::Equals":
            return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self._truth(a) for a in arg)
        if key == "Condition":
            return self.condition(arg)
        raise KeyError(f"condition function {key} is not supported by the local stack")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        pseudo = {
            "AWS::StackName": self.name,
            "AWS::Region": self.region,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        raise KeyError(f"template reference {name} is not created by the local stack")

    def _get_att(self, logical: str, attr: str) -> str:
        if attr == "Arn":
            return self.arns[logical]
        if attr in ("QueueName", "TopicName"):
            return self.arns[logical].rsplit(":", 1)[1]
        raise KeyError(f"{logical}.{attr} is not supported by the local stack")

    def function_environment(self, logical: str) -> dict[str, str]:
        glob = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.resources[logical]["Properties"].get("Environment", {}).get("Variables", {})
        return {k: str(self.resolve(v)) for k, v in {**glob, **own}.items()}

    def event_source(self, logical: str) -> EventSource:
        for ev in self.resources[logical]["Properties"].get("Events", {}).values():
            if ev["Type"] == "SQS":
                props = ev["Properties"]
                queue = props["Queue"]["Fn::GetAtt"]
                return EventSource(
                    queue=queue[0] if isinstance(queue, list) else queue.split(".")[0],
                    batch_size=int(props.get("BatchSize", 10)),
                    window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                )
        raise KeyError(f"{logical} has no SQS event source")

    def schedules(self, logical: str) -> list[Schedule]:
        """The function's enabled `Schedule` events (EventBridge rules), as the local stack runs them."""
        out = []
        for ev in self.resources[logical]["Properties"].get("Events", {}).values():
            if ev["Type"] != "Schedule":
                continue
            props = ev["Properties"]
            if str(self.resolve(props.get("State", "ENABLED"))) != "ENABLED" or props.get("Enabled") is False:
                continue
            out.append(Schedule(rate_seconds(str(props["Schedule"])), json.loads(props.get("Input") or "{}")))
        return out

    def function_timeout(self, logical: str) -> int:
        glob = self.template.get("Globals", {}).get("Function", {})
        return int(self.resources[logical]["Properties"].get("Timeout", glob.get("Timeout", 3)))


def parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    return {k: str(v["Default"]) for k, v in template.get("Parameters", {}).items() if "Default" in v}


def create_stack(
    template: dict[str, Any],
    session: Any,
    name: str = "s2s-relay-local",
    parameters: dict[str, str] | None = None,
    secrets: dict[str, dict[str, Any]] | None = None,
    endpoint_url: str | None = None,
) -> Stack:
    """Create the resources on the endpoint `session` (a boto3 Session, or anything with `.client`)
    points at. `secrets` fills secrets by logical id (e.g. {"AppLovinSecret": {"api_key": "..."}})."""
    region = session.region_name or "us-east-1"
    stack = Stack(name, region, template, {**parameter_defaults(template), **(parameters or {})})
    sns, sqs, ddb, sm, kms = (
        session.client(name, endpoint_url=endpoint_url) for name in ("sns", "sqs", "dynamodb", "secretsmanager", "kms")
    )
    resources = {
        k: v
        for k, v in template["Resources"].items()
        if v["Type"] in CREATED_TYPES and ("Condition" not in v or stack.condition(v["Condition"]))
    }
    by_type = lambda t: [(k, v.get("Properties", {})) for k, v in resources.items() if v["Type"] == t]  # noqa: E731
    for logical, props in by_type("AWS::KMS::Key"):
        key = kms.create_key(
            Description=str(props.get("Description", "")), Policy=json.dumps(stack.resolve(props["KeyPolicy"]))
        )["KeyMetadata"]
        stack.physical[logical], stack.arns[logical] = key["KeyId"], key["Arn"]
        # a name that does not change from run to run (sam local's environment file names the key by it)
        kms.create_alias(AliasName=f"alias/{name}-{logical}", TargetKeyId=key["KeyId"])
    _create_buckets(stack, session.client("s3", endpoint_url=endpoint_url), by_type("AWS::S3::Bucket"))
    for logical, props in by_type("AWS::SNS::Topic"):
        arn = sns.create_topic(
            Name=f"{name}-{logical}",
            Attributes={k: str(stack.resolve(props[k])) for k in ("KmsMasterKeyId",) if k in props},
        )["TopicArn"]
        stack.physical[logical] = stack.arns[logical] = arn
    queues = by_type("AWS::SQS::Queue")
    for logical, _props in queues:  # create all first: redrive policies reference other queues
        url = sqs.create_queue(QueueName=f"{name}-{logical}")["QueueUrl"]
        stack.physical[logical] = url
        stack.arns[logical] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    for logical, props in queues:
        attrs = {k: str(stack.resolve(props[k])) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
        if "SqsManagedSseEnabled" in props:
            attrs["SqsManagedSseEnabled"] = str(props["SqsManagedSseEnabled"]).lower()
        if "RedrivePolicy" in props:
            policy = stack.resolve(props["RedrivePolicy"])
            attrs["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": policy["deadLetterTargetArn"],
                    "maxReceiveCount": int(policy["maxReceiveCount"]),
                }
            )
        if attrs:
            sqs.set_queue_attributes(QueueUrl=stack.physical[logical], Attributes=attrs)
    for logical, props in by_type("AWS::DynamoDB::Table"):
        table = f"{name}-{logical}"
        props = stack.resolve(props)  # TableCapacity: the billing mode and provisioned throughput
        ddb.create_table(
            TableName=table,
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            **{k: _units(props[k]) for k in ("GlobalSecondaryIndexes", "ProvisionedThroughput") if k in props},
        )
        if ttl := props.get("TimeToLiveSpecification"):
            ddb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
        stack.physical[logical] = table
        stack.arns[logical] = f"arn:aws:dynamodb:{region}:123456789012:table/{table}"
    for logical, props in by_type("AWS::SecretsManager::Secret"):
        value = (secrets or {}).get(logical)
        if value is None and (gen := props.get("GenerateSecretString")):
            value = json.loads(gen.get("SecretStringTemplate", "{}"))
            value[gen["GenerateStringKey"]] = token_urlsafe(int(gen.get("PasswordLength", 32)))
        kwargs: dict[str, Any] = {"Name": f"{name}-{logical}", "Description": str(props.get("Description", ""))}
        if value is not None:
            kwargs["SecretString"] = json.dumps(value)
        arn = sm.create_secret(**kwargs)["ARN"]
        stack.physical[logical] = stack.arns[logical] = arn
    _create_catalog(stack, session.client("glue", endpoint_url=endpoint_url), by_type)
    for _logical, props in by_type("AWS::SNS::Subscription"):
        if props.get("Protocol") != "sqs":
            continue
        attrs = {"RawMessageDelivery": str(props.get("RawMessageDelivery", False)).lower()}
        if "FilterPolicy" in props:
            attrs["FilterPolicy"] = json.dumps(props["FilterPolicy"])
            attrs["FilterPolicyScope"] = props.get("FilterPolicyScope", "MessageAttributes")
        if "RedrivePolicy" in props:
            attrs["RedrivePolicy"] = json.dumps(stack.resolve(props["RedrivePolicy"]))
        sns.subscribe(
            TopicArn=stack.resolve(props["TopicArn"]),
            Protocol="sqs",
            Endpoint=stack.resolve(props["Endpoint"]),
            Attributes=attrs,
        )
    return stack


def _create_buckets(stack: Stack, s3: Any, buckets: list[tuple[str, dict[str, Any]]]) -> None:
    """Buckets with their encryption, public access block and lifecycle (moto keeps them; S3 would enforce)."""
    for logical, props in buckets:
        name = f"{stack.name}-{logical}".lower()
        region = stack.region
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **where)
        stack.physical[logical], stack.arns[logical] = name, f"arn:aws:s3:::{name}"
        if "BucketEncryption" in props:
            rules = [
                {
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled", False)),
                }
                for rule in stack.resolve(props["BucketEncryption"]["ServerSideEncryptionConfiguration"])
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in props:
            block = stack.resolve(props["PublicAccessBlockConfiguration"])
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        if "LifecycleConfiguration" in props:
            rules = [_lifecycle_rule(stack.resolve(r)) for r in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule as S3's API takes it."""
    out: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return out


def _create_catalog(stack: Stack, glue: Any, by_type: Any) -> None:
    """The Glue databases and tables (Athena's view of the archive)."""
    for logical, props in by_type("AWS::Glue::Database"):
        database = stack.resolve(props["DatabaseInput"])
        glue.create_database(DatabaseInput=database)
        stack.physical[logical] = database["Name"]
    for logical, props in by_type("AWS::Glue::Table"):
        table = stack.resolve(props["TableInput"])
        glue.create_table(DatabaseName=stack.resolve(props["DatabaseName"]), TableInput=table)
        stack.physical[logical] = table["Name"]

"""template.yaml: valid for the real SAM CLI (with cfn-lint), and the layer is built for arm64."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

from relay.models.environment import FunctionEnvironment, read_environment
from relay.queued.message import EVENTS_PER_MESSAGE

from ..conftest import ROOT, run_sam

BIN = Path(sys.executable).parent


def test_sam_validate_lint_passes():
    proc = run_sam("validate", "--lint", "--template-file", str(ROOT / "template.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr
    assert re.search(r"^[EW]\d{4}", proc.stdout + proc.stderr, re.M) is None  # no cfn-lint error or warning


def test_layer_is_the_shared_package_built_for_arm64_python313():
    layer = cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"]["RelayLayer"]
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert (ROOT / "shared" / "requirements.txt").is_file() and (ROOT / "shared" / "relay" / "__init__.py").is_file()


def test_samconfig_environments_use_template_parameters_and_hold_no_secrets():
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    parameters = cfn_yaml.load(str(ROOT / "template.yaml"))["Parameters"]
    assert {"default", "dev", "prod"} <= set(config)
    for env in ("default", "dev", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        for pair in deploy["parameter_overrides"].split():
            name, _, value = pair.partition("=")
            assert name in parameters, f"{env}: {name} is not a template parameter"
            allowed = parameters[name].get("AllowedValues")
            assert allowed is None or value in [str(a) for a in allowed]
    text = (ROOT / "samconfig.toml").read_text().lower()
    for word in ("api_key", "token =", "secret =", "password"):
        assert word not in text


VENDOR_RESOURCES = {"applovin": "AppLovin", "appsflyer": "AppsFlyer", "adroll": "AdRoll"}


def _template():
    return cfn_yaml.load(str(ROOT / "template.yaml"))


def test_each_vendor_is_wired_topic_to_queue_to_function():
    t = _template()
    res, glob = t["Resources"], t["Globals"]["Function"]
    assert (
        glob["Runtime"] == "python3.13" and glob["Architectures"] == ["arm64"] and glob["Tracing"] == {"Ref": "Tracing"}
    )
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} <= set(
        glob["Environment"]["Variables"]
    )
    for vendor, p in VENDOR_RESOURCES.items():
        queue, fn, sub = res[f"{p}Queue"]["Properties"], res[f"{p}Function"]["Properties"], res[f"{p}Subscription"]
        assert queue["VisibilityTimeout"] >= 6 * fn["Timeout"]
        assert (
            queue["SqsManagedSseEnabled"] is True and res[f"{p}DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]
        )
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{p}DeadLetterQueue", "Arn"]}
        assert sub["Properties"]["RawMessageDelivery"] is True
        assert sub["Properties"]["FilterPolicy"] == {"destinations": [vendor]}
        assert sub["Properties"]["FilterPolicyScope"] == "MessageAttributes"
        assert fn["CodeUri"] == f"functions/{vendor}/"
        source = fn["Events"]["Queue"]["Properties"]
        assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert source["ScalingConfig"]["MaximumConcurrency"] == {"Ref": f"{p}MaxConcurrency"}
        assert "DeadLetterQueue" not in fn  # only applies to async invokes; the queue's redrive does it
        # BatchSize counts messages, each up to EVENTS_PER_MESSAGE events: AppLovin and AdRoll get a full
        # 100-event vendor request per invocation, AppsFlyer (one request per event) at most 50
        events = source["BatchSize"] * EVENTS_PER_MESSAGE
        assert events == (100 if vendor in ("applovin", "adroll") else 50), vendor
        if vendor in ("applovin", "adroll"):
            assert source["MaximumBatchingWindowInSeconds"] > 0
        assert res[f"{p}DeadLetterAlarm"]["Properties"]["Threshold"] == 0
        assert res[f"{p}AuthFailureAlarm"]["Properties"]["MetricName"] == "VendorAuthFailures"
        assert f"{p}QueueUrl" in t["Outputs"] and f"{p}DeadLetterQueueUrl" in t["Outputs"]
    assert res["EventsTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    api = res["RelayHttpApi"]["Properties"]
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(api["DefaultRouteSettings"])
    assert "sourceIp" not in api["AccessLogSettings"]["Format"]  # no client IP in logs
    # on demand unless TableCapacity=provisioned, whose capacity auto scaling keeps 70% used, table and index
    table = res["IdempotencyTable"]["Properties"]
    assert table["BillingMode"] == {"Fn::If": ["Provisioned", "PROVISIONED", "PAY_PER_REQUEST"]}
    assert t["Parameters"]["TableCapacity"]["Default"] == "on-demand"
    targets = {k: r for k, r in res.items() if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"}
    dimensions = {r["Properties"]["ScalableDimension"] for r in targets.values()}
    assert dimensions == {f"dynamodb:{o}:{u}CapacityUnits" for o in ("table", "index") for u in ("Read", "Write")}
    policies = [r for r in res.values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"]
    assert sorted(p["Properties"]["ScalingTargetId"]["Ref"] for p in policies) == sorted(targets)
    assert all(p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70 for p in policies)
    assert all(r.get("Condition") == "Provisioned" for r in [*targets.values(), *policies])
    assert res["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]["Enabled"] is True
    assert {"IngestUrl", "EventsTopicArn", "IdempotencyTableName"} <= set(t["Outputs"])


def test_no_secret_values_in_the_template():
    t = _template()
    for logical, resource in t["Resources"].items():
        if resource["Type"] == "AWS::SecretsManager::Secret":
            assert "SecretString" not in resource["Properties"], logical
    env = str(t["Globals"]["Function"]["Environment"]) + str(
        [
            r["Properties"].get("Environment")
            for r in t["Resources"].values()
            if r["Type"] == "AWS::Serverless::Function"
        ]
    )
    for key in ("API_KEY", "_TOKEN", "_KEY'", "SECRETS'"):
        assert key not in env.upper()


def test_transformed_template_grants_no_wildcard_action_on_every_resource():
    """Least privilege, checked on what CloudFormation receives: the SAM transform's IAM roles."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicyLookup:
        def load(self):
            return {}

    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    for resource in template["Resources"].values():  # as `sam package` leaves them: code in S3
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key.zip"
    parameters = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    cfn = transform(template, parameters, NoManagedPolicyLookup())
    roles = {k: r for k, r in cfn["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    # one per function (the archive's transformation too), Firehose's and SNS's roles for the archive
    assert len(roles) == 7
    assert {"ArchiveStreamRole", "ArchiveSubscriptionRole"} <= set(roles)
    for name, role in roles.items():
        statements = [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
        assert statements, f"{name} has no inline policy"
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement.get("Resource", [])
            resources = resources if isinstance(resources, list) else [resources]
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
            assert "*" not in resources, (name, actions)


def test_xray_tracing_is_opt_in_and_the_functions_follow_the_parameter():
    """Tracing=PassThrough by default (the X-Ray SDK costs ~100 ms of cold start): the functions then get
    POWERTOOLS_TRACE_DISABLED=true; Tracing=Active turns both X-Ray and the Powertools Tracer on."""
    from relay_tools.stack import Stack, load_template, parameter_defaults

    template = load_template(ROOT / "template.yaml")
    assert template["Parameters"]["Tracing"]["Default"] == "PassThrough"
    glob = template["Globals"]["Function"]
    for value, disabled in (("PassThrough", "true"), ("Active", "false")):
        stack = Stack("s", "us-east-1", template, {**parameter_defaults(template), "Tracing": value})
        assert stack.resolve(glob["Tracing"]) == value
        assert stack.resolve(glob["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]) == disabled


HEAVY = ("aws_xray_sdk.core", "aws_lambda_powertools.utilities.batch", "aws_lambda_powertools.event_handler")


def _heavy_imports(function: str, trace_disabled: str) -> set[str]:
    """Which of HEAVY a fresh interpreter has loaded after importing the function's app.py."""
    import os
    import subprocess

    code = (
        "import sys, app; from relay.models.event import Event; assert callable(app.lambda_handler);"
        f"print(*[m for m in {HEAVY!r} if m in sys.modules]);"
        "print('' if Event.__pydantic_complete__ else 'event-validator-deferred')"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / function), str(ROOT / "shared")]),
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "POWERTOOLS_TRACE_DISABLED": trace_disabled,
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_handlers_skip_what_they_do_not_run_at_cold_start():
    """The X-Ray SDK only when tracing is on; never Powertools' batch utility (all Parser models and data
    classes) or event handler package (every resolver): docs/decisions/0004; vendor functions leave the
    event validators unbuilt. A guard on what is loaded, not a timing."""
    assert _heavy_imports("ingest", "true") == set()  # it validates every request: built while it loads
    for function in ("applovin", "appsflyer", "adroll"):  # queued messages need no event validation (~45 ms)
        assert _heavy_imports(function, "true") == {"event-validator-deferred"}
    assert _heavy_imports("ingest", "false") == {"aws_xray_sdk.core"}
    assert _heavy_imports("adroll", "false") == {"aws_xray_sdk.core", "event-validator-deferred"}


def test_the_ingests_default_lease_is_its_timeout():
    """Outside Lambda (tests, the benchmark) the ingest's claims last as long as the function could run."""
    from relay.ingest.request import DEFAULT_REMAINING_MS

    t = cfn_yaml.load(str(ROOT / "template.yaml"))
    assert t["Resources"]["IngestFunction"]["Properties"]["Timeout"] * 1000 == DEFAULT_REMAINING_MS


def test_appsflyer_requests_in_flight_stay_within_its_rate_cap():
    """AppsFlyer caps an app at 60,000 POSTs a minute (1,000/s): at >= 80 ms a POST, 80 in flight at most."""
    from relay.delivery.sending import SEND_WORKERS

    t = cfn_yaml.load(str(ROOT / "template.yaml"))
    assert int(t["Parameters"]["AppsFlyerMaxConcurrency"]["Default"]) * SEND_WORKERS <= 80


def test_cloudwatch_can_publish_to_the_encrypted_alarm_topic():
    """An alarm topic encrypted with alias/aws/sns never notifies anyone: CloudWatch may not use that key."""
    res = _template()["Resources"]
    key_ref = res["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert key_ref == {"Ref": "AlarmTopicKey"} and res["AlarmTopicKey"]["Type"] == "AWS::KMS::Key"
    statements = res["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Effect"] == "Allow" and set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert any(s["Principal"].get("AWS") and s["Action"] == "kms:*" for s in statements)  # still administrable
    policy = res["AlarmTopicPolicy"]["Properties"]
    assert policy["Topics"] == [{"Ref": "AlarmTopic"}]
    (publish,) = policy["PolicyDocument"]["Statement"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and publish["Action"] == "sns:Publish"
    alarms = [r for r in res.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarms and all(a["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)


def test_every_subscription_keeps_what_sns_cannot_deliver_and_an_alarm_watches():
    res = _template()["Resources"]
    subscriptions = {k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::SNS::Subscription"}
    sqs = {k: p for k, p in subscriptions.items() if p["Protocol"] == "sqs"}
    assert len(sqs) == 3
    for logical, props in sqs.items():
        dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert res[dlq]["Type"] == "AWS::SQS::Queue", logical
        policies = [
            r["Properties"]
            for r in res.values()
            if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": dlq} in r["Properties"]["Queues"]
        ]
        (policy,) = policies  # SNS may send to the DLQ, from the events topic only
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "sns.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
        assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == props["TopicArn"]
        assert any(  # a message in that DLQ raises an alarm
            r["Type"] == "AWS::CloudWatch::Alarm"
            and r["Properties"].get("Dimensions")
            == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]
            for r in res.values()
        )
    undelivered = res["EventsUndeliveredAlarm"]["Properties"]
    assert undelivered["MetricName"] == "NumberOfNotificationsFailedToRedriveToDlq"


def test_the_dedupe_horizon_is_derived_from_what_the_template_sets_once(aws_stack):
    from relay.aws.ledger import DeliveryLedger, dedupe_horizon_seconds

    retention = aws_stack.resolve({"Fn::FindInMap": ["Retention", "Seconds", "DeadLetter"]})
    for vendor, p in VENDOR_RESOURCES.items():
        queue = aws_stack.resources[f"{p}DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
        assert aws_stack.resolve(queue) == retention
        env = aws_stack.function_environment(f"{p}Function")
        assert env["RELAY_DEAD_LETTER_RETENTION_SECONDS"] == str(retention)
        ledger = DeliveryLedger.for_function(vendor, read_environment(FunctionEnvironment, env))
        archive_days = int(env["RELAY_ARCHIVE_RETENTION_DAYS"])
        max_age = int(env["RELAY_INGEST_MAX_EVENT_AGE_DAYS"])
        assert ledger.horizon_seconds == dedupe_horizon_seconds(max_age, retention, archive_days)
        # relay replay: the ledger remembers a delivery as long as the archive keeps the event
        assert ledger.horizon_seconds > archive_days * 86_400 == 90 * 86_400
    from .test_parameters import _integer_range

    _, max_age = _integer_range(_template()["Parameters"]["MaxEventAgeDays"]["AllowedPattern"])
    assert dedupe_horizon_seconds(max_age, retention) > max_age * 86_400


def test_the_local_stack_creates_the_subscriptions_redrive_and_the_alarm_key(aws_stack):
    import json

    import boto3

    sns = boto3.client("sns")
    subs = sns.list_subscriptions_by_topic(TopicArn=aws_stack.physical["EventsTopic"])["Subscriptions"]
    targets = set()
    for sub in subs:
        attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
        targets.add(json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"])
    assert targets == {aws_stack.arns[f"{p}DeadLetterQueue"] for p in VENDOR_RESOURCES.values()}
    topic = sns.get_topic_attributes(TopicArn=aws_stack.physical["AlarmTopic"])["Attributes"]
    assert topic["KmsMasterKeyId"] == aws_stack.physical["AlarmTopicKey"]


def test_every_parameter_says_what_it_is_and_what_it_takes():
    """`sam deploy --guided` shows no descriptions: the template is where they are read, and each value is
    checked by CloudFormation before anything is created."""
    for name, param in _template()["Parameters"].items():
        assert param.get("Description"), name
        if param["Type"] == "Number":
            assert "MinValue" in param and "MaxValue" in param, name
        else:
            assert "AllowedValues" in param or "AllowedPattern" in param, name
            if "AllowedPattern" in param:
                assert param.get("ConstraintDescription"), name
                assert re.fullmatch(param["AllowedPattern"].strip("^$"), str(param["Default"])), name


@pytest.mark.parametrize(
    ("vendor", "ids", "expected"),
    [
        ("applovin", {}, False),
        ("applovin", {"RELAY_APPLOVIN_PIXEL_ID": "px"}, True),
        ("appsflyer", {}, False),
        ("appsflyer", {"RELAY_APPSFLYER_ANDROID_APP_ID": "com.example.app"}, True),
        ("adroll", {"RELAY_ADROLL_PIXEL_EID": "p"}, False),
        ("adroll", {"RELAY_ADROLL_PIXEL_EID": "p", "RELAY_ADROLL_ADVERTISABLE_EID": "a"}, True),
    ],
)
def test_with_the_default_parameters_a_vendor_is_on_exactly_when_its_ids_are_given(vendor, ids, expected):
    """The defaults deploy a relay that runs (the ingest's configuration loads, whatever ids are missing),
    with each vendor on when its ids are given: never a 500 on every request."""
    from relay.models.config import config_from_env
    from relay_tools.stack import Stack, load_template, parameter_defaults

    template = load_template(ROOT / "template.yaml")
    stack = Stack("defaults", "us-east-1", template, parameter_defaults(template))
    variables = template["Globals"]["Function"]["Environment"]["Variables"]  # what every function gets
    env = {**{k: str(stack.resolve(v)) for k, v in variables.items()}, **ids}
    assert env[f"RELAY_{vendor.upper()}_ENABLED"] == "auto"
    config = config_from_env({k: v for k, v in env.items() if k.startswith("RELAY_")}, credentials=False)
    assert config.enabled(vendor) is expected


def test_a_vendor_turned_on_without_its_ids_is_refused_at_deploy_naming_the_parameter():
    rules = _template()["Rules"]
    needs = {
        "AppLovinOnNeedsItsPixelId": ("AppLovinEnabled", ["AppLovinPixelId"]),
        "AppsFlyerOnNeedsAnAppId": ("AppsFlyerEnabled", ["AppsFlyerIosAppId", "AppsFlyerAndroidAppId"]),
        "AdRollOnNeedsItsEids": ("AdRollEnabled", ["AdRollAdvertisableEid", "AdRollPixelEid"]),
    }
    for rule, (switch, ids) in needs.items():
        assert rules[rule]["RuleCondition"] == {"Fn::Equals": [{"Ref": switch}, "true"]}
        (assertion,) = rules[rule]["Assertions"]
        text = json.dumps(assertion["Assert"])
        assert all(f'"Ref": "{i}"' in text for i in ids), rule
        assert all(i in assertion["AssertDescription"] for i in (switch, *ids)), rule


def test_every_samconfig_environment_deploys_as_written():
    """Each environment's parameter_overrides name existing parameters with values the template accepts."""
    import shlex
    import tomllib

    params = _template()["Parameters"]
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    environments = [name for name, env in config.items() if isinstance(env, dict) and "deploy" in env]
    assert {"default", "dev", "prod"} <= set(environments)
    for env in environments:
        overrides = config[env]["deploy"]["parameters"].get("parameter_overrides", "")
        for pair in shlex.split(overrides):
            name, _, value = pair.partition("=")
            assert name in params, (env, name)
            p = params[name]
            if "AllowedValues" in p:
                assert value in [str(v) for v in p["AllowedValues"]], (env, name)
            if "AllowedPattern" in p:
                assert re.fullmatch(p["AllowedPattern"].strip("^$"), value), (env, name)
            if p["Type"] == "Number":
                assert p["MinValue"] <= float(value) <= p["MaxValue"], (env, name)


def test_a_5xx_from_the_ingest_and_a_failed_invocation_raise_alarms():
    resources = _template()["Resources"]
    ingest = resources["IngestServerErrorAlarm"]["Properties"]
    assert ingest["MetricName"] == "IngestServerErrors" and ingest["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    errors = resources["FunctionErrorAlarm"]["Properties"]
    functions = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in errors["Metrics"] if "MetricStat" in m
    }
    assert functions == {"IngestFunction", "AppLovinFunction", "AppsFlyerFunction", "AdRollFunction"}


def test_the_retry_window_fits_what_sqs_and_lambda_allow():
    """RetryWindowHours and MaxRetryDelaySeconds take what relay.toml's [delivery] takes, and no more than
    the queues allow: the window plus its longest delay within the queues' retention (else SQS deletes a
    message before the relay gives it up), a delay plus the longest invocation within the 12 hours SQS
    lets a message stay invisible after a receive."""
    from relay.delivery.retry import RetrySchedule
    from relay.models.config import (
        LAMBDA_MAX_TIMEOUT_SECONDS,
        MAX_RETRY_DELAY_SECONDS,
        MAX_RETRY_WINDOW_HOURS,
        MIN_RETRY_WINDOW_HOURS,
        QUEUE_RETENTION_SECONDS,
        SQS_MAX_VISIBILITY_SECONDS,
        DeliveryConfig,
    )

    template = _template()
    params = template["Parameters"]
    window, delay = params["RetryWindowHours"], params["MaxRetryDelaySeconds"]
    assert (window["MinValue"], window["MaxValue"]) == (MIN_RETRY_WINDOW_HOURS, MAX_RETRY_WINDOW_HOURS)
    from .test_parameters import _integer_range

    assert _integer_range(delay["AllowedPattern"]) == (1, MAX_RETRY_DELAY_SECONDS)
    assert template["Mappings"]["Retention"]["Seconds"]["Queue"] == QUEUE_RETENTION_SECONDS
    assert MAX_RETRY_WINDOW_HOURS * 3600 + MAX_RETRY_DELAY_SECONDS < QUEUE_RETENTION_SECONDS
    assert MAX_RETRY_DELAY_SECONDS + LAMBDA_MAX_TIMEOUT_SECONDS <= SQS_MAX_VISIBILITY_SECONDS == 43_200
    defaults = DeliveryConfig()
    assert float(window["Default"]) == defaults.retry_window_hours
    assert int(delay["Default"]) == defaults.max_retry_delay_seconds
    assert int(params["CircuitProbeSeconds"]["Default"]) == defaults.probe_interval_seconds
    assert params["AutoRedrive"]["Default"] == str(defaults.auto_redrive).lower()
    # MaxReceiveCount is a safety net: well above the receives the default window can take
    assert int(params["MaxReceiveCount"]["Default"]) >= 1.5 * RetrySchedule.of(defaults).receives_needed()
    assert params["Journey"]["Default"] == str(defaults.journey).lower()
    # every function reads the [delivery] settings (relay.models.config.delivery_from_env)
    refs = {
        k: v.get("Ref")
        for k, v in template["Globals"]["Function"]["Environment"]["Variables"].items()
        if k.startswith("RELAY_DELIVERY_")
    }
    assert refs == {
        "RELAY_DELIVERY_RETRY_WINDOW_HOURS": "RetryWindowHours",
        "RELAY_DELIVERY_MAX_RETRY_DELAY_SECONDS": "MaxRetryDelaySeconds",
        "RELAY_DELIVERY_PROBE_INTERVAL_SECONDS": "CircuitProbeSeconds",
        "RELAY_DELIVERY_AUTO_REDRIVE": "AutoRedrive",
        "RELAY_DELIVERY_JOURNEY": "Journey",
    }


def test_the_journeys_index_and_the_status_route():
    """relay.journey's index (its name and keys are the code's), the ingest's GET routes, and its grants for
    refused requests."""
    from relay.journey import AT, INDEX, MINUTE

    resources = _template()["Resources"]
    table = resources["IdempotencyTable"]["Properties"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == INDEX and index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert [k["AttributeName"] for k in index["KeySchema"]] == [MINUTE, AT]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types == {"id": "S", MINUTE: "S", AT: "N"}
    events = resources["IngestFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()}
    assert routes == {("POST", "/v1/events"), ("GET", "/v1/events/{event_id+}"), ("GET", "/v1/requests/{request_id}")}
    # refused requests: written in batches, read back through the index (relay.journey.refusals)
    statements = [s for p in resources["IngestFunction"]["Properties"]["Policies"] for s in p.get("Statement", [])]
    assert any("dynamodb:BatchWriteItem" in s["Action"] for s in statements)
    (query,) = [s for s in statements if s["Action"] == "dynamodb:Query"]
    assert query["Resource"] == {"Fn::Sub": f"${{IdempotencyTable.Arn}}/index/{INDEX}"}


@pytest.mark.parametrize("vendor", ["AppLovin", "AppsFlyer", "AdRoll"])
def test_a_vendor_function_may_delay_its_messages_and_redrive_its_dlq_and_nothing_more(vendor):
    resources = _template()["Resources"]
    fn = resources[f"{vendor}Function"]["Properties"]
    assert fn["Environment"]["Variables"]["RELAY_QUEUE_URL"] == {"Ref": f"{vendor}Queue"}
    grants: dict[str, set[str]] = {}
    for policy in fn["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            resource = statement["Resource"]["Fn::GetAtt"][0]
            grants.setdefault(resource, set()).update(statement["Action"])
    # retry delays, the redrive back to it, and (the scheduled recovery) whether anything is still queued
    assert grants[f"{vendor}Queue"] == {"sqs:ChangeMessageVisibility", "sqs:SendMessage", "sqs:GetQueueAttributes"}
    (schedule,) = [e for e in fn["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Properties"]["Schedule"] == "rate(5 minutes)"
    assert schedule["Properties"]["State"] == {"Fn::If": ["AutoRedriveOn", "ENABLED", "DISABLED"]}
    assert grants[f"{vendor}DeadLetterQueue"] == {
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    assert grants["IdempotencyTable"] == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}


@pytest.mark.parametrize(
    ("vendor", "name"), [("AppLovin", "applovin"), ("AppsFlyer", "appsflyer"), ("AdRoll", "adroll")]
)
def test_an_open_circuit_and_an_ageing_queue_raise_alarms(vendor, name):
    resources = _template()["Resources"]
    circuit = resources[f"{vendor}CircuitOpenAlarm"]["Properties"]
    assert circuit["MetricName"] == "CircuitOpenSeconds" and circuit["Threshold"] == {"Ref": "CircuitOpenAlarmSeconds"}
    assert {"Name": "vendor", "Value": name} in circuit["Dimensions"]
    assert circuit["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    age = resources[f"{vendor}RetryWindowAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in age["Metrics"]}
    assert metrics["queue"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert metrics["queue"]["MetricStat"]["Metric"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": [f"{vendor}Queue", "QueueName"]
    }
    assert metrics["retried"]["MetricStat"]["Metric"]["MetricName"] == "OldestRetryAgeSeconds"
    assert "RetryWindowHours" in json.dumps(metrics["used"]["Expression"]) and age["Threshold"] == 75
    assert age["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_each_function_reads_only_its_own_secret():
    """A connection's key sits in its vendor's secret (docs/connections.md, "Secrets"): each vendor function may
    read that secret and no other, the ingest only the signing secret, and no policy names a secret by pattern."""
    res = _template()["Resources"]
    owners = {
        "IngestFunction": "IngestSigningSecret",
        **{f"{p}Function": f"{p}Secret" for p in VENDOR_RESOURCES.values()},
    }
    for function, secret in owners.items():
        policies = res[function]["Properties"]["Policies"]
        readable = [
            p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]
            for p in policies
            if "AWSSecretsManagerGetSecretValuePolicy" in p
        ]
        assert readable == [{"Ref": secret}], function
        statements = [s for p in policies if "Statement" in p for s in p["Statement"]]
        assert not any("secretsmanager" in json.dumps(s.get("Action")) for s in statements), function
        env = res[function]["Properties"]["Environment"]["Variables"]
        assert {"Ref": secret} in env.values(), function

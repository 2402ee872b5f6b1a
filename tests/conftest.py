from __future__ import annotations

import os

# Before any relay/powertools import: no X-Ray daemon here, metrics namespace as deployed, fake AWS creds.
for _key, _value in {
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_SERVICE_NAME": "s2s-relay",
    "POWERTOOLS_METRICS_NAMESPACE": "S2SRelay",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}.items():
    os.environ[_key] = _value

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from hypothesis import settings
from moto import mock_aws

from relay.models.config import RelayConfig, config_from_mapping
from relay.models.event import Event, parse_event
from relay.queued.routing import Router

# CI machines vary in speed: no per-example deadline (tests assert behaviour, never time)
settings.register_profile("relay", deadline=None)
# `make reliability` runs the hostile-input suite longer: HYPOTHESIS_PROFILE=long
settings.register_profile("long", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "relay"))

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 3, 12, 13, 1, 30, tzinfo=UTC)  # just after the seed examples' event_time
NOW_MS = 1741784490000

SECRETS = {
    "signing": "sig-secret-9f8e7d6c5b4a",
    "applovin": "al-key-SECRET-1234567890",
    "appsflyer": "af-key-SECRET-abcdef",
    "adroll": "ar-token-SECRET-zyxwv",
}

CONFIG: dict[str, Any] = {
    "ingest": {"secrets": [SECRETS["signing"]]},
    "applovin": {"pixel_id": "PIXEL123", "api_key": SECRETS["applovin"]},
    "appsflyer": {"key": SECRETS["appsflyer"], "ios_app_id": "id123456789", "android_app_id": "com.example.app"},
    "adroll": {
        "advertisable_eid": "ADV_EID",
        "pixel_eid": "PIX_EID",
        "token": SECRETS["adroll"],
        "app_url_domain": "app.example.com",
    },
}
FPC = "0123456789abcdef0123456789abcdef-1741784485001"
AF_ID = "1541234567890-1234567"


def make_config(**sections: Any) -> RelayConfig:
    """The test config with sections merged over (None removes a section)."""
    data = copy.deepcopy(CONFIG)
    for name, values in sections.items():
        if values is None:
            data.pop(name, None)
        elif isinstance(values, dict) and isinstance(data.get(name), dict):
            data[name].update(values)
        else:
            data[name] = values
    return config_from_mapping(data)


def web_event(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": "evt-1",
        "name": "page_view",
        "source": "web",
        "timestamp": NOW_MS - 5000,
        "page_url": "https://shop.example.com/products/shirt?color=blue",
        "user": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 test", "cookie_id": "fp-1"},
        "vendor_ids": {"adroll": {"first_party_cookie": FPC}},
    }
    data.update(fields)
    return data


def app_event(os_name: str = "ios", **fields: Any) -> dict[str, Any]:
    device: dict[str, Any] = {"os": os_name, "os_version": "17.4" if os_name == "ios" else "14"}
    if os_name == "ios":
        device["idfv"] = "5D1D3D2C-8E8B-4C5A-9C1B-2F0A2B3C4D5E"
    data: dict[str, Any] = {
        "event_id": "app-1",
        "name": "purchase",
        "source": "app",
        "timestamp": NOW_MS - 5000,
        "value": "9.99",
        "currency": "USD",
        "user": {"ip": "203.0.113.7", "user_agent": "ExampleApp/2.1", "cookie_id": "fp-1"},
        "device": device,
        "app": {"bundle_id": "com.example.app", "version": "2.1.0"},
        "vendor_ids": {"appsflyer": {"appsflyer_id": AF_ID}, "adroll": {"first_party_cookie": FPC}},
    }
    data.update(fields)
    return data


def event(data: dict[str, Any], now: datetime = NOW, **kw: Any) -> Event:
    return parse_event(data, now=now, **kw)


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def config() -> RelayConfig:
    return make_config()


@pytest.fixture
def router(config: RelayConfig) -> Router:
    return Router(config)


# Template parameters and secrets for the deployed-form tests (sam deploy --parameter-overrides …).
STACK_PARAMETERS = {
    "AppLovinPixelId": "PIXEL123",
    "AppsFlyerIosAppId": "id123456789",
    "AppsFlyerAndroidAppId": "com.example.app",
    "AdRollAdvertisableEid": "ADV_EID",
    "AdRollPixelEid": "PIX_EID",
    "AdRollAppUrlDomain": "app.example.com",
}
STACK_SECRETS = {
    "IngestSigningSecret": {"secret": SECRETS["signing"]},
    "AppLovinSecret": {"api_key": SECRETS["applovin"]},
    "AppsFlyerSecret": {"key": SECRETS["appsflyer"]},
    "AdRollSecret": {"token": SECRETS["adroll"]},
}


@pytest.fixture
def aws_stack(monkeypatch):
    """template.yaml's topics, queues, subscriptions, table and secrets, created in moto."""
    from relay_tools.stack import create_stack, load_template

    parameters.clear_caches()
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        stack = create_stack(
            load_template(ROOT / "template.yaml"), session, parameters=STACK_PARAMETERS, secrets=STACK_SECRETS
        )
        yield stack
    parameters.clear_caches()


def run_sam(*args: str, timeout: int = 300, **env: str):
    """The real SAM CLI of this venv, from the repository root, without telemetry."""
    import subprocess
    import sys

    return subprocess.run(
        [str(Path(sys.executable).parent / "sam"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=timeout,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", **env},
    )


def use_function_env(monkeypatch, stack, logical: str) -> dict[str, str]:
    env = stack.function_environment(logical)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def visible(queue_url: str, max_messages: int = 1000, delete: bool = False) -> list[dict]:
    """Every message currently visible in a queue, received with all attributes (`delete`: then deleted)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    out: list[dict] = []
    while len(out) < max_messages:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return out
        out += batch
        for m in batch if delete else ():
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return out


def drain(queue_url: str, max_messages: int = 1000) -> list[dict]:
    """Every message currently in a queue (received with all attributes, then deleted)."""
    return visible(queue_url, max_messages, delete=True)


class FakeClock:
    """Time that only moves when the code under test sleeps (no real waiting, no timing in tests)."""

    def __init__(self, budget_ms: int = 30_000):
        self.now = 0.0
        self.budget_ms = budget_ms
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def remaining_ms(self) -> int:
        return int(self.budget_ms - self.now * 1000)


class FakeLambdaContext:
    """The attributes of the Lambda context object that Powertools reads."""

    def __init__(self, clock: FakeClock | None = None):
        self.clock = clock

    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return self.clock.remaining_ms() if self.clock else 30_000


class Output:
    def __init__(self, capsys, buffer):
        self.capsys, self.buffer = capsys, buffer
        self.out = ""

    def text(self) -> str:
        """Every log line (Powertools JSON) and every EMF metric blob printed so far."""
        self.out += self.capsys.readouterr().out
        return self.buffer.getvalue() + self.out


@pytest.fixture
def output(capsys):
    """Log lines formatted exactly as Powertools writes them, plus stdout (EMF metrics)."""
    import io
    import logging

    from relay.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    target = logging.getLogger(logger.name)
    target.addHandler(handler)
    yield Output(capsys, buffer)
    target.removeHandler(handler)


# -- AWS's limits on every call (tests/aws_limits.py) ------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "aws_limit_errors_expected: the test makes AWS refuse a call over a limit on purpose"
    )


@pytest.fixture(autouse=True)
def fresh_containers():
    """Each test starts as a new Lambda container: no function or environment cached by an earlier one."""
    from relay.delivery.function import vendor_function
    from relay.ingest.function import ingest_function
    from relay.models.environment import get_environment

    for cached in (vendor_function, ingest_function, get_environment):
        cached.cache_clear()
    yield


@pytest.fixture(autouse=True)
def aws_limits(request, monkeypatch):
    """Every SNS, SQS and DynamoDB call, whatever client makes it, is checked against the limits AWS
    documents (moto does not enforce them): a call over one fails as AWS would, and so does the test."""
    import botocore.client

    from .aws_faults import AwsFaults
    from .aws_limits import Violations, check

    violations = Violations()
    make_api_call = botocore.client.BaseClient._make_api_call
    faults = AwsFaults.current = AwsFaults()

    def checked(client, operation_name, api_params):
        check(client.meta.service_model.service_name, operation_name, api_params, violations)
        faults.before(operation_name, api_params, client)
        answer = make_api_call(client, operation_name, api_params)
        faults.after(operation_name, api_params, client)
        return answer

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", checked)
    yield violations
    if violations and request.node.get_closest_marker("aws_limit_errors_expected") is None:
        pytest.fail(f"AWS would refuse these calls: {violations}", pytrace=False)


@pytest.fixture
def aws_faults(aws_limits):
    """AWS calls made to fail on purpose (tests/aws_faults.py)."""
    from .aws_faults import AwsFaults

    assert AwsFaults.current is not None
    return AwsFaults.current


def answered(response: dict, event: dict) -> dict:
    """An ingest answer's body; an error's names the request's id, a refusal its reason (both checked here,
    then left out)."""
    from relay_tools.apigw import response_body

    body = json.loads(response_body(response))
    if response["statusCode"] >= 400:
        assert body.pop("request_id") == event["requestContext"]["requestId"], body
    if 400 <= response["statusCode"] < 500 and response["statusCode"] != 404:  # a refusal says why, by code
        from relay.journey.refusals import REASONS

        assert body.pop("reason") in REASONS, body
    return body

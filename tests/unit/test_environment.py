"""Each function's environment variables: one model per function, validated once, errors naming the variable."""

from __future__ import annotations

import ast

import pytest

from relay.aws.ledger import DeliveryLedger, dedupe_horizon_seconds
from relay.models.environment import (
    IngestEnvironment,
    InvalidEnvironment,
    TracingEnvironment,
    VendorEnvironment,
    get_environment,
    read_environment,
)

from ..conftest import ROOT

VENDOR_ENV = {
    "RELAY_VENDOR": "adroll",
    "RELAY_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    "RELAY_MAX_RECEIVE_COUNT": "5",
    "RELAY_VENDOR_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:adroll",
    "RELAY_IDEMPOTENCY_TABLE": "ledger",
    "RELAY_ADROLL_DRY_RUN": "true",
    "RELAY_INGEST_MAX_EVENT_AGE_DAYS": "",  # an empty template parameter: the default
    "PATH": "/usr/bin",
}


def test_a_vendor_environment_reads_what_the_template_sets():
    env = read_environment(VendorEnvironment, VENDOR_ENV)
    assert (env.vendor, env.max_receive_count, env.idempotency_table) == ("adroll", 5, "ledger")
    assert env.max_event_age_days == 7 and env.dead_letter_retention_seconds == 14 * 86_400
    assert env.settings == {k: v for k, v in VENDOR_ENV.items() if k.startswith("RELAY_") and v}
    ledger = DeliveryLedger.for_function("adroll", env, client=object())
    assert ledger.table_name == "ledger" and ledger.horizon_seconds == dedupe_horizon_seconds(7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RELAY_DLQ_URL": None}, "VendorEnvironment: RELAY_DLQ_URL: Field required"),
        ({"RELAY_MAX_RECEIVE_COUNT": "many"}, "RELAY_MAX_RECEIVE_COUNT: Input should be a valid integer"),
        ({"RELAY_MAX_RECEIVE_COUNT": "0"}, "RELAY_MAX_RECEIVE_COUNT: Input should be greater than or equal to 1"),
        ({"RELAY_VENDOR": "facebook"}, "RELAY_VENDOR: Input should be 'applovin', 'appsflyer' or 'adroll'"),
        (
            {"RELAY_DEAD_LETTER_RETENTION_SECONDS": "2000000"},
            "RELAY_DEAD_LETTER_RETENTION_SECONDS: Input should be less",
        ),
    ],
)
def test_a_bad_variable_is_named_with_its_rule(change, message):
    env = {k: v for k, v in {**VENDOR_ENV, **change}.items() if v is not None}
    with pytest.raises(InvalidEnvironment) as caught:
        read_environment(VendorEnvironment, env)
    assert message in str(caught.value)
    assert "arn:aws:secretsmanager" not in str(caught.value)  # values are never echoed


def test_the_ingest_needs_its_topic_and_secret():
    with pytest.raises(InvalidEnvironment) as caught:
        read_environment(IngestEnvironment, {"RELAY_IDEMPOTENCY_TABLE": "ledger"})
    assert "RELAY_TOPIC_ARN: Field required" in str(caught.value)
    assert "RELAY_INGEST_SECRET_ARN: Field required" in str(caught.value)


def test_tracing_is_on_only_in_lambda_with_tracing_enabled():
    assert not read_environment(TracingEnvironment, {}).enabled
    assert not read_environment(TracingEnvironment, {"AWS_LAMBDA_FUNCTION_NAME": "f"}).enabled
    on = {"AWS_LAMBDA_FUNCTION_NAME": "f", "POWERTOOLS_TRACE_DISABLED": "false"}
    assert read_environment(TracingEnvironment, on).enabled


def test_the_environment_is_read_once_per_container(monkeypatch):
    for key, value in VENDOR_ENV.items():
        monkeypatch.setenv(key, value)
    first = get_environment(VendorEnvironment)
    monkeypatch.setenv("RELAY_MAX_RECEIVE_COUNT", "9")
    assert get_environment(VendorEnvironment) is first and first.max_receive_count == 5


def test_only_the_environment_module_reads_os_environ():
    readers = []
    for path in (ROOT / "shared" / "relay").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.append(path.relative_to(ROOT / "shared").as_posix())
    assert set(readers) == {"relay/models/environment.py"}

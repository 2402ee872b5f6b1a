"""The fixed monthly cost model (relay_tools.stack_cost) reads what the code and the template hold."""

from __future__ import annotations

import re

import pytest

from relay_tools import stack_cost

from ..conftest import ROOT

NAMED = re.compile(r'add_metric\(\s*"(\w+)"')


def emitted(*folders: str) -> set[str]:
    names: set[str] = set()
    for folder in folders:
        for path in (ROOT / "shared" / "relay" / folder).rglob("*.py"):
            names |= set(NAMED.findall(path.read_text()))
    return names


def test_the_metric_lists_are_what_the_functions_emit():
    from relay.ingest.archiving import ARCHIVE_FAILURES
    from relay.ingest.function import SERVER_ERRORS
    from relay.ingest.refused import NOT_RECORDED_METRIC

    assert set(stack_cost.INGEST_METRICS) == emitted("ingest") | {SERVER_ERRORS, ARCHIVE_FAILURES, NOT_RECORDED_METRIC}
    assert set(stack_cost.ARCHIVE_METRICS) == emitted("archive")
    vendor = set(stack_cost.VENDOR_METRICS)
    assert {m for m in vendor if not m.startswith("Match")} == emitted("delivery")


def test_a_named_connection_costs_its_metrics_and_what_the_alarms_analyze():
    lines = {line.item: line for line in stack_cost.per_connection()}
    assert lines["CloudWatch custom metrics"].usd_per_month == pytest.approx(5 * 0.30)
    assert lines["CloudWatch alarms"].usd_per_month == pytest.approx(3 * 0.02)  # the three Connection*Alarm


def test_one_stack_of_n_connections_costs_less_than_n_stacks_from_two_on():
    fixed = sum(line.usd_per_month for line in stack_cost.per_stack())
    each = sum(line.usd_per_month for line in stack_cost.per_connection())
    assert stack_cost.monthly(1) == pytest.approx(fixed)
    assert stack_cost.monthly(10) == pytest.approx(fixed + 3 * 9 * each)  # nine named per vendor
    assert stack_cost.monthly(10, stacks=10) == pytest.approx(10 * fixed)
    assert all(stack_cost.monthly(n) < stack_cost.monthly(n, stacks=n) for n in range(2, 101))

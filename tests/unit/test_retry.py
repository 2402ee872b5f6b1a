"""The retry schedule and the [delivery] settings (relay.delivery.retry, relay.models.config)."""

from __future__ import annotations

import pytest

from relay.delivery.circuit import OPEN_AFTER, CircuitState
from relay.delivery.retry import RetrySchedule, age_seconds
from relay.models.config import (
    MAX_RETRY_DELAY_SECONDS,
    MAX_RETRY_WINDOW_HOURS,
    ConfigError,
    DeliveryConfig,
    config_from_env,
    config_from_mapping,
    delivery_from_env,
)

DEFAULT = RetrySchedule.of(DeliveryConfig())


def longest(schedule: RetrySchedule) -> RetrySchedule:
    return RetrySchedule(schedule.window_seconds, schedule.max_delay_seconds, rng=lambda: 1.0)


def test_the_defaults_wait_28_s_first_and_double_up_to_an_hour():
    assert DeliveryConfig().retry_window_hours == 24 and DeliveryConfig().max_retry_delay_seconds == 3600
    schedule = longest(DEFAULT)
    assert [schedule.delay(n, age=0) for n in range(1, 11)] == [29, 57, 113, 225, 450, 900, 1800, 3600, 3600, 3600]


def test_jitter_keeps_a_delay_between_half_and_all_of_its_step():
    low = RetrySchedule(DEFAULT.window_seconds, 3600, rng=lambda: 0.0)
    assert low.delay(1, age=0) == 15 and low.delay(20, age=0) == 1800


def test_no_delay_passes_the_end_of_the_window_and_none_is_shorter_than_a_second():
    schedule = longest(DEFAULT)
    assert schedule.delay(12, age=24 * 3600 - 100) == 100  # the last try falls at the window's end
    assert schedule.delay(12, age=24 * 3600 + 5) == 1
    tiny = RetrySchedule(60, 1, rng=lambda: 0.0)
    assert tiny.delay(1, age=0) == 1


def test_a_message_is_given_up_once_it_is_as_old_as_the_window():
    assert not DEFAULT.expired(24 * 3600 - 1) and DEFAULT.expired(24 * 3600)


def test_the_receives_a_window_needs_stay_well_under_the_templates_safety_net():
    # every delay at its shortest (half its step): 7 doublings, then 30 min each for the rest of the day
    # (about 40 receives with the jitter's average)
    assert DEFAULT.receives_needed() == 56
    assert RetrySchedule(3600, 60).receives_needed() == 127  # an hour of waits of 30 to 60 s


def test_a_message_age_comes_from_its_sent_timestamp():
    assert age_seconds({"attributes": {"SentTimestamp": "1000000"}}, now=1300.5) == 300.5
    assert age_seconds({"attributes": {}}, now=1300.5) == 0.0


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"retry_window_hours": MAX_RETRY_WINDOW_HOURS + 1}, "delivery.retry_window_hours"),
        ({"retry_window_hours": 0}, "delivery.retry_window_hours"),
        ({"max_retry_delay_seconds": MAX_RETRY_DELAY_SECONDS + 1}, "delivery.max_retry_delay_seconds"),
        ({"max_retry_delay_seconds": 0}, "delivery.max_retry_delay_seconds"),
        ({"probe_interval_seconds": 0}, "delivery.probe_interval_seconds"),
        ({"auto_redrive": "sometimes"}, "delivery.auto_redrive"),
        ({"retry_window": 24}, "delivery.retry_window"),
    ],
)
def test_bad_delivery_settings_name_the_key(settings, field):
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"ingest": {"secrets": ["s"]}, "delivery": settings})
    assert [e.field for e in exc.value.errors] == [field]


def test_the_delivery_settings_come_from_their_environment_variables():
    env = {"RELAY_DELIVERY_RETRY_WINDOW_HOURS": "0.5", "RELAY_DELIVERY_AUTO_REDRIVE": "false", "RELAY_OTHER": "x"}
    delivery = delivery_from_env(env)
    assert (delivery.retry_window_seconds, delivery.auto_redrive, delivery.max_retry_delay_seconds) == (
        1800,
        False,
        3600,
    )
    assert config_from_env({**env, "RELAY_INGEST_SECRETS": ""}, credentials=False).delivery == delivery
    with pytest.raises(ConfigError) as exc:
        delivery_from_env({"RELAY_DELIVERY_MAX_RETRY_DELAY_SECONDS": "an hour"})
    assert [e.field for e in exc.value.errors] == ["delivery.max_retry_delay_seconds"]


def test_an_invocation_may_fail_up_to_what_the_circuit_has_left():
    assert CircuitState().failures_left() == OPEN_AFTER
    assert CircuitState(failures=OPEN_AFTER - 3).failures_left() == 3
    assert CircuitState(failures=OPEN_AFTER + 5).failures_left() == 1
    assert CircuitState(is_open=True, opened_at=100).open_seconds(160) == 60
    assert CircuitState(opened_at=100).open_seconds(160) == 0

"""Event-name table, overrides, and the one-outcome-per-vendor routing."""

from __future__ import annotations

import pytest

from relay.models.event import VENDORS
from relay.models.event_names import DEFAULT_EVENT_NAMES, vendor_event_name
from relay.queued.routing import Router
from relay.vendors import Invalid, Mapped, Skipped

from ..conftest import app_event, event, make_config, web_event

# The table of issue #2, verbatim ("-" = not sent).
SPEC = """
page_view        page_view        -                         pageView
home_view        page_view        -                         homeView
view_item        view_item        af_content_view           pageView
search           -                af_search                 productSearch
add_to_cart      add_to_cart      af_add_to_cart            addToCart
begin_checkout   begin_checkout   af_initiated_checkout     -
add_payment_info add_payment_info af_add_payment_info       -
purchase         purchase         af_purchase               purchase
generate_lead    generate_lead    -                         formFill
sign_up          sign_up          af_complete_registration  -
login            login            af_login                  -
subscribe        -                af_subscribe              signupPlan
start_trial      -                af_start_trial            signupTrial
app_open         app_open         -                         -
high_value_page  -                -                         highValuePage
gated_content    -                -                         gatedContent
demo_request     -                -                         demoRequest
contact_sales    -                -                         contactSales
live_chat        -                -                         liveChat
form_fill        -                -                         formFill
"""


def test_default_table_is_the_specified_one():
    table = {}
    for line in SPEC.strip().splitlines():
        canonical, *names = line.split()
        table[canonical] = {v: (None if n == "-" else n) for v, n in zip(VENDORS, names, strict=True)}
    assert DEFAULT_EVENT_NAMES == table


def test_unknown_names_go_to_appsflyer_unchanged_only():
    assert vendor_event_name("level_up", "appsflyer") == "level_up"
    assert vendor_event_name("level_up", "applovin") is None
    assert vendor_event_name("level_up", "adroll") is None


def test_overrides_replace_add_and_skip():
    overrides = {
        "generate_lead": {"adroll": "demoRequest", "applovin": None, "appsflyer": None},
        "purchase": {"appsflyer": "", "applovin": None, "adroll": None},
        "level_up": {"applovin": "login", "appsflyer": None, "adroll": None},
    }
    assert vendor_event_name("generate_lead", "adroll", overrides) == "demoRequest"
    assert vendor_event_name("generate_lead", "applovin", overrides) == "generate_lead"  # untouched cell
    assert vendor_event_name("purchase", "appsflyer", overrides) is None  # "" skips
    assert vendor_event_name("level_up", "applovin", overrides) == "login"


def test_overrides_from_config_reach_the_router():
    config = make_config(events={"generate_lead": {"adroll": "demoRequest"}, "purchase": {"applovin": ""}})
    router = Router(config)
    lead = router.route(event(web_event(name="generate_lead", value=1, currency="USD")))
    assert lead["adroll"].payload["event_name"] == "demoRequest"
    buy = router.route(event(web_event(name="purchase", value=1, currency="USD", order_id="o", items=[{"id": "x"}])))
    assert buy["applovin"] == Skipped("no applovin event is mapped to 'purchase'")


def test_every_event_gets_exactly_one_outcome_per_vendor(router):
    outcomes = router.route(event(app_event("ios")))
    assert set(outcomes) == set(VENDORS)
    assert all(isinstance(o, Mapped | Skipped | Invalid) for o in outcomes.values())


def test_destinations_and_disabled_vendors():
    router = Router(make_config(adroll={"enabled": False}))
    outcomes = router.route(event(web_event(destinations=["applovin"])))
    assert isinstance(outcomes["applovin"], Mapped)
    assert outcomes["appsflyer"] == Skipped("appsflyer is not in the event's destinations")
    assert outcomes["adroll"] == Skipped("adroll is not enabled in the relay's configuration")
    absent = Router(make_config(appsflyer=None))
    assert absent.route(event(app_event()))["appsflyer"] == Skipped(
        "appsflyer is not enabled in the relay's configuration"
    )
    assert Router.destinations(outcomes) == ["applovin"]


def test_ad_storage_false_skips_applovin_and_adroll_but_not_appsflyer(router):
    outcomes = router.route(event(app_event("ios", page_url="https://example.com/", consent={"ad_storage": False})))
    assert outcomes["applovin"] == Skipped("consent.ad_storage is false")
    assert outcomes["adroll"] == Skipped("consent.ad_storage is false")
    assert isinstance(outcomes["appsflyer"], Mapped)
    assert outcomes["appsflyer"].payload["sharing_filter"] == "all"


@pytest.mark.parametrize("name", ["page_view", "purchase", "generate_lead", "add_to_cart", "demo_request"])
def test_nothing_is_silently_dropped(router, name):
    """Each outcome either carries a payload or says why not."""
    for outcome in router.route(event(web_event(name=name))).values():
        if isinstance(outcome, Skipped):
            assert outcome.reason
        elif isinstance(outcome, Invalid):
            assert outcome.errors and all(e.field and e.message for e in outcome.errors)
        else:
            assert outcome.payload

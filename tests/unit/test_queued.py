"""The queued message (relay.queued): the ingest maps once, vendor functions send what they read."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import ValidationError

from relay.delivery.forwarding import Forwarder
from relay.queued.message import Queued, QueuedMessageError, parse_queued, queued_body
from relay.vendors import Mapped

from ..conftest import app_event, event, web_event

AWKWARD = web_event(  # values whose JSON form could drift through a second serializer
    event_id="odd-1",
    name="purchase",
    value="0.30000000000000004",
    currency="EUR",
    order_id="ordre-\u00e9t\u00e9-\u2603",
    items=[{"id": "sku-\u00fc", "price": "12345678901234.56", "quantity": 3, "discount": "1e-3"}],
    user={"ip": "2001:db8::1", "user_agent": 'UA "quoted" \\ back', "email": "Ren\u00e9@Example.com", "cookie_id": "c"},
)
EVENTS = [
    web_event(),
    AWKWARD,
    app_event("ios", event_id="ios-1"),
    app_event(
        "android",
        event_id="android-1",
        device={"os": "android", "advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d"},
    ),
]


@pytest.mark.parametrize("data", EVENTS, ids=lambda d: d["event_id"])
def test_the_message_carries_every_destination_exactly_as_mapped(router, data):
    parsed = event(data)
    outcomes = router.route(parsed)
    body = queued_body(parsed, outcomes)
    message = json.loads(body)
    assert (message["event_id"], message["name"]) == (parsed.event_id, parsed.name)
    assert sorted(message["payloads"]) == sorted(router.destinations(outcomes))
    for vendor in router.destinations(outcomes):
        got = parse_queued(body, vendor)
        assert got == Queued(parsed.event_id, outcomes[vendor])
    for vendor in set(outcomes) - set(router.destinations(outcomes)):
        with pytest.raises(QueuedMessageError, match=f"payloads.{vendor}: missing"):
            parse_queued(body, vendor)


@pytest.mark.parametrize("data", EVENTS, ids=lambda d: d["event_id"])
def test_a_vendor_is_sent_the_same_bytes_from_a_queued_message_as_from_a_canonical_event(config, router, data):
    """Messages queued by an older relay (canonical events) and new ones reach the vendor identically."""
    parsed = event(data)
    body = queued_body(parsed, router.route(parsed))
    for vendor in router.destinations(router.route(parsed)):
        sent: dict[str, list[bytes]] = {"queued": [], "canonical": []}
        for kind, item in (("queued", parse_queued(body, vendor)), ("canonical", parsed)):

            def answer(request: httpx.Request, into: list[bytes] = sent[kind]) -> httpx.Response:
                into.append(request.content)
                return httpx.Response(200, text="OK")

            forwarder = Forwarder(vendor, config, httpx.Client(transport=httpx.MockTransport(answer)))
            assert forwarder.deliver({"m1": item}, lambda: 60_000)["m1"].outcome == "forwarded"
        assert len(sent["queued"]) == 1
        assert sent["queued"] == sent["canonical"], vendor


def test_a_canonical_event_body_is_read_as_one():
    parsed = event(web_event(event_id="old-1"))
    got = parse_queued(parsed.model_dump_json(exclude_none=True), "applovin")
    assert got == parsed
    with pytest.raises(ValidationError):
        parse_queued('{"event_id": "x"}', "applovin")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "(body): is not JSON"),
        ("{not json", "(body): is not JSON"),
        ('["x"]', "(body): must be a JSON object"),
        ('{"payloads": {"adroll": {}}}', "event_id: must be 1 to 128 printable characters"),
        ('{"event_id": "", "payloads": {}}', "event_id: must be 1 to 128 printable characters"),
        (
            '{"event_id": "e", "payloads": {"adroll": {}}}',
            "payloads.applovin: missing; the message carries payloads for: adroll",
        ),
        ('{"event_id": "e", "payloads": []}', "payloads.applovin: missing; the message carries payloads for: none"),
        ('{"event_id": "e", "payloads": {"applovin": "x"}}', "payloads.applovin: must be a JSON object"),
        (
            '{"event_id": "e", "payloads": {"applovin": {}}, "targets": {"applovin": 1}}',
            "targets.applovin: must be a string",
        ),
    ],
)
def test_a_body_that_is_neither_names_the_field(body, message):
    with pytest.raises(QueuedMessageError) as caught:
        parse_queued(body, "applovin")
    assert str(caught.value) == message


def test_the_target_travels_with_the_payload():
    body = '{"event_id": "e", "name": "purchase", "payloads": {"appsflyer": {"a": 1}}, "targets": {"appsflyer": "id1"}}'
    assert parse_queued(body, "appsflyer") == Queued("e", Mapped({"a": 1}, "id1"))


# -- ids that cannot collide (issue #14) -------------------------------------------------------------

from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from relay.aws.ledger import DeliveryLedger, claim_key  # noqa: E402
from relay.queued.message import bundle_id  # noqa: E402

ids = st.text(min_size=1, max_size=40)


def test_bundles_whose_ids_join_alike_are_different_bundles():
    assert bundle_id(["a\nb", "c"]) != bundle_id(["a", "b\nc"])
    assert bundle_id(["a", "b"]) != bundle_id(["a,b"]) != bundle_id(['a","b'])


@given(st.lists(ids, min_size=1, max_size=10), st.lists(ids, min_size=1, max_size=10))
def test_different_lists_of_event_ids_make_different_bundle_ids(a, b):
    assume(a != b)
    assert bundle_id(a) != bundle_id(b)


@given(ids, st.lists(ids, min_size=2, max_size=10), st.sampled_from(["ingest", "applovin", "appsflyer", "adroll"]))
def test_no_event_id_can_share_a_bundles_or_a_batchs_record(event_id, members, vendor):
    ledger = DeliveryLedger(vendor, "table")
    bundle = bundle_id(members)
    event_key = claim_key(vendor, event_id)
    assert event_key not in (ledger.bundle_key(bundle), ledger.batch_key(bundle))
    # an event_id written like the old bundle claims' unit, or like a key, is still an event's claim
    assert claim_key(vendor, f"bundle:{bundle}") not in (ledger.bundle_key(bundle), ledger.batch_key(bundle))
    assert claim_key(vendor, ledger.bundle_key(bundle)) != ledger.bundle_key(bundle)


def test_a_received_bundle_id_must_be_a_bundle_id():
    from relay.queued.message import parse_message

    (item,) = parse_message("m1", '{"bundle": "x\\ny", "events": []}', "applovin")
    assert item.error == "not a queued message: bundle: must be 32 lower-case hex digits (bundle_id)"


def test_a_message_for_two_connections_of_a_vendor_is_one_event_per_connection():
    """Each connection the message carries a payload for is an event of its own for the vendor function: its key
    (the default connection's as before), the source that sent it, and a body holding its payload alone (its
    dead letter's), its target kept."""
    from relay.queued.message import bundle_body, message_id_of, parse_message

    one = {
        "event_id": "o-1",
        "name": "purchase",
        "source": "eu",
        "payloads": {"applovin": {"a": 1}, "applovin.eu": {"a": 2}, "adroll.eu": {"r": 3}},
        "targets": {"applovin.eu": "eu-pixel"},
    }
    got = parse_message("m1", bundle_body("b" * 32, [json.dumps(one)]), "applovin")
    assert [(q.key, q.connection, q.sent_by, q.event) for q in got] == [
        ("m1#0", "applovin", "eu", Queued("o-1", Mapped({"a": 1}, ""))),
        ("m1#0~applovin.eu", "applovin.eu", "eu", Queued("o-1", Mapped({"a": 2}, "eu-pixel"))),
    ]
    assert [message_id_of(q.key) for q in got] == ["m1", "m1"]
    assert json.loads(got[1].body) == {
        "event_id": "o-1",
        "name": "purchase",
        "source": "eu",
        "payloads": {"applovin.eu": {"a": 2}},
        "targets": {"applovin.eu": "eu-pixel"},
    }
    assert "targets" not in json.loads(got[0].body) and got[0].bundle == "b" * 32
    (alone,) = parse_message("m2", json.dumps({**one, "payloads": {"adroll.eu": {"r": 3}}}), "adroll")
    assert (alone.key, alone.connection, alone.body) == ("m2~adroll.eu", "adroll.eu", alone.source)
    (bad,) = parse_message("m3", json.dumps({**one, "source": "EU!"}), "applovin")
    assert bad.error == "not a queued message: source: must be a source's name (relay.models.names)"

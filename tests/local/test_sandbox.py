"""The vendor sandboxes answer as the vendors document (200 / 400 / 401), independently of the mappers."""

from __future__ import annotations

import json

import pytest

from relay.queued.routing import Router
from relay_tools.sandbox import Sandboxes

from ..conftest import SECRETS, app_event, event, make_config, web_event

CONFIG = make_config()


def post(path: str, headers: dict, body) -> tuple[int, str, int]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, message, _vendor, events = Sandboxes.handle(SANDBOX, path, headers, raw)
    return status, message, events


SANDBOX = Sandboxes(CONFIG)
SANDBOX.server.server_close()  # only the request checks are used here, not the socket


def relay_request(vendor: str, data: dict):
    """The relay's own request for `data`, addressed to the sandbox's path for that vendor."""
    from urllib.parse import urlsplit

    router = Router(CONFIG)
    outcome = router.route(event(data))[vendor]
    request = router.adapters[vendor].request_for(outcome)
    url = urlsplit(request.url)
    if vendor == "appsflyer":
        return f"/appsflyer{url.path}", request
    return f"/{vendor}{'/v1/event' if vendor == 'applovin' else '/api'}?{url.query}", request


@pytest.mark.parametrize(
    ("vendor", "data"), [("applovin", web_event()), ("adroll", web_event()), ("appsflyer", app_event("ios"))]
)
def test_what_the_relay_sends_is_accepted(vendor, data):
    path, request = relay_request(vendor, data)
    assert post(path, request.headers, request.content)[:2] == (200, "OK")


@pytest.mark.parametrize("vendor", ["applovin", "adroll", "appsflyer"])
def test_wrong_credentials_get_401(vendor):
    path, request = relay_request(vendor, app_event("ios") if vendor == "appsflyer" else web_event())
    headers = {k: "nope" if k.lower() in ("authorization", "authentication") else v for k, v in request.headers.items()}
    assert post(path, headers, request.content)[0] == 401


def test_applovin_drops_a_batch_with_one_bad_event_and_over_100():
    path, request = relay_request("applovin", web_event())
    good = request.json["events"][0]
    bad = {**good, "user_data": {**good["user_data"], "email": "clear@example.com"}}
    status, message, _ = post(path, request.headers, {"events": [good, bad]})
    assert status == 400 and message == "events[1]: invalid email not hashed; entire batch is dropped"
    assert post(path, request.headers, {"events": [good] * 101})[0] == 400


def test_appsflyer_rules():
    path, request = relay_request("appsflyer", app_event("ios"))
    body = dict(request.json)
    assert post(path, request.headers, {**body, "eventTime": "2025-03-12T13:01:25Z"})[1] == (
        "eventTime must be yyyy-mm-dd hh:mm:ss.sss"
    )
    assert post(path, request.headers, {**body, "pad": "x" * 1100})[1] == "Payload too large"
    assert post(path, request.headers, {**body, "eventValue": json.dumps({"af_revenue": 9.99})})[1] == (
        "eventValue values must be strings"
    )
    # the documented trap: an iOS app id without "id" gets 200 OK and nothing is recorded
    assert post("/appsflyer/inappevent/123456789", request.headers, body) == (200, "OK", 0)


def test_adroll_rules():
    path, request = relay_request("adroll", web_event())
    (event_body,) = request.json
    assert post(path, request.headers, [{**event_body, "timestamp": 1741784485001}])[0] == 400  # ms, not s
    no_cookie = {**event_body, "identifiers": {}}
    assert post(path, request.headers, [no_cookie])[1] == "[0]: invalid identifiers.first_party_cookie"
    assert post(path, request.headers, {"not": "an array"})[0] == 400


def test_received_requests_are_kept():
    before = len(SANDBOX.requests("adroll"))
    path, request = relay_request("adroll", web_event())
    post(path, request.headers, request.content)
    assert len(SANDBOX.requests("adroll")) == before + 1
    assert SANDBOX.requests("adroll")[-1].summary()["status"] == 200
    assert SECRETS["adroll"] not in json.dumps(SANDBOX.requests("adroll")[-1].summary())

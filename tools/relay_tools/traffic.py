"""The synthetic events `relay load`, `relay soak` and `relay outage` send."""

from __future__ import annotations

from typing import Any

FPC = "0123456789abcdef0123456789abcdef-1741784485001"  # an AdRoll first-party cookie of the documented form


def purchase_event(
    event_id: str, *, app: bool = False, email: str = "buyer@example.com", properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A canonical purchase for `relay load` and `relay soak`: on the web it goes to AppLovin and AdRoll;
    from the Android app to AppsFlyer only (no page_url for AppLovin, no AdRoll cookie)."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "name": "purchase",
        "value": "19.99",
        "currency": "USD",
        "order_id": event_id,
        "items": [{"id": "sku-1", "price": "19.99", "quantity": 1}],
        "user": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 relay-load", "email": email},
    }
    if properties:
        event["properties"] = properties
    if app:
        event.update(
            source="app",
            device={"os": "android", "os_version": "14", "advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d"},
            vendor_ids={"appsflyer": {"appsflyer_id": "1541234567890-1234567"}},
        )
    else:
        event.update(
            source="web",
            page_url="https://shop.example.com/checkout/done",
            vendor_ids={"adroll": {"first_party_cookie": FPC}},
        )
    return event

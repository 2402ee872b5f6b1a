"""AdRoll (NextRoll) server-to-server events API.

https://apidocs.nextroll.com/server-to-server-api/reference.html
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import urlencode

from relay.models.config import AdRollConfig
from relay.models.event import Event, Item
from relay.vendors.base import (
    Errors,
    Mapped,
    MappingResult,
    Skipped,
    VendorAdapter,
    VendorRequest,
    drop_none,
    json_text,
    plain_decimal,
    query_value,
)

ENDPOINT = "https://srv.adroll.com/api"
MAX_BATCH = 100
FIRST_PARTY_COOKIE = re.compile(r"[0-9a-fA-F]{32}-[0-9]{13}")
DEVICE_OS = {
    "ios": "iOS",
    "android": "Android",
    "macos": "macOS",
    "windows": "Windows",
    "linux": "Linux",
    "other": "other",
}


def _product(item: Item) -> dict[str, Any]:
    product: dict[str, Any] = {"product_id": item.id}  # each other field when present, in this order
    if item.group is not None:
        product["product_group"] = item.group
    if item.quantity is not None:
        product["quantity"] = item.quantity
    if item.price is not None:
        product["price"] = plain_decimal(item.price)
    if item.category is not None:
        product["category"] = item.category
    return product


def _attributes(event: Event) -> dict[str, Any]:
    """The event's `event_attributes`, each when present."""
    attributes: dict[str, Any] = {}
    if event.order_id is not None:
        attributes["order_id"] = event.order_id
    if event.search_query is not None:
        attributes["keywords"] = event.search_query
    if event.items:
        attributes["products"] = [_product(i) for i in event.items]
    return attributes


def timestamp_seconds(event: Event) -> int | float:
    """UTC seconds; milliseconds as decimals when there are any."""
    ms = event.epoch_ms
    # int / int is correctly rounded in Python: the double nearest the exact decimal, as Decimal(ms) / 1000 gives
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


class AdRoll(VendorAdapter[AdRollConfig]):
    name = "adroll"
    max_batch = MAX_BATCH
    # timestamp: "the current time will be used if omitted"; no oldest time is documented
    max_event_age_days = None
    secret_headers = frozenset({"Authorization"})
    identifier_fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "email": ("identifiers.email_sha256", "identifiers.email_md5"),
        "click_id": ("identifiers.adct",),
        "cookie": ("identifiers.first_party_cookie",),
        "device_id": ("identifiers.device_id",),
        "ip": ("ip",),
        "user_agent": ("user_agent",),
    }

    def map_event(self, event: Event, vendor_name: str) -> MappingResult:
        app_fields: dict[str, Any] = {}
        if event.source == "app":
            if not self.config.app_url_domain:
                return Skipped("AdRoll app events need a page URL domain: set [adroll] app_url_domain")
            app_fields = drop_none(
                {
                    "device_os": DEVICE_OS.get(event.device.os or ""),
                    "device_type": event.device.type,
                    "package_app_name": event.app.bundle_id,
                    "package_app_version": event.app.version,
                }
            )
            page_location = f"https://{self.config.app_url_domain}"
            if app_fields:
                page_location += "?" + urlencode(app_fields)
        else:
            page_location = event.page_url or ""
        errors = Errors()
        user = event.user
        errors.require(user.ip, "user.ip", "AdRoll's ip")
        identifiers = self._identifiers(event, errors)
        if errors:
            return errors.invalid()
        attributes = _attributes(event)
        payload = drop_none(
            {
                "advertisable_eid": self.config.advertisable_eid,
                "pixel_eid": self.config.pixel_eid,
                "event_name": vendor_name,
                "page_location": page_location,
                "ip": user.ip,
            }
        )
        # the rest in this order, each when present (a dict of Nones filtered cost the mapping a tenth)
        payload["identifiers"] = identifiers
        if user.user_agent is not None:
            payload["user_agent"] = user.user_agent
        if event.value is not None:
            payload["conversion_value"] = plain_decimal(event.value)
        if event.currency is not None:
            payload["currency"] = event.currency
        payload["timestamp"] = timestamp_seconds(event)
        if attributes:
            payload["event_attributes"] = attributes
        if event.properties:  # AdRoll's example writes ", " and ": "
            payload["external_data"] = json_text(event.properties, compact=False)
        payload.update(app_fields)
        return Mapped(payload)

    def _identifiers(self, event: Event, errors: Errors) -> dict[str, str]:
        user, device, ids = event.user, event.device, event.vendor_ids.adroll
        cookie = ids.first_party_cookie if ids else None
        if errors.require(
            cookie, "vendor_ids.adroll.first_party_cookie", "AdRoll needs identifiers.first_party_cookie"
        ):
            if not FIRST_PARTY_COOKIE.fullmatch(cookie or ""):
                errors.add(
                    "vendor_ids.adroll.first_party_cookie",
                    "must be the __adroll_fpc value: 32 hex characters, '-', epoch milliseconds",
                )
        found: dict[str, str] = {}  # each when present, in this order
        if cookie is not None:
            found["first_party_cookie"] = cookie
        adct = (ids.adct if ids else None) or query_value(event.page_url, "adct")
        if adct is not None:
            found["adct"] = adct
        if event.consent.ad_user_data is not False:  # shared unless the user declined
            if user.email:
                found["email_sha256"] = user.email_sha256
            if user.email_md5 is not None:
                found["email_md5"] = user.email_md5
        device_id = device.idfa or device.advertising_id or device.amazon_aid or device.oaid
        if device_id is not None:
            found["device_id"] = device_id
        if user.id is not None:
            found["user_id"] = user.id
        return found

    def build_request(self, target: str, payloads: list[dict[str, Any]]) -> VendorRequest:
        if not 1 <= len(payloads) <= MAX_BATCH:
            raise ValueError(f"AdRoll takes 1 to {MAX_BATCH} events per request, not {len(payloads)}")
        assert self.config.token is not None and self.config.advertisable_eid is not None
        query = {"advertisable": self.config.advertisable_eid}
        if self.config.dry_run:
            query["dry_run"] = "true"
        return VendorRequest(
            method="POST",
            url=f"{self.config.endpoint or ENDPOINT}?{urlencode(query)}",
            headers={
                "Authorization": f"Token {self.config.token.get_secret_value()}",
                "Content-Type": "application/json",
            },
            json=payloads,
            secret_headers=self.secret_headers,
        )

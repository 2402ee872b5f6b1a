"""AppLovin Axon Conversion API: standard and restricted lead-gen.

https://support.axon.ai/en/growth/promoting-your-websites/api/axon-conversion-api
https://support.axon.ai/en/growth/promoting-your-websites/api/conversion-api-for-restricted-lead-generation
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

from relay.models import pii
from relay.models.config import AppLovinConfig
from relay.models.event import Event, Item
from relay.models.event_names import APPLOVIN_RESTRICTED_EVENT_NAMES
from relay.vendors.base import (
    Errors,
    Mapped,
    MappingResult,
    Skipped,
    VendorAdapter,
    VendorRequest,
    drop_none,
    json_number,
    query_value,
)

ENDPOINT = "https://b.applovin.com/v1/event"
MAX_BATCH = 100
OS_NAMES = {"ios": "ios", "android": "android", "macos": "desktop_os", "windows": "desktop_os", "linux": "desktop_os"}
IDENTIFIERS = ("aleid", "axwrt", "alart", "client_id", "user_id", "email", "phone")
IDENTIFIER_SOURCES = (
    "vendor_ids.applovin.aleid, vendor_ids.applovin.axwrt, vendor_ids.applovin.alart, "
    "user.cookie_id, user.id, user.email or user.phone"
)
# Restricted lead-gen flow: the only user_data fields allowed, and the identifiers.
RESTRICTED_USER_FIELDS = (
    "alart",
    "aleid",
    "esi",
    "client_id",
    "client_ip_address",
    "client_user_agent",
    "user_id",
)
RESTRICTED_IDENTIFIERS = ("client_id", "alart", "user_id")

# EventData per event name: (required keys, keys sent when present). Others: data is null.
DATA_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "generate_lead": (("currency", "value"), ()),
    "view_item": (("items",), ("currency", "value")),
    "add_to_cart": (("items",), ("currency", "value")),
    "begin_checkout": (("currency", "items", "value"), ()),
    "purchase": (("currency", "items", "transaction_id", "value"), ()),
    "add_payment_info": ((), ("currency", "items", "value")),
    "sign_up": ((), ("currency", "value")),
    "login": ((), ()),
}
DATA_SOURCES = {"currency": "currency", "value": "value", "items": "items", "transaction_id": "order_id"}


def _item(item: Item) -> dict[str, Any]:
    out: dict[str, Any] = {"item_id": item.id}  # each other field when present, in this order
    if item.name is not None:
        out["item_name"] = item.name
    if item.variant_id is not None:
        out["item_variant_id"] = item.variant_id
    if item.category is not None:
        out["item_category_id"] = item.category
    if item.brand is not None:
        out["item_brand"] = item.brand
    if item.price is not None:
        out["price"] = json_number(item.price)
    if item.quantity is not None:
        out["quantity"] = item.quantity
    if item.discount is not None:
        out["discount"] = json_number(item.discount)
    return out


def domain_url(url: str) -> str:
    """`https://example.com/signup?x=1` -> `https://example.com/` (restricted flow: domain only)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/"


class AppLovin(VendorAdapter[AppLovinConfig]):
    name = "applovin"
    max_batch = MAX_BATCH
    # event_time is "the current Unix epoch time in milliseconds"; no oldest time is documented
    max_event_age_days = None
    secret_headers = frozenset({"Authorization"})
    identifier_fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "email": ("user_data.email",),
        "phone": ("user_data.phone",),
        "click_id": ("user_data.aleid", "user_data.alart", "user_data.axwrt"),
        "cookie": ("user_data.client_id",),
        "device_id": ("user_data.ifa", "user_data.idfv"),
        "ip": ("user_data.client_ip_address",),
        "user_agent": ("user_data.client_user_agent",),
    }

    @property
    def restricted(self) -> bool:
        return self.config.mode == "restricted_lead_gen"

    def map_event(self, event: Event, vendor_name: str) -> MappingResult:
        if self.restricted and vendor_name not in APPLOVIN_RESTRICTED_EVENT_NAMES:
            return Skipped(
                f"AppLovin restricted lead-gen mode sends only page_view and generate_lead, not '{vendor_name}'"
            )
        if vendor_name == "app_open" and event.source != "app":
            return Skipped("AppLovin's app_open is for mobile app integrations only: this is a web event")
        if event.page_url is None:  # only app events can lack it (the model requires it for web)
            return Skipped("AppLovin needs event_source_url: send page_url with app events to include AppLovin")
        errors = Errors()
        user = event.user
        errors.require(user.ip, "user.ip", "AppLovin's client_ip_address")
        errors.require(user.user_agent, "user.user_agent", "AppLovin's client_user_agent")
        data = self._data(event, vendor_name, errors)
        user_data = self._user_data(event, errors)
        if errors:
            return errors.invalid()
        assert event.page_url is not None
        payload: dict[str, Any] = {
            "name": vendor_name,
            "event_time": event.epoch_ms,
            "event_source_url": domain_url(event.page_url) if self.restricted else event.page_url,
            "user_data": user_data,
            "data": data,
            "dedupe_id": event.event_id,
        }
        return Mapped(payload)

    def _user_data(self, event: Event, errors: Errors) -> dict[str, Any]:
        user, device, ids = event.user, event.device, event.vendor_ids.applovin
        share_pii = event.consent.ad_user_data is not False
        ud: dict[str, Any] = {
            "client_ip_address": user.ip,
            "client_user_agent": user.user_agent,
            "esi": event.source,
            # an explicit value wins; else the landing URL's, which the restricted mode's cut URL would lose
            "aleid": (ids and ids.aleid) or query_value(event.page_url, "aleid"),
            "axwrt": ids and ids.axwrt,
            "alart": (ids and ids.alart) or query_value(event.page_url, "alart"),
            "client_id": user.cookie_id,
            "user_id": user.id,
        }
        if self.restricted:
            if user.id is not None and not (user.id.isascii() and user.id.isdigit()):
                errors.add("user.id", "must be numeric in AppLovin restricted lead-gen mode (user_id)")
            ud = drop_none({k: ud.get(k) for k in RESTRICTED_USER_FIELDS})
            if ud.keys().isdisjoint(RESTRICTED_IDENTIFIERS):
                errors.add(
                    "user",
                    "AppLovin restricted lead-gen mode needs user.cookie_id (client_id), "
                    "vendor_ids.applovin.alart or a numeric user.id",
                )
            return ud
        if share_pii and user.email:
            ud["email"] = user.email_sha256
        if share_pii and user.phone:
            ud["phone"] = pii.hash_phone_digits(user.phone, user.country, user.phone_e164)
        ud["country_code"] = user.country
        if user.zip is not None:
            ud["zip"] = user.zip[:5] if user.country == "US" else user.zip
        ud["os"] = OS_NAMES.get(device.os or "")
        ud["sid"] = event.session_id
        ud["ifa"] = device.idfa or device.advertising_id
        ud["idfv"] = device.idfv
        ud = drop_none(ud)
        if ud.keys().isdisjoint(IDENTIFIERS):
            errors.add("user", f"AppLovin needs at least one identifier: {IDENTIFIER_SOURCES}")
        return ud

    def _data(self, event: Event, vendor_name: str, errors: Errors) -> dict[str, Any] | None:
        required, optional = DATA_RULES.get(vendor_name, ((), ()))
        if not required and not optional:
            return None  # page_view, app_open: "set data to null"
        values: dict[str, Any] = {
            "currency": event.currency,
            "value": None if event.value is None else json_number(event.value),
            "items": [_item(i) for i in event.items] if event.items else None,
            "transaction_id": event.order_id,
        }
        data = {}
        for key in required:
            value = values[key]
            if value is None or value == "" or value == []:
                errors.require(value, DATA_SOURCES[key], f"AppLovin's {vendor_name} needs data.{key}")
            else:
                data[key] = value
        for key in optional:
            if values[key] is not None:
                data[key] = values[key]
        return data or None

    def build_request(self, target: str, payloads: list[dict[str, Any]]) -> VendorRequest:
        if not 1 <= len(payloads) <= MAX_BATCH:
            raise ValueError(f"AppLovin takes 1 to {MAX_BATCH} events per request, not {len(payloads)}")
        assert self.config.api_key is not None and self.config.pixel_id is not None
        url = f"{self.config.endpoint or ENDPOINT}?{urlencode({'pixel_id': self.config.pixel_id})}"
        return VendorRequest(
            method="POST",
            url=url,
            headers={"Authorization": self.config.api_key.get_secret_value(), "Content-Type": "application/json"},
            json={"events": payloads},
            secret_headers=self.secret_headers,
        )

"""AppsFlyer S2S in-app events API, v3 and legacy v2.

https://dev.appsflyer.com/hc/reference/s2s-events-api3-overview
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC
from typing import Any, ClassVar
from urllib.parse import quote

from relay.models import pii
from relay.models.config import AppsFlyerConfig
from relay.models.event import Event
from relay.vendors.base import (
    Errors,
    Mapped,
    MappingResult,
    Skipped,
    VendorAdapter,
    VendorRequest,
    body_bytes,
    drop_none,
    json_text,
    plain_decimal,
)

ENDPOINTS = {"v3": "https://api3.appsflyer.com", "v2": "https://api2.appsflyer.com"}
MAX_BODY_BYTES = 1024
MAX_IP_CHARS = 16
APPSFLYER_ID = re.compile(r"[0-9]{13}-[0-9]+")
# Events whose value is revenue (af_revenue); others carry the value as af_price, as AppsFlyer's
# recommended event structures do, so that an add-to-cart does not count as revenue.
REVENUE_EVENTS = frozenset({"af_purchase", "af_subscribe"})


def event_time(event: Event) -> str:
    """`yyyy-mm-dd hh:mm:ss.sss` in UTC."""
    ts = event.event_time.astimezone(UTC)
    return ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def stringify(value: Any) -> str:
    """eventValue values are strings: other integrators saw unstringified values dropped without an error."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return json.dumps(value, allow_nan=False)
    return json_text(value)


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _takes_aie(os_name: str | None, os_version: str | None) -> bool:
    """`aie` (advertising id enabled) is for Android, and for iOS before 14; iOS 14.5 and later send `att`."""
    if os_name == "android":
        return True
    if os_name != "ios" or not os_version:
        return False
    major = os_version.split(".", 1)[0]
    return major.isascii() and major.isdigit() and int(major) < 14


class AppsFlyer(VendorAdapter[AppsFlyerConfig]):
    name = "appsflyer"
    max_batch = 1  # one event per request
    # eventTime: absent means the arrival time; the S2S reference documents no oldest time
    max_event_age_days = None
    secret_headers = frozenset({"authentication"})
    identifier_fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "email": ("email_hashed",),
        "phone": ("phone_number_hashed", "phone_number_e164_hashed"),
        "device_id": ("appsflyer_id", "idfa", "idfv", "advertising_id", "oaid", "amazon_aid", "imei"),
        "ip": ("ip",),
        "user_agent": ("ua",),
    }

    def map_event(self, event: Event, vendor_name: str) -> MappingResult:
        if event.source != "app":
            return Skipped("AppsFlyer's S2S in-app events API takes app events only (source is 'web')")
        errors = Errors()
        os_name = event.device.os
        if os_name not in ("ios", "android"):
            errors.add("device.os", "must be 'ios' or 'android' for AppsFlyer (it chooses the app id)")
            return errors.invalid()
        app_id = self.config.ios_app_id if os_name == "ios" else self.config.android_app_id
        if not app_id:
            return Skipped(f"no [appsflyer] {os_name}_app_id configured")
        ids = event.vendor_ids.appsflyer
        af_id = ids.appsflyer_id if ids else None
        if errors.require(af_id, "vendor_ids.appsflyer.appsflyer_id", "AppsFlyer's appsflyer_id is mandatory"):
            if not APPSFLYER_ID.fullmatch(af_id or ""):
                errors.add(
                    "vendor_ids.appsflyer.appsflyer_id", "must be 13 digits, '-', digits (1541234567890-1234567)"
                )
        event_value = self._event_value(event, vendor_name, errors)
        if errors:
            return errors.invalid()
        body: dict[str, Any] = {
            "appsflyer_id": af_id,
            "eventName": vendor_name,
            "eventValue": json_text(event_value) if event_value else "",
            "eventTime": event_time(event),
            "eventCurrency": event.currency,
            **self._identity(event),
        }
        if self.config.api == "v2":
            body["af_events_api"] = "true"
        body = drop_none(body)
        size = len(body_bytes(body))
        if size > MAX_BODY_BYTES:
            largest = sorted(body, key=lambda k: len(body_bytes(body[k])), reverse=True)[:3]
            errors.add(
                "(body)",
                f"AppsFlyer takes a JSON body of at most {MAX_BODY_BYTES} bytes; this event is {size} bytes "
                f"(largest fields: {', '.join(largest)})",
            )
            return errors.invalid()
        return Mapped(body, target=app_id)

    def _event_value(self, event: Event, vendor_name: str, errors: Errors) -> dict[str, str | list[str]]:
        ev: dict[str, str | list[str]] = {}
        items = event.items or []
        computed: dict[str, str | list[str] | None] = {
            "af_currency": event.currency,
            "af_order_id": event.order_id,
            "af_search_string": event.search_query,
            "af_content_id": _one_or_list([i.id for i in items]) if items else None,
        }
        if items and all(i.quantity is not None for i in items):
            computed["af_quantity"] = _one_or_list([str(i.quantity) for i in items])
        if event.value is not None:
            computed["af_revenue" if vendor_name in REVENUE_EVENTS else "af_price"] = plain_decimal(event.value)
        elif items and all(i.price is not None for i in items):
            computed["af_price"] = _one_or_list([plain_decimal(i.price) for i in items if i.price is not None])
        computed = drop_none(computed)
        for key, value in (event.properties or {}).items():
            if key in computed:
                errors.add(f"properties.{key}", "is set by the relay from the event's own fields: remove it")
            else:
                ev[key] = stringify(value)
        ev.update(computed)  # type: ignore[arg-type]
        return ev

    def _identity(self, event: Event) -> dict[str, Any]:
        user, device, app, consent = event.user, event.device, event.app, event.consent
        ios = device.os == "ios"
        out: dict[str, Any] = {
            "customer_user_id": user.id,
            "ip": user.ip if user.ip and _is_ipv4(user.ip) else None,
            "os": device.os_version,
            "bundleIdentifier": app.bundle_id,
            "app_version_name": app.version,
            "app_store": app.store,
            "ua": user.user_agent,
            "att": device.att if ios else None,
            "aie": device.ad_tracking_enabled if _takes_aie(device.os, device.os_version) else None,
            "idfa": device.idfa,
            "idfv": device.idfv,
            "advertising_id": device.advertising_id,
            "oaid": device.oaid,
            "amazon_aid": device.amazon_aid,
            "imei": device.imei,
            "app_set_id": device.app_set_id.model_dump() if device.app_set_id else None,
            "fb_login_id": user.fb_login_id,
            "custom_data": json_text(app.custom_data) if app.custom_data else None,
            "app_type": "app_clip" if app.app_clip and ios else None,
        }
        if consent.ad_user_data is not False:
            if user.email:
                out["email_hashed"] = user.email_sha256
            if user.phone:
                out["phone_number_hashed"] = pii.hash_phone_digits(user.phone, user.country, user.phone_e164)
                out["phone_number_e164_hashed"] = pii.hash_phone_e164(user.phone, user.country, user.phone_e164)
            if user.first_name:
                out["first_name_hashed"] = pii.hash_name(user.first_name)
            if user.last_name:
                out["last_name_hashed"] = pii.hash_name(user.last_name)
        out["consent_data"] = consent_data(event)
        if consent.ad_storage is False:
            out["sharing_filter"] = "all"
        elif consent.sharing_filter is not None:
            out["sharing_filter"] = consent.sharing_filter
        return out

    def build_request(self, target: str, payloads: list[dict[str, Any]]) -> VendorRequest:
        if len(payloads) != 1:
            raise ValueError(f"AppsFlyer takes exactly one event per request, not {len(payloads)}")
        base = (self.config.endpoint or ENDPOINTS[self.config.api]).rstrip("/")
        assert self.config.key is not None
        return VendorRequest(
            method="POST",
            url=f"{base}/inappevent/{quote(target, safe='')}",
            headers={"authentication": self.config.key.get_secret_value(), "Content-Type": "application/json"},
            json=payloads[0],
            secret_headers=self.secret_headers,
        )


def _is_ipv4(ip: str) -> bool:
    """AppsFlyer's `ip` is IPv4 only (at most 16 characters); an IPv6 address is left out."""
    return isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address) and len(ip) <= MAX_IP_CHARS


def consent_data(event: Event) -> dict[str, Any] | None:
    """Exactly one of `tcf` or `manual`. `manual` is sent when any consent signal is present (an
    unset `gdpr_applies` is then taken as true, an unset grant as not granted); none: no consent_data.
    """
    consent = event.consent
    if consent.tcf is not None:
        return {"tcf": consent.tcf.model_dump()}
    signals = (consent.gdpr_applies, consent.ad_storage, consent.ad_user_data, consent.ad_personalization)
    if all(s is None for s in signals):
        return None
    return {
        "manual": {
            "gdpr_applies": consent.gdpr_applies is not False,
            "ad_user_data_enabled": consent.ad_user_data is True,
            "ad_personalization_enabled": consent.ad_personalization is True,
        }
    }

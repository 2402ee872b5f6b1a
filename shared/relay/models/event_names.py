"""Canonical event name -> each vendor's event name (docs/ingest-api.md, "Event names").

`None` means the vendor does not take the event. Deployments override single cells with
``[events.<canonical>] <vendor> = "name"`` (``""`` to skip). Names missing from the table:
AppsFlyer gets them unchanged (custom events are allowed there), AppLovin and AdRoll skip them.
"""

from __future__ import annotations

from collections.abc import Mapping

# Names each vendor documents on its API page (the adapters cite them); an override must use one of them.
APPLOVIN_EVENT_NAMES = frozenset(
    {
        "page_view",
        "view_item",
        "add_to_cart",
        "begin_checkout",
        "purchase",
        "add_payment_info",
        "generate_lead",
        "sign_up",
        "login",
        "app_open",
    }
)
APPLOVIN_RESTRICTED_EVENT_NAMES = frozenset({"page_view", "generate_lead"})
ADROLL_EVENT_NAMES = frozenset(
    {
        "pageView",
        "homeView",
        "productSearch",
        "addToCart",
        "purchase",
        "highValuePage",
        "gatedContent",
        "demoRequest",
        "signupPlan",
        "signupTrial",
        "contactSales",
        "liveChat",
        "formFill",
    }
)
ALLOWED_NAMES: dict[str, frozenset[str] | None] = {
    "applovin": APPLOVIN_EVENT_NAMES,
    "appsflyer": None,  # custom event names are allowed
    "adroll": ADROLL_EVENT_NAMES,
}


def _row(applovin: str | None, appsflyer: str | None, adroll: str | None) -> dict[str, str | None]:
    return {"applovin": applovin, "appsflyer": appsflyer, "adroll": adroll}


DEFAULT_EVENT_NAMES: dict[str, dict[str, str | None]] = {
    "page_view": _row("page_view", None, "pageView"),
    "home_view": _row("page_view", None, "homeView"),
    "view_item": _row("view_item", "af_content_view", "pageView"),
    "search": _row(None, "af_search", "productSearch"),
    "add_to_cart": _row("add_to_cart", "af_add_to_cart", "addToCart"),
    "begin_checkout": _row("begin_checkout", "af_initiated_checkout", None),
    "add_payment_info": _row("add_payment_info", "af_add_payment_info", None),
    "purchase": _row("purchase", "af_purchase", "purchase"),
    "generate_lead": _row("generate_lead", None, "formFill"),
    "sign_up": _row("sign_up", "af_complete_registration", None),
    "login": _row("login", "af_login", None),
    "subscribe": _row(None, "af_subscribe", "signupPlan"),
    "start_trial": _row(None, "af_start_trial", "signupTrial"),
    "app_open": _row("app_open", None, None),
    "high_value_page": _row(None, None, "highValuePage"),
    "gated_content": _row(None, None, "gatedContent"),
    "demo_request": _row(None, None, "demoRequest"),
    "contact_sales": _row(None, None, "contactSales"),
    "live_chat": _row(None, None, "liveChat"),
    "form_fill": _row(None, None, "formFill"),
}


def vendor_event_name(
    canonical: str, vendor: str, overrides: Mapping[str, Mapping[str, str | None]] | None = None
) -> str | None:
    """The vendor's name for `canonical`, or None when the vendor does not take it."""
    override = (overrides or {}).get(canonical, {})
    if vendor in override and override[vendor] is not None:
        return override[vendor] or None  # "" means skip
    row = DEFAULT_EVENT_NAMES.get(canonical)
    if row is not None:
        return row[vendor]
    return canonical if vendor == "appsflyer" else None

"""One adapter per vendor: canonical event -> vendor payload, and the vendor's HTTP request."""

from .adroll import AdRoll
from .applovin import AppLovin
from .appsflyer import AppsFlyer
from .base import Invalid, Mapped, Outcome, Skipped, VendorAdapter, VendorRequest

ADAPTERS: dict[str, type[VendorAdapter]] = {"applovin": AppLovin, "appsflyer": AppsFlyer, "adroll": AdRoll}

__all__ = [
    "ADAPTERS",
    "AdRoll",
    "AppLovin",
    "AppsFlyer",
    "Invalid",
    "Mapped",
    "Outcome",
    "Skipped",
    "VendorAdapter",
    "VendorRequest",
]

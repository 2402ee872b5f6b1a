"""One adapter per vendor: canonical event -> vendor payload, and the vendor's HTTP request."""

from relay.vendors.adroll import AdRoll
from relay.vendors.applovin import AppLovin
from relay.vendors.appsflyer import AppsFlyer
from relay.vendors.base import Invalid, Mapped, MappingResult, Skipped, VendorAdapter, VendorRequest

ADAPTERS: dict[str, type[VendorAdapter]] = {"applovin": AppLovin, "appsflyer": AppsFlyer, "adroll": AdRoll}

__all__ = [
    "ADAPTERS",
    "AdRoll",
    "AppLovin",
    "AppsFlyer",
    "Invalid",
    "Mapped",
    "MappingResult",
    "Skipped",
    "VendorAdapter",
    "VendorRequest",
]

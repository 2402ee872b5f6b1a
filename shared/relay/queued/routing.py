"""Every event gets exactly one outcome per vendor: a payload, skipped (with a reason) or invalid."""

from __future__ import annotations

import difflib

from relay.models.config import RelayConfig
from relay.models.event import VENDORS, Event
from relay.models.event_names import DEFAULT_EVENT_NAMES, vendor_event_name
from relay.vendors import ADAPTERS, Mapped, MappingResult, Skipped, VendorAdapter

# Vendors whose data use needs device storage consent (cookies/ids): skipped on ad_storage=false.
# AppsFlyer still gets the event, with consent_data and sharing_filter "all".
AD_STORAGE_VENDORS = frozenset({"applovin", "adroll"})


class Router:
    def __init__(self, config: RelayConfig):
        self.config = config
        self.adapters: dict[str, VendorAdapter] = {
            name: ADAPTERS[name](config.vendor(name)) for name in config.enabled_vendors
        }
        self._overrides = config.event_overrides
        self.known_names = frozenset(DEFAULT_EVENT_NAMES) | frozenset(self._overrides)

    def route(self, event: Event) -> dict[str, MappingResult]:
        return {vendor: self.route_one(event, vendor) for vendor in VENDORS}

    def route_one(self, event: Event, vendor: str) -> MappingResult:
        adapter = self.adapters.get(vendor)
        if adapter is None:
            return Skipped(f"{vendor} is not enabled in the relay's configuration")
        if event.destinations is not None and vendor not in event.destinations:
            return Skipped(f"{vendor} is not in the event's destinations")
        name = vendor_event_name(event.name, vendor, self._overrides)
        if name is None:
            return Skipped(f"no {vendor} event is mapped to '{event.name}'")
        if vendor in AD_STORAGE_VENDORS and event.consent.ad_storage is False:
            return Skipped("consent.ad_storage is false")
        return adapter.map_event(event, name)

    def near_names(self, name: str) -> list[str]:
        """Known canonical names close to `name` (a misspelling), nearest first."""
        return difflib.get_close_matches(name, sorted(self.known_names), n=3, cutoff=0.75)

    @staticmethod
    def destinations(outcomes: dict[str, MappingResult]) -> list[str]:
        """The vendors that will get the event (the SNS `destinations` attribute)."""
        return [v for v, o in outcomes.items() if isinstance(o, Mapped)]

"""Every event gets exactly one outcome per connection its source may reach: a payload, skipped (with a
reason) or invalid; a vendor none of whose connections it may reach gets one outcome too: skipped."""

from __future__ import annotations

import difflib

from relay.models.config import RelayConfig
from relay.models.errors import FieldError
from relay.models.event import Event
from relay.models.event_names import DEFAULT_EVENT_NAMES, vendor_event_name
from relay.models.names import DEFAULT, VENDORS, vendor_of
from relay.vendors import ADAPTERS, Invalid, Mapped, MappingResult, Skipped, VendorAdapter

# Vendors whose data use needs device storage consent (cookies/ids): skipped on ad_storage=false.
# AppsFlyer still gets the event, with consent_data and sharing_filter "all".
AD_STORAGE_VENDORS = frozenset({"applovin", "adroll"})


class Router:
    def __init__(self, config: RelayConfig):
        self.config = config
        self.adapters: dict[str, VendorAdapter] = {
            connection: ADAPTERS[vendor_of(connection)](section)
            for connection, section in config.sections().items()
            if section.enabled
        }
        self.reachable = {name: config.reachable(name) for name in config.source_configs()}
        # per source, each vendor's reachable connections (VENDORS' order), worked out once
        self._by_vendor = {
            name: [(vendor, [c for c in reachable if vendor_of(c) == vendor]) for vendor in VENDORS]
            for name, reachable in self.reachable.items()
        }
        self._overrides = config.event_overrides
        self.known_names = frozenset(DEFAULT_EVENT_NAMES) | frozenset(self._overrides)

    def route(self, event: Event, source: str = DEFAULT) -> dict[str, MappingResult]:
        """The outcome for each connection `source` may reach (narrowed by the event's `connections`), keyed
        by connection id, and for each vendor it reaches no connection of."""
        wanted = event.connections
        outcomes: dict[str, MappingResult] = {}
        for vendor, mine in self._by_vendor.get(source) or [(vendor, []) for vendor in VENDORS]:
            if not mine:
                outcomes[vendor] = Skipped(self._not_reached(vendor, source))
            for connection in mine:
                if wanted is None or connection in wanted:
                    outcomes[connection] = self.route_one(event, connection)
                else:
                    outcomes[connection] = Skipped(f"{connection} is not in the event's connections")
        return outcomes

    def _not_reached(self, vendor: str, source: str) -> str:
        if self.config.sources is None:
            return f"{vendor} is not enabled in the relay's configuration"
        return f"source '{source}' reaches no enabled {vendor} connection"

    def unknown_connections(self, event: Event, source: str = DEFAULT) -> list[FieldError]:
        """An error for each connection the event names that `source` may not reach (or that does not exist:
        the answer is the same, so a source learns nothing of another's connections)."""
        if not event.connections:
            return []
        reachable = self.reachable.get(source, [])
        return [
            FieldError(f"connections[{i}]", f"'{c}' is not a connection source '{source}' may reach")
            for i, c in enumerate(event.connections or ())
            if c not in reachable
        ]

    def route_one(self, event: Event, connection: str) -> MappingResult:
        adapter = self.adapters.get(connection)
        vendor = vendor_of(connection)
        if adapter is None:
            return Skipped(f"{connection} is not enabled in the relay's configuration")
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
        """The connections that will get the event (the answer's `destinations`)."""
        return Router.sorted_outcomes(outcomes)[0]

    @staticmethod
    def sorted_outcomes(
        outcomes: dict[str, MappingResult],
    ) -> tuple[list[str], dict[str, str], dict[str, list[dict[str, str]]]]:
        """In one pass: the destinations, the reason of each connection that skipped the event, and the field
        errors of each that found it invalid."""
        destinations: list[str] = []
        skipped: dict[str, str] = {}
        invalid: dict[str, list[dict[str, str]]] = {}
        for connection, outcome in outcomes.items():
            if isinstance(outcome, Mapped):
                destinations.append(connection)
            elif isinstance(outcome, Skipped):
                skipped[connection] = outcome.reason
            elif isinstance(outcome, Invalid):
                invalid[connection] = [e.as_dict() for e in outcome.errors]
        return destinations, skipped, invalid

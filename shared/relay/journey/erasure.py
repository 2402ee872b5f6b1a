"""A person's events taken out of journey items (`relay forget`, docs/operations.md "Erasure").

An ingest journey loses the event's entry; a vendor journey loses the event's outcome, and every request that
carried it loses its body and the vendor's answer (a batched request carries other people's events too: its
body cannot be cut to one event's share without the vendor's format, so it is erased whole) and no longer
names the event. What is left tells nothing of the person.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

ERASED = "erased (relay forget)"
FORGOTTEN = "forgotten"  # the ingest claim's attribute: `relay trace` and GET /v1/events answer "unknown"


def erase_events(data: dict[str, Any], event_ids: Collection[str]) -> tuple[dict[str, Any], bool]:
    """`data` (a decoded journey) without `event_ids`; True when it named any of them."""
    changed = False
    events = data.get("events")
    if isinstance(events, dict):
        for event_id in [e for e in events if e in event_ids]:
            del events[event_id]
            changed = True
    for request in data.get("requests", []):
        carried = [e for e in request.get("events", []) if e in event_ids]
        if carried:
            request["events"] = [e for e in request["events"] if e not in event_ids]
            request["body"] = request["response"] = ERASED
            changed = True
    return data, changed

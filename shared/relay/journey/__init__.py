"""Each event's journey, kept beside the ledger in the idempotency table (docs/troubleshooting.md).

One per ingest request and one per vendor-function invocation (never one per event and attempt):

- on the ingest's batch record ``s2s-relay.ingest.batch#<batch>``, which settles the request's claims
  anyway (no call of its own on the client's path): when the request was accepted, its request id, the
  caller's address (truncated), and per event its destinations, what each vendor skipped or found invalid,
  and its bundle;
- ``s2s-relay.<vendor>.journey#<batch>``: every vendor request of the invocation (when, attempt, HTTP
  status, latency, the vendor's answer up to 1 KB, the request as sent: secret headers masked, IP addresses
  truncated) and each event's outcome.

The ledger's claims name their batch (and, once taken over, the batches before: ``trail``), which is how
`relay.journey.trace` finds an event's journey items from its event_id. The items' payload is zlib-compressed
JSON (``data``), so that a request of 100 events costs a few write units; the items live as long as the
claims (the ledger's horizon) and carry ``journey_minute``/``at`` for the table's ``journeys`` index,
which the debugger page reads the latest items from.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pydantic_core

from relay.aws.clients import LazyClient
from relay.aws.ledger import COMPLETED_TTL_SECONDS, KEY_PREFIX

JOURNEY = "JOURNEY"  # the items' status
INDEX = "journeys"  # the table's global secondary index of journey items (template.yaml)
MINUTE, AT = "journey_minute", "at"  # its hash key (minute#shard) and range key (ms since the epoch)
SHARDS = 8  # the index's hash keys per minute: a busy minute's writes spread over several partitions
MAX_RESPONSE_BYTES = 1024  # of each vendor answer
# the compressed payload of one item: DynamoDB allows 400 KB an item, attributes and key included
MAX_DATA_BYTES = 350_000
NOT_KEPT = "not kept: the journey item would exceed DynamoDB's 400 KB item size"


def journey_key(vendor: str, batch: str) -> str:
    return f"{KEY_PREFIX}.{vendor}.journey#{batch}"


def iso(at: float) -> str:
    """A time as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def minute_key(at: float, batch: str) -> str:
    """The index's hash key of an item written at `at`: its minute and one of SHARDS shards."""
    shard = sum(batch.encode()) % SHARDS
    return f"{datetime.fromtimestamp(at, UTC):%Y-%m-%dT%H:%M}#{shard}"


def truncate_ip(value: str) -> str | None:
    """An IP address truncated to its network (IPv4 /24, IPv6 /48); None when `value` is not one."""
    parts = value.strip().split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and int(p) <= 255 for p in parts):
        # dotted IPv4, the usual case: its /24 by hand, a tenth of ipaddress's time (one per event sent)
        if all(p == "0" or not p.startswith("0") for p in parts):
            return ".".join([*(str(int(p)) for p in parts[:3]), "0"])
        return None  # leading zeros: ipaddress refuses them (ambiguous octal)
    import ipaddress  # IPv6 only

    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


# JSON string values that are IP addresses; the closing quote may be escaped, as in a JSON string that holds
# JSON (AppsFlyer's eventValue). IPv4 is matched exactly (octets 0-255, no leading zeros) and truncated by
# the substitution itself (surrounding blanks dropped); an IPv6 candidate (hex groups with a colon early)
# is checked by truncate_ip, so "10:30:00" stays as it is. Each pattern starts with the quote: one pass in
# C per pattern.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# (the lookahead, implied by the octets, turns the quotes before letters away in one test: a third quicker)
_IPV4_STRING = re.compile(rf'"(?=\s*[0-9])\s*({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}\s*(\\?")')
_IPV6_STRING = re.compile(r'"\s*([0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]{1,44})\s*(\\?")')


def _masked(match: re.Match[str]) -> str:
    truncated = truncate_ip(match.group(1))
    return f'"{truncated}{match.group(2)}' if truncated is not None else match.group(0)


def mask_ips_text(text: str) -> str:
    """`text` (serialized JSON) with every string value that is an IP address truncated (truncate_ip)."""
    return _IPV6_STRING.sub(_masked, _IPV4_STRING.sub(r'"\1.0\2', text))


# level 6: a write unit is worth far more than the half millisecond per 100 events it costs over level 1.
# A 4 KB window (wbits 12, memLevel 5), not zlib's 32 KB: setting up the larger one took 40 µs, more than
# compressing a one-event journey; a journey's repeats are near each other, so it is as small or smaller
# (zlib.decompress reads either)
_LEVEL, _WBITS, _MEM_LEVEL = 6, 12, 5
_ZLIB_HEADER = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL).flush()[:2]
# a vendor request's body this long is compressed while the vendor answers (`packed`); a shorter one is left to
# `encode`, where it shares the journey's window (AppsFlyer's one-event bodies compress to a fifth that way)
PACK_FROM_CHARS = 4096


class PackedText(str):
    """A journey's text compressed ahead of its journey: the text itself, its JSON string literal, and that
    literal as raw deflate ending on a full flush (no reference to what comes before or after it), which
    `encode` puts in the journey's compressed stream as it is."""

    literal: bytes
    deflated: bytes


def packed(text: str) -> str:
    """`text` compressed now for the journey that will hold it (PackedText), when it is long enough to be worth
    it: a vendor request's body, while the vendor answers (relay.journey.record.early_body)."""
    if len(text) < PACK_FROM_CHARS:
        return text
    out = PackedText(text)
    out.literal = pydantic_core.to_json(text)
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -_WBITS, _MEM_LEVEL)
    out.deflated = packer.compress(out.literal) + packer.flush(zlib.Z_FULL_FLUSH)
    return out


def encode(data: dict[str, Any]) -> bytes:
    """The journey as zlib-compressed JSON. Request bodies compressed ahead (PackedText) are spliced into the
    stream: the rest is compressed around them, each part ending on a full flush, so a body is not
    compressed twice and `zlib.decompress` reads one stream."""
    bodies = [r["body"] for r in data.get("requests", ()) if isinstance(r.get("body"), PackedText)]
    if not bodies:
        packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL)
        # pydantic-core's serializer: a quarter of json.dumps' time, the same compact JSON (non-ASCII as UTF-8)
        return packer.compress(pydantic_core.to_json(data, fallback=str)) + packer.flush()
    # each packed body's place in the JSON: a string no other value holds (random per call)
    mark = os.urandom(8).hex()
    places = iter(range(len(bodies)))
    requests = [
        {**r, "body": f"{mark}:{next(places)}"} if isinstance(r.get("body"), PackedText) else r
        for r in data["requests"]
    ]
    text = pydantic_core.to_json({**data, "requests": requests}, fallback=str)
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -_WBITS, _MEM_LEVEL)
    out, adler, start = [_ZLIB_HEADER], 1, 0
    for i, body in enumerate(bodies):
        place = f'"{mark}:{i}"'.encode()
        at = text.index(place, start)
        adler = zlib.adler32(body.literal, zlib.adler32(text[start:at], adler))
        out += (packer.compress(text[start:at]), packer.flush(zlib.Z_FULL_FLUSH), body.deflated)
        start = at + len(place)
    adler = zlib.adler32(text[start:], adler)
    out += (packer.compress(text[start:]), packer.flush(), adler.to_bytes(4, "big"))
    return b"".join(out)


def decode(blob: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(blob))


def fitted(data: dict[str, Any]) -> bytes:
    """The encoded payload, within MAX_DATA_BYTES: the requests' bodies, then the vendors' answers, are
    left out (saying so) until it fits; outcomes are always kept."""
    blob = encode(data)
    for part in ("body", "response"):
        if len(blob) <= MAX_DATA_BYTES:
            break
        for request in data.get("requests", []):
            request[part] = NOT_KEPT
        blob = encode(data)
    return blob


class JourneyTable(LazyClient):
    """Writes and reads journey items; every write is best effort (a journey never fails a delivery). The
    functions pass the ledger's client and horizon: the items live as long as the claims."""

    service = "dynamodb"

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        horizon_seconds: int = COMPLETED_TTL_SECONDS,
    ):
        super().__init__(client)
        self.table_name = table_name
        self.clock = clock
        self.horizon_seconds = horizon_seconds

    def attributes(self, batch: str, data: dict[str, Any]) -> dict[str, Any]:
        """A journey's attributes: its payload and the `journeys` index keys (the ingest adds them to the
        request's batch record, relay.aws.ledger.settle; a vendor function writes an item of its own)."""
        now = self.clock()
        return {
            MINUTE: {"S": minute_key(now, batch)},
            AT: {"N": str(int(now * 1000))},
            "data": {"B": fitted(data)},
        }

    def item(self, vendor: str, batch: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": {"S": journey_key(vendor, batch)},
            "status": {"S": JOURNEY},
            "vendor": {"S": vendor},
            **self.attributes(batch, data),
            "expiration": {"N": str(int(self.clock()) + self.horizon_seconds)},
        }

    def put(self, vendor: str, batch: str, data: dict[str, Any]) -> bool:
        """Write one journey item; False when DynamoDB refused it (the caller counts JourneyErrors)."""
        try:
            self.client.put_item(TableName=self.table_name, Item=self.item(vendor, batch, data))
        except Exception:  # noqa: BLE001 - the journey is for people; the delivery stands without it
            return False
        return True

    def get(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The decoded journey items of `keys` (BatchGetItem, 100 a call), by key; missing ones are left out."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request = {self.table_name: {"Keys": [{"id": {"S": k}} for k in unique[start : start + 100]]}}
            for _ in range(5):  # unprocessed keys (throttling) are asked for again
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    if "data" in item:  # a batch record written with the journey off has none
                        found[item["id"]["S"]] = decode(item["data"]["B"]) | {"written_at": int(item[AT]["N"])}
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

"""What every vendor adapter returns, and the HTTP request it builds."""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

import pydantic_core

from relay.models.errors import FieldError
from relay.models.event import Event

MASK = "***"


def body_bytes(body: Any) -> bytes:
    """The exact bytes sent to a vendor (and measured against its size limits): compact UTF-8 JSON, made by
    pydantic-core's serializer (a quarter of `json.dumps`' time; the same JSON values)."""
    return pydantic_core.to_json(body)


def json_text(value: Any, compact: bool = True) -> str:
    """JSON held in a string of a vendor's body (AppsFlyer's eventValue, AdRoll's external_data): strict JSON,
    never NaN or Infinity (the ingest refuses a number that overflows; this refuses whatever gets past it),
    non-ASCII kept as it is. `compact`: no blanks after "," and ":" (else Python's default, AdRoll's example)."""
    separators = (",", ":") if compact else None
    return json.dumps(value, separators=separators, ensure_ascii=False, allow_nan=False)


def plain_decimal(value: Decimal) -> str:
    """`113.56`, `-5`, `0.5`: no exponent, no symbols (AppsFlyer/AdRoll money strings)."""
    text = format(value, "f")
    return "0" if text in ("-0", "") else text


def json_number(value: Decimal) -> int | float:
    """A JSON number for AppLovin's `value`/`price` (an integral value stays an integer)."""
    return int(value) if value == value.to_integral_value() else float(value)


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def query_value(url: str | None, name: str) -> str | None:
    """The first non-empty value of query parameter `name` in `url` (a click id the vendor appends to the
    landing URL, read server-side as the vendors tell advertisers to)."""
    return _query(url).get(name) if url else None


@functools.lru_cache(maxsize=256)
def _query(url: str) -> dict[str, str]:
    """`url`'s query parameters, first non-empty value each: parsed once for every vendor that reads it."""
    out: dict[str, str] = {}
    for key, values in parse_qs(urlsplit(url).query).items():
        value = next((v.strip() for v in values if v.strip()), None)
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class VendorRequest:
    method: str
    url: str
    headers: dict[str, str]
    json: Any
    secret_headers: frozenset[str] = frozenset()
    content: bytes = field(init=False, repr=False, compare=False)  # serialized once, sent on every attempt

    def __post_init__(self) -> None:
        object.__setattr__(self, "content", body_bytes(self.json))

    def masked_headers(self) -> dict[str, str]:
        lower = {h.lower() for h in self.secret_headers}
        return {k: (MASK if k.lower() in lower else v) for k, v in self.headers.items()}

    def describe(self) -> dict[str, Any]:
        """The request as shown to humans and in `--json` output: secrets masked."""
        return {"method": self.method, "url": self.url, "headers": self.masked_headers(), "json": self.json}


@dataclass(frozen=True, slots=True)
class Mapped:
    """The event as this vendor takes it. `target` groups payloads into one request (AppsFlyer: app id)."""

    payload: dict[str, Any]
    target: str = ""
    status: ClassVar[str] = "ok"


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str
    status: ClassVar[str] = "skipped"


@dataclass(frozen=True, slots=True)
class Invalid:
    errors: tuple[FieldError, ...] = field(default_factory=tuple)
    status: ClassVar[str] = "invalid"

    @property
    def reason(self) -> str:
        """The broken rules in one line (as Skipped gives its reason)."""
        return "; ".join(map(str, self.errors))


MappingResult = Mapped | Skipped | Invalid
C = TypeVar("C")


# The kinds of identifier a vendor matches events on; the relay counts, per vendor, how many events it
# sends carry each (match quality: the `Match<Kind>` metrics, `relay preview`).
IDENTIFIER_KINDS = ("email", "phone", "click_id", "cookie", "device_id", "ip", "user_agent")


class VendorAdapter(ABC, Generic[C]):
    """Maps canonical events to one vendor's payloads and builds its HTTP requests."""

    name: ClassVar[str]
    max_batch: ClassVar[int]
    # the oldest event the vendor documents it takes, in days; None: its API reference documents no limit
    # (`relay replay` lists events older than this instead of sending them: docs/archive.md)
    max_event_age_days: ClassVar[int | None]
    secret_headers: ClassVar[frozenset[str]]
    # kind (IDENTIFIER_KINDS) -> the payload fields holding it, as dotted paths
    identifier_fields: ClassVar[dict[str, tuple[str, ...]]] = {}

    # identifier_fields' paths split once per adapter class, in IDENTIFIER_KINDS order (identifiers reads
    # them for every event sent)
    _identifier_paths: ClassVar[tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = cls.identifier_fields
        cls._identifier_paths = tuple(
            (k, tuple(tuple(f.split(".")) for f in fields[k])) for k in IDENTIFIER_KINDS if fields.get(k)
        )

    def identifiers(self, payload: dict[str, Any]) -> list[str]:
        """The kinds of identifier `payload` carries, in IDENTIFIER_KINDS order (read for every event sent:
        one loop, no call per field)."""
        found = []
        for kind, paths in self._identifier_paths:
            for path in paths:
                value: Any = payload
                for part in path:
                    value = value.get(part) if isinstance(value, dict) else None
                if value:
                    found.append(kind)
                    break
        return found

    def __init__(self, config: C):
        self.config = config

    @abstractmethod
    def map_event(self, event: Event, vendor_name: str) -> MappingResult:
        """`vendor_name` is the vendor's event name (after the name mapping)."""

    @abstractmethod
    def build_request(self, target: str, payloads: list[dict[str, Any]]) -> VendorRequest:
        """One HTTP request carrying `payloads` (1..max_batch, all with the same target)."""

    def request_for(self, outcome: Mapped) -> VendorRequest:
        return self.build_request(outcome.target, [outcome.payload])


class Errors:
    """Collects the field errors of one mapping."""

    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(FieldError(field, message))

    def require(self, value: Any, field: str, why: str) -> Any:
        if value is None or value == "" or value == []:
            self.add(field, f"is required: {why}")
        return value

    def __bool__(self) -> bool:
        return bool(self.items)

    def invalid(self) -> Invalid:
        return Invalid(tuple(self.items))

"""The canonical, vendor-neutral conversion event (docs/ingest-api.md)."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from relay.models import pii
from relay.models.codes import COUNTRIES, CURRENCIES
from relay.models.errors import FieldError, from_validation_error, join_path, rule_error

VENDORS: tuple[str, ...] = ("applovin", "appsflyer", "adroll")
Vendor = Literal["applovin", "appsflyer", "adroll"]

DEFAULT_MAX_EVENT_AGE_DAYS = 7
MAX_FUTURE_SKEW = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Uuid = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        pattern=r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
    ),
]
MAX_EVENT_ID_LENGTH = 128


def is_event_id(value: Any) -> bool:
    """An event_id: 1 to MAX_EVENT_ID_LENGTH printable characters (Python's `str.isprintable`: letters,
    marks, numbers, punctuation, symbols and the ASCII space; no control, format, surrogate, private-use
    or unassigned character, no line or paragraph separator). The one rule the ingest, the queued message
    check and the error reports share."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_EVENT_ID_LENGTH and value.isprintable()


def _event_id(value: str) -> str:
    if not value.isprintable():
        raise ValueError(
            "must be printable text: no control characters (newline, tab...), format, surrogate or unassigned"
            " characters"
        )
    return value


EventId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_EVENT_ID_LENGTH),
    AfterValidator(_event_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EVENT_ID_LENGTH,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
            "description": "The idempotency key: printable text (no control, format, surrogate, private-use or"
            " unassigned character, no line or paragraph separator; the pattern shows the control characters)",
        }
    ),
]
MAX_DECIMAL_PLACES = 20  # floats such as 0.1 + 0.2 = 0.30000000000000004 still pass


def _money(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be a decimal number such as 12.34 (a JSON number or a string)")
    if isinstance(value, str) and not value.isascii():  # Decimal() also reads other scripts' digits
        raise ValueError("must be written with the ASCII digits 0-9")
    try:  # Decimal() itself ignores surrounding whitespace in a string
        number = Decimal(value if isinstance(value, str | int) else str(value))
    except ArithmeticError:
        raise ValueError("must be a decimal number such as 12.34 (a JSON number or a string)") from None
    if not number.is_finite():
        raise ValueError("must be a finite decimal number")
    # the exponent, not arithmetic: abs() of 1e999999999 would overflow the decimal context
    if number and number.adjusted() >= 15:
        raise ValueError("must be less than 10^15 in absolute value")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:  # 1e-999999999 would print a billion zeros
        raise ValueError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return number


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}]}),
]


class Strict(BaseModel):
    # Validators are built on first use, not at import: vendor functions read queued messages (relay.queued.message)
    # and never validate an event unless an older relay queued it (time at every cold start); the ingest,
    # which validates every request, builds them while it loads (build_validators).
    model_config = ConfigDict(extra="forbid", strict=False, str_strip_whitespace=True, defer_build=True)


def _currency(value: Any) -> Any:
    if isinstance(value, str):
        code = value.strip().upper()
        if code not in CURRENCIES:
            raise ValueError("must be an ISO 4217 currency code such as USD or EUR")
        return code
    return value


def _country(value: Any) -> Any:
    if isinstance(value, str):
        code = value.strip().upper()
        if code not in COUNTRIES:
            raise ValueError("must be an ISO 3166-1 alpha-2 country code such as US or DE")
        return code
    return value


_IPV4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")


def _ip(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _IPV4.fullmatch(text):  # already canonical dotted IPv4: the common case, without ipaddress
            return text
        if "%" in text:  # a zone (fe80::1%eth0) names an interface of the client's host: nothing a vendor can use
            raise ValueError("must be an IPv4 or IPv6 address without a zone (%...)")
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address") from None
    return value


_PLAIN_HTTP_URL = re.compile(r"https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[^\s]*)?")


def _http_url(value: Any) -> Any:
    if isinstance(value, str):
        if _PLAIN_HTTP_URL.fullmatch(value):  # the common case, without urlsplit
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://example.com/page")
        return value.strip()
    return value


def _timestamp(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 string with a UTC offset or epoch milliseconds")
    if isinstance(value, int):
        if not 0 <= value < 10**14:
            raise ValueError("epoch milliseconds out of range")
        return EPOCH + timedelta(milliseconds=value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be an ISO-8601 date-time such as 2025-03-12T13:01:25.001Z") from None
        if parsed.tzinfo is None:
            raise ValueError("ISO-8601 timestamp needs a UTC offset (Z or +hh:mm)")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T01:00+03:04 is before year 1 in UTC (found by make reliability)
            raise ValueError("is out of range once converted to UTC") from None
    raise ValueError("must be an ISO-8601 string with a UTC offset or epoch milliseconds")


Currency = Annotated[str, BeforeValidator(_currency), WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{3}$"})]
Country = Annotated[str, BeforeValidator(_country), WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}$"})]
IpAddress = Annotated[
    str, BeforeValidator(_ip), WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
]
HttpUrl = Annotated[
    str,
    StringConstraints(max_length=4096),
    BeforeValidator(_http_url),
    WithJsonSchema({"type": "string", "format": "uri"}),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time", "description": "ISO-8601 with a UTC offset"},
                {"type": "integer", "minimum": 0, "description": "epoch milliseconds"},
            ]
        }
    ),
]


class Item(Strict):
    id: Text
    name: Text | None = None
    variant_id: Text | None = None
    category: Text | None = None
    group: Text | None = None
    brand: Text | None = None
    price: Money | None = None
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    discount: Money | None = None


class User(Strict):
    id: Text | None = None
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)] | None = None
    email_md5: (
        Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[0-9a-f]{32}$")] | None
    ) = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    ip: IpAddress | None = None
    user_agent: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1024)] | None = None
    country: Country | None = None
    zip: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)] | None = None
    cookie_id: Text | None = None
    fb_login_id: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{1,32}$")] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not (pii.as_sha256(v) or pii.looks_like_email(v)):
            raise ValueError("must be an email address or its SHA-256 hex digest")
        return v

    @model_validator(mode="after")
    def _phone(self) -> User:
        if self.phone is not None and not pii.as_sha256(self.phone):
            try:
                pii.phone_e164(self.phone, self.country)
            except pii.PhoneError as exc:
                raise rule_error("phone", str(exc)) from None
        return self


class AppSetId(Strict):
    scope: Literal[1, 2] = Field(description="1 = app, 2 = developer (AppsFlyer's values)")
    id: Uuid


APPLE_DEVICE_FIELDS = ("idfa", "idfv", "att")  # iOS, and macOS (Catalyst / ATT on macOS 11+)
ANDROID_ONLY_DEVICE_FIELDS = ("advertising_id", "oaid", "amazon_aid", "imei", "app_set_id")


class Device(Strict):
    os: Literal["ios", "android", "macos", "windows", "linux", "other"] | None = None
    os_version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)] | None = None
    type: Literal["phone", "tablet", "desktop", "tv", "watch", "other"] | None = None
    idfa: Uuid | None = None
    idfv: Uuid | None = None
    advertising_id: Uuid | None = None
    oaid: Text | None = None
    amazon_aid: Uuid | None = None
    imei: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{14,16}$")] | None = None
    app_set_id: AppSetId | None = None
    att: int | None = Field(default=None, ge=0, le=3)
    ad_tracking_enabled: bool | None = None

    @model_validator(mode="after")
    def _platform_ids(self) -> Device:
        given = self.model_fields_set  # only fields present in the input can be set (most events: none)
        if self.os not in ("ios", "macos"):
            for name in APPLE_DEVICE_FIELDS:
                if name in given and getattr(self, name) is not None:
                    raise rule_error(name, "is an Apple identifier: set only when device.os is 'ios' or 'macos'")
        if self.os != "android":
            for name in ANDROID_ONLY_DEVICE_FIELDS:
                if name in given and getattr(self, name) is not None:
                    raise rule_error(name, "is an Android identifier: set only when device.os is 'android'")
        return self


class App(Strict):
    bundle_id: Text | None = None
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    store: Text | None = None
    app_clip: bool | None = None
    custom_data: dict[str, Any] | None = None


class AppLovinIds(Strict):
    aleid: Text | None = None
    alart: Text | None = None
    axwrt: Text | None = None


class AppsFlyerIds(Strict):
    appsflyer_id: Text | None = None


class AdRollIds(Strict):
    adct: Text | None = None
    first_party_cookie: Text | None = None


class VendorIds(Strict):
    applovin: AppLovinIds | None = None
    appsflyer: AppsFlyerIds | None = None
    adroll: AdRollIds | None = None


class Tcf(Strict):
    policy_version: int = Field(ge=1)
    gdpr_applies: bool
    cmp_sdk_id: int = Field(ge=0)
    cmp_sdk_version: int = Field(ge=0)
    tcstring: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]


class Consent(Strict):
    ad_storage: bool | None = None
    ad_user_data: bool | None = None
    ad_personalization: bool | None = None
    gdpr_applies: bool | None = None
    tcf: Tcf | None = None
    sharing_filter: Literal["all"] | Annotated[list[Text], Field(min_length=1, max_length=100)] | None = None


class Event(Strict):
    event_id: EventId
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    timestamp: Timestamp | None = None
    source: Literal["web", "app"]
    page_url: HttpUrl | None = None
    value: Money | None = None
    currency: Currency | None = None
    order_id: Text | None = None
    items: Annotated[list[Item], Field(max_length=100)] | None = None
    search_query: Text | None = None
    session_id: Text | None = None
    user: User = Field(default_factory=User)
    device: Device = Field(default_factory=Device)
    app: App = Field(default_factory=App)
    vendor_ids: VendorIds = Field(default_factory=VendorIds)
    consent: Consent = Field(default_factory=Consent)
    destinations: Annotated[list[Vendor], Field(max_length=3)] | None = None
    properties: dict[str, Any] | None = None

    @field_validator("destinations")
    @classmethod
    def _unique_destinations(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("must not name a vendor twice")
        return v

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Event:
        # The time window is checked on receipt (parse_event passes a context). An event re-read
        # later from a queue (no context) keeps its timestamp: a retry must not make it "too old".
        ctx = info.context
        if self.timestamp is None:
            self.timestamp = (ctx or {}).get("now") or datetime.now(UTC)
        elif ctx is not None:
            now: datetime = ctx.get("now") or datetime.now(UTC)
            max_age = timedelta(days=ctx.get("max_event_age_days", DEFAULT_MAX_EVENT_AGE_DAYS))
            if self.timestamp > now + MAX_FUTURE_SKEW:
                raise rule_error("timestamp", "is more than 5 minutes in the future")
            if self.timestamp < now - max_age:
                hint = ""
                if self.timestamp < EPOCH + timedelta(days=365) and EPOCH + timedelta(days=10_000) < now:
                    hint = ": it looks like epoch seconds; send epoch milliseconds or ISO-8601"
                raise rule_error("timestamp", f"is older than max_event_age_days ({max_age.days} days){hint}")
        if self.source == "web" and self.page_url is None:
            raise rule_error("page_url", "is required when source is 'web'")
        if self.value is not None and self.currency is None:
            raise rule_error("currency", "is required when value is set")
        if self.app.app_clip and self.device.os != "ios":
            raise rule_error("app.app_clip", "App Clips exist on iOS only: set device.os to 'ios'")
        return self

    @property
    def event_time(self) -> datetime:
        assert self.timestamp is not None  # set by the validator
        return self.timestamp

    @property
    def epoch_ms(self) -> int:
        return (self.event_time - EPOCH) // timedelta(milliseconds=1)


def build_validators() -> None:
    """Build every event model's validator now (the ingest, at import: its first request must not pay)."""
    for model in Strict.__subclasses__():  # in definition order: nested models before Event reuse theirs
        model.model_rebuild(force=True)


class EventParseError(Exception):
    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def parse_event(
    data: Any,
    *,
    now: datetime | None = None,
    max_event_age_days: int = DEFAULT_MAX_EVENT_AGE_DAYS,
    prefix: tuple[Any, ...] = (),
) -> Event:
    """Validate one canonical event; raises EventParseError with field-level errors."""
    if not isinstance(data, dict):
        raise EventParseError([FieldError(join_path(prefix), "must be a JSON object")])
    try:
        return Event.model_validate(
            data, context={"now": now or datetime.now(UTC), "max_event_age_days": max_event_age_days}
        )
    except ValidationError as exc:
        raise EventParseError(from_validation_error(exc, prefix)) from None


def event_id_of(data: Any) -> str | None:
    """The event_id of raw input (error reports about events that failed validation, queued messages)."""
    if isinstance(data, dict) and is_event_id(data.get("event_id")):
        return data["event_id"]
    return None


MAX_EVENTS_PER_REQUEST = 100


def events_of(data: Any) -> list[Any]:
    """The raw events of one canonical event or an ingest body ``{"events": [...]}``."""
    if isinstance(data, dict) and "events" in data:
        extra = sorted(set(data) - {"events"})
        if extra:
            raise EventParseError([FieldError(extra[0], "is not a known field (unknown fields are rejected)")])
        events = data["events"]
        if not isinstance(events, list):
            raise EventParseError([FieldError("events", "must be a list of events")])
        if not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
            raise EventParseError(
                [FieldError("events", f"must hold 1 to {MAX_EVENTS_PER_REQUEST} events, not {len(events)}")]
            )
        return events
    return [data]

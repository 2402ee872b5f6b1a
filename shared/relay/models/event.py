"""The canonical, vendor-neutral conversion event (docs/ingest-api.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from relay.models import pii
from relay.models.errors import FieldError, from_validation_error, join_path, rule_error
from relay.models.fields import (
    EPOCH,
    Country,
    Currency,
    EventId,
    HttpUrl,
    IpAddress,
    Money,
    Text,
    Timestamp,
    Uuid,
    is_event_id,
)
from relay.models.names import VENDORS as VENDORS  # re-exported: where vendors were listed first
from relay.models.names import ConnectionRef, Vendor, normal_connection

DEFAULT_MAX_EVENT_AGE_DAYS = 7
MAX_EVENT_CONNECTIONS = 50  # connections one event may name
MAX_FUTURE_SKEW = timedelta(minutes=5)
_MILLISECOND = timedelta(milliseconds=1)


class once:  # noqa: N801 - read as a decorator, like the property it stands for
    """A value of a model worked out on its first read and kept (functools.cached_property without the lock
    Python 3.11's takes on that read, which costs more than the values below)."""

    def __init__(self, compute: Callable[[Any], Any]):
        self.compute, self.name, self.__doc__ = compute, compute.__name__, compute.__doc__

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value

    def keep(self, instance: Any, value: Any) -> None:
        """`value` as the one worked out (a validator that had to work it out anyway)."""
        instance.__dict__[self.name] = value


class Strict(BaseModel):
    # Validators are built on first use, not at import: vendor functions read queued messages (relay.queued.message)
    # and never validate an event unless an older relay queued it (time at every cold start); the ingest,
    # which validates every request, builds them while it loads (build_validators).
    model_config = ConfigDict(
        extra="forbid", strict=False, str_strip_whitespace=True, defer_build=True, ignored_types=(once,)
    )


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

    @once
    def email_sha256(self) -> str | None:
        """The email as every vendor takes it hashed (pii.hash_email): worked out once per event."""
        return pii.hash_email(self.email) if self.email else None

    @once
    def phone_e164(self) -> str | None:
        """The phone in E.164 (pii.phone_e164); None without one, or when it arrived hashed. The validator's
        own parse is kept: libphonenumber reads each number once per event, whatever the vendors."""
        if self.phone is None or pii.as_sha256(self.phone):
            return None
        return pii.phone_e164(self.phone, self.country)

    @model_validator(mode="after")
    def _phone(self) -> User:
        if self.phone is not None and not pii.as_sha256(self.phone):
            try:
                User.phone_e164.keep(self, pii.phone_e164(self.phone, self.country))
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
    connections: Annotated[list[ConnectionRef], Field(min_length=1, max_length=MAX_EVENT_CONNECTIONS)] | None = None
    properties: dict[str, Any] | None = None

    @field_validator("destinations")
    @classmethod
    def _unique_destinations(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("must not name a vendor twice")
        return v

    @field_validator("connections")
    @classmethod
    def _unique_connections(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            v = [normal_connection(c) for c in v]
            if len(set(v)) != len(v):
                raise ValueError("must not name a connection twice")
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

    @once
    def epoch_ms(self) -> int:
        return (self.event_time - EPOCH) // _MILLISECOND


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
MAX_BODY_BYTES = 1_048_576  # of an ingest request's body (the ingest's 413, docs/ingest-api.md)


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

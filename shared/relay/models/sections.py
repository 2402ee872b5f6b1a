"""The sections of the relay's configuration (relay.models.config assembles them): the ingest's, each
vendor's (one per connection), the event-name overrides, delivery and the local stack."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationInfo, model_validator

from relay.ingest.signing import DEFAULT_TOLERANCE_SECONDS
from relay.models.errors import FieldError, rule_error
from relay.models.event import DEFAULT_MAX_EVENT_AGE_DAYS, HttpUrl
from relay.models.event_names import ALLOWED_NAMES
from relay.models.names import ConnectionRef, Name, normal_connection

MAX_CONNECTIONS = 100  # connections per vendor, and per source (docs/connections.md, "Limits")
MAX_SOURCES = 100  # their secrets share the ingest's secret: 64 KB in Secrets Manager


Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
ENV_PREFIX = "RELAY_"
# The keys whose values are secrets: never in env vars, templates or logs; masked in output.
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "ingest": ("secrets",),
    "applovin": ("api_key",),
    "appsflyer": ("key",),
    "adroll": ("token",),
}


# SQS's limits the retry window must fit (template.yaml's parameters hold the same bounds; a test ties them)
SQS_MAX_VISIBILITY_SECONDS = 43_200  # a message's visibility, counted from its receive: 12 hours
LAMBDA_MAX_TIMEOUT_SECONDS = 900
# a delay is set at the end of an invocation, and the 12 hours count from the receive
MAX_RETRY_DELAY_SECONDS = SQS_MAX_VISIBILITY_SECONDS - LAMBDA_MAX_TIMEOUT_SECONDS
QUEUE_RETENTION_SECONDS = 345_600  # the vendor queues' (template.yaml Mappings.Retention.Seconds.Queue): 4 days
# the window plus its last delay stays within the queues' retention, so SQS never deletes a message first
MAX_RETRY_WINDOW_HOURS = 72
MIN_RETRY_WINDOW_HOURS = 0.001


class ConfigError(Exception):
    def __init__(self, errors: list[FieldError], source: str = "config"):
        self.errors = errors
        self.source = source
        super().__init__(f"invalid {source}: " + "; ".join(map(str, errors)))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class _Vendor(_Section):
    """A vendor's section. `enabled = "auto"` (the template's default) turns the vendor on exactly when its
    ids are given (`IDS`, any one of `ANY_IDS`), so a deploy without them runs with the vendor off instead
    of refusing every request; `true` requires them."""

    IDS: ClassVar[tuple[str, ...]] = ()
    ANY_IDS: ClassVar[tuple[str, ...]] = ()
    # how long this connection's failing events are retried (docs/connections.md); unset: [delivery]'s
    retry_window_hours: float | None = Field(default=None, ge=MIN_RETRY_WINDOW_HOURS, le=MAX_RETRY_WINDOW_HOURS)

    @model_validator(mode="before")
    @classmethod
    def _auto(cls, data: Any) -> Any:
        if isinstance(data, dict) and str(data.get("enabled", "")).strip().lower() == "auto":
            given = [bool(str(data.get(k) or "").strip()) for k in cls.IDS]
            any_given = [bool(str(data.get(k) or "").strip()) for k in cls.ANY_IDS]
            data = {**data, "enabled": all(given) and (any(any_given) or not cls.ANY_IDS)}
        return data


def _require(section: BaseModel, name: str, *keys: str, info: ValidationInfo | None = None) -> None:
    """Keys an enabled vendor needs. Secret keys are not required where credentials are not loaded
    (the ingest function routes events but never calls a vendor, so it never reads their secrets)."""
    wanted = (info.context or {}).get("credentials", True) if info else True
    skip_secrets = wanted is False or (wanted is not True and name not in wanted)
    for key in keys:
        if skip_secrets and key in SECRET_KEYS.get(name, ()):
            continue
        if getattr(section, key) in (None, ""):
            raise rule_error(key, f"is required when {name} is enabled")


class IngestConfig(_Section):
    secrets: list[SecretStr] = Field(default_factory=list, max_length=10)
    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE_SECONDS, ge=1, le=3600)
    max_event_age_days: int = Field(default=DEFAULT_MAX_EVENT_AGE_DAYS, ge=1, le=365)

    @model_validator(mode="after")
    def _non_empty(self) -> IngestConfig:
        _no_empty_secret(self.secrets)
        return self


class AppLovinConfig(_Vendor):
    IDS: ClassVar[tuple[str, ...]] = ("pixel_id",)
    enabled: bool = True
    mode: Literal["standard", "restricted_lead_gen"] = "standard"
    pixel_id: Id | None = None
    api_key: SecretStr | None = None
    endpoint: HttpUrl | None = None

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> AppLovinConfig:
        if self.enabled:
            _require(self, "applovin", "pixel_id", "api_key", info=info)
        return self


class AppsFlyerConfig(_Vendor):
    ANY_IDS: ClassVar[tuple[str, ...]] = ("ios_app_id", "android_app_id")
    enabled: bool = True
    api: Literal["v3", "v2"] = "v3"
    key: SecretStr | None = None
    ios_app_id: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^id[0-9]+$")] | None = None
    android_app_id: (
        Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z][\w]*(\.[A-Za-z_][\w]*)+$")] | None
    ) = None
    endpoint: HttpUrl | None = None

    @model_validator(mode="before")
    @classmethod
    def _ios_prefix(cls, data: Any) -> Any:
        ios = data.get("ios_app_id") if isinstance(data, dict) else None
        if isinstance(ios, str) and not ios.strip().startswith("id"):
            raise rule_error(
                "ios_app_id",
                "must be 'id' followed by the App Store digits (id123456789): without the prefix "
                "AppsFlyer answers 200 OK and records nothing",
            )
        return data

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> AppsFlyerConfig:
        if self.enabled:
            _require(self, "appsflyer", "key", info=info)
            if not (self.ios_app_id or self.android_app_id):
                raise rule_error("ios_app_id", "ios_app_id or android_app_id is required when appsflyer is enabled")
        return self


class AdRollConfig(_Vendor):
    IDS: ClassVar[tuple[str, ...]] = ("advertisable_eid", "pixel_eid")
    enabled: bool = True
    advertisable_eid: Id | None = None
    pixel_eid: Id | None = None
    token: SecretStr | None = None
    dry_run: bool = False
    app_url_domain: (
        Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")]
        | None
    ) = None
    endpoint: HttpUrl | None = None

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> AdRollConfig:
        if self.enabled:
            _require(self, "adroll", "advertisable_eid", "pixel_eid", "token", info=info)
        return self


class EventOverride(_Section):
    applovin: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    appsflyer: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    adroll: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None

    @model_validator(mode="after")
    def _documented_names(self) -> EventOverride:
        for vendor, allowed in ALLOWED_NAMES.items():
            name = getattr(self, vendor)
            if name and allowed is not None and name not in allowed:
                raise rule_error(
                    vendor, f"'{name}' is not an event {vendor} documents: use one of {sorted(allowed)} or \"\""
                )
        return self


class DeliveryConfig(_Section):
    """How long a vendor function keeps retrying an event it could not deliver, and how it rides out an
    outage (docs/reliability.md, "Vendor outages").

    `retry_window_hours`: a transient failure is retried until its message is this old, then dead-lettered
    as `retries_exhausted`; `max_retry_delay_seconds`: the longest wait between two receives (the delays
    double up to it); `probe_interval_seconds`: while a vendor's circuit is open, one request per interval
    tests whether it is back; `auto_redrive`: once it is, what the DLQ holds for transient reasons goes
    back to the queue; `journey`: every event's journey (its requests, the vendors' answers, its outcome) is
    kept in the idempotency table for `relay trace`, GET /v1/events/{event_id} and the debugger page."""

    retry_window_hours: float = Field(default=24, ge=MIN_RETRY_WINDOW_HOURS, le=MAX_RETRY_WINDOW_HOURS)
    max_retry_delay_seconds: int = Field(default=3600, ge=1, le=MAX_RETRY_DELAY_SECONDS)
    probe_interval_seconds: int = Field(default=60, ge=1, le=3600)
    auto_redrive: bool = True
    journey: bool = True

    @property
    def retry_window_seconds(self) -> float:
        return self.retry_window_hours * 3600


class LocalConfig(_Section):
    """Where the local stack (`relay dev`) serves the AWS APIs, and the name its resources carry."""

    aws_endpoint: HttpUrl = "http://127.0.0.1:5000"
    stack_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,100}$")] = "s2s-relay-local"
    region: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}-[a-z]+-[0-9]$")] = "us-east-1"
    ingest_port: int = Field(default=3000, ge=0, le=65535)
    sandbox_port: int = Field(default=3001, ge=0, le=65535)


def _no_empty_secret(secrets: list[SecretStr]) -> None:
    if any(not s.get_secret_value() for s in secrets):
        raise rule_error("secrets", "must not hold an empty secret")


class SourceConfig(_Section):
    """A sender (docs/connections.md): its signing secrets (several while it rotates; deployed, in the ingest's
    secret in Secrets Manager) and the connections it may reach (all when not given)."""

    secrets: list[SecretStr] = Field(default_factory=list, max_length=10)
    connections: Annotated[list[ConnectionRef], Field(min_length=1, max_length=MAX_CONNECTIONS)] | None = None

    @model_validator(mode="after")
    def _checked(self) -> SourceConfig:
        _no_empty_secret(self.secrets)
        if self.connections is not None:
            normal = [normal_connection(c) for c in self.connections]
            if len(set(normal)) != len(normal):
                raise rule_error("connections", "must not name a connection twice")
            object.__setattr__(self, "connections", normal)
        return self


class ConnectionsConfig(_Section):
    """The named connections of each vendor, ``[connections.<vendor>.<name>]`` (the ``[<vendor>]`` section is
    the connection named default)."""

    applovin: dict[Name, AppLovinConfig] = Field(default_factory=dict, max_length=MAX_CONNECTIONS)
    appsflyer: dict[Name, AppsFlyerConfig] = Field(default_factory=dict, max_length=MAX_CONNECTIONS)
    adroll: dict[Name, AdRollConfig] = Field(default_factory=dict, max_length=MAX_CONNECTIONS)

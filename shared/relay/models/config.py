"""Relay configuration: `relay.toml` locally, environment variables + Secrets Manager when deployed.

Both sources hold the same keys (docs/configuration.md) and go through the same models, so a bad
value fails at start with the key and the reason, wherever it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from relay.ingest.signing import DEFAULT_TOLERANCE_SECONDS
from relay.models.errors import FieldError, from_validation_error, rule_error
from relay.models.event import DEFAULT_MAX_EVENT_AGE_DAYS, VENDORS, HttpUrl
from relay.models.event_names import ALLOWED_NAMES

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
ENV_PREFIX = "RELAY_"
# The keys whose values are secrets: never in env vars, templates or logs; masked in output.
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "ingest": ("secrets",),
    "applovin": ("api_key",),
    "appsflyer": ("key",),
    "adroll": ("token",),
}


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
        if any(not s.get_secret_value() for s in self.secrets):
            raise rule_error("secrets", "must not hold an empty secret")
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


# SQS's limits the retry window must fit (template.yaml's parameters hold the same bounds; a test ties them)
SQS_MAX_VISIBILITY_SECONDS = 43_200  # a message's visibility, counted from its receive: 12 hours
LAMBDA_MAX_TIMEOUT_SECONDS = 900
# a delay is set at the end of an invocation, and the 12 hours count from the receive
MAX_RETRY_DELAY_SECONDS = SQS_MAX_VISIBILITY_SECONDS - LAMBDA_MAX_TIMEOUT_SECONDS
QUEUE_RETENTION_SECONDS = 345_600  # the vendor queues' (template.yaml Mappings.Retention.Seconds.Queue): 4 days
# the window plus its last delay stays within the queues' retention, so SQS never deletes a message first
MAX_RETRY_WINDOW_HOURS = 72
MIN_RETRY_WINDOW_HOURS = 0.001


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


class RelayConfig(_Section):
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    applovin: AppLovinConfig | None = None
    appsflyer: AppsFlyerConfig | None = None
    adroll: AdRollConfig | None = None
    events: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], EventOverride] = Field(
        default_factory=dict
    )

    def vendor(self, name: str) -> AppLovinConfig | AppsFlyerConfig | AdRollConfig | None:
        return getattr(self, name)

    def enabled(self, name: str) -> bool:
        section = self.vendor(name)
        return section is not None and section.enabled

    @property
    def enabled_vendors(self) -> list[str]:
        return [v for v in VENDORS if self.enabled(v)]

    @property
    def event_overrides(self) -> dict[str, dict[str, str | None]]:
        return {name: o.model_dump() for name, o in self.events.items()}

    def secret_values(self) -> list[str]:
        """Every secret in this config (for masking in output and checks that nothing leaks)."""
        out = [s.get_secret_value() for s in self.ingest.secrets]
        for vendor, keys in SECRET_KEYS.items():
            section = self.vendor(vendor) if vendor != "ingest" else None
            for key in keys if section is not None else ():
                value = getattr(section, key)
                if value is not None:
                    out.append(value.get_secret_value())
        return [s for s in out if s]


Credentials = bool | frozenset[str]


def config_from_mapping(
    data: Mapping[str, Any], source: str = "config", credentials: Credentials = True
) -> RelayConfig:
    """`credentials`: True = every enabled vendor needs its secret; False = none does (a config for
    routing, as the ingest uses); a set of vendor names = only those (a vendor function)."""
    try:
        return RelayConfig.model_validate(dict(data), context={"credentials": credentials})
    except ValidationError as exc:
        raise ConfigError(from_validation_error(exc), source) from None


def delivery_from_env(environ: Mapping[str, str]) -> DeliveryConfig:
    """The [delivery] section from its ``RELAY_DELIVERY_<KEY>`` variables (a vendor function reads it apart
    from the rest, which may be unusable while its messages still need their retry schedule)."""
    data = {
        key: environ[var]
        for key in DeliveryConfig.model_fields
        if (var := f"{ENV_PREFIX}DELIVERY_{key}".upper()) in environ and environ[var]
    }
    try:
        return DeliveryConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [FieldError(f"delivery.{e.field}", e.message) for e in from_validation_error(exc)], "environment"
        ) from None


def config_from_env(
    environ: Mapping[str, str],
    secrets: Mapping[str, Mapping[str, Any]] | None = None,
    credentials: Credentials = True,
) -> RelayConfig:
    """The deployed form: ``RELAY_<SECTION>_<KEY>`` env vars for settings, ``RELAY_EVENTS`` (JSON)
    for event-name overrides, and `secrets` (read from Secrets Manager) for the secret keys.

    A vendor section exists when any of its variables (or its secret) is present.
    """
    data: dict[str, dict[str, Any]] = {}
    fields = {
        "ingest": IngestConfig.model_fields,
        "delivery": DeliveryConfig.model_fields,
        "applovin": AppLovinConfig.model_fields,
        "appsflyer": AppsFlyerConfig.model_fields,
        "adroll": AdRollConfig.model_fields,
    }
    errors: list[FieldError] = []
    for section, names in fields.items():
        for key in names:
            var = f"{ENV_PREFIX}{section}_{key}".upper()
            if not environ.get(var):  # unset or "" (an empty template parameter) = default
                continue
            if key in SECRET_KEYS.get(section, ()):
                errors.append(FieldError(f"{section}.{key}", f"is a secret: set it in Secrets Manager, not in {var}"))
                continue
            data.setdefault(section, {})[key] = environ[var]
    for section, values in (secrets or {}).items():
        for key, value in values.items():
            data.setdefault(section, {})[key] = value
    if raw := environ.get(f"{ENV_PREFIX}EVENTS"):
        try:
            data["events"] = json.loads(raw)
        except json.JSONDecodeError:
            errors.append(FieldError("events", f"{ENV_PREFIX}EVENTS must be a JSON object"))
    if errors:
        raise ConfigError(errors, "environment")
    return config_from_mapping(data, "environment", credentials=credentials)

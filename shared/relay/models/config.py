"""Relay configuration: `relay.toml` locally; deployed, environment variables, the connections file shipped
with the functions (relay.models.connections_file) and Secrets Manager.

Every form holds the same keys (docs/configuration.md, docs/connections.md) and goes through the same
models, so a bad value fails at start with the key and the reason, wherever it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationError, model_validator

from relay.models.errors import FieldError, from_validation_error, rule_error
from relay.models.names import DEFAULT, VENDORS, Name, connection_id, split_connection
from relay.models.sections import (
    ENV_PREFIX,
    LAMBDA_MAX_TIMEOUT_SECONDS,
    MAX_RETRY_DELAY_SECONDS,
    MAX_RETRY_WINDOW_HOURS,
    MAX_SOURCES,
    MIN_RETRY_WINDOW_HOURS,
    QUEUE_RETENTION_SECONDS,
    SECRET_KEYS,
    SQS_MAX_VISIBILITY_SECONDS,
    AdRollConfig,
    AppLovinConfig,
    AppsFlyerConfig,
    ConfigError,
    ConnectionsConfig,
    DeliveryConfig,
    EventOverride,
    IngestConfig,
    LocalConfig,
    SourceConfig,
    _Section,
)

__all__ = [
    "ENV_PREFIX",
    "LAMBDA_MAX_TIMEOUT_SECONDS",
    "MAX_RETRY_DELAY_SECONDS",
    "MAX_RETRY_WINDOW_HOURS",
    "MIN_RETRY_WINDOW_HOURS",
    "QUEUE_RETENTION_SECONDS",
    "SECRET_KEYS",
    "SQS_MAX_VISIBILITY_SECONDS",
    "AdRollConfig",
    "AppLovinConfig",
    "AppsFlyerConfig",
    "ConfigError",
    "ConnectionsConfig",
    "DeliveryConfig",
    "EventOverride",
    "IngestConfig",
    "LocalConfig",
    "RelayConfig",
    "SourceConfig",
    "VendorSection",
]

VendorSection = AppLovinConfig | AppsFlyerConfig | AdRollConfig


class RelayConfig(_Section):
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    applovin: AppLovinConfig | None = None
    appsflyer: AppsFlyerConfig | None = None
    adroll: AdRollConfig | None = None
    connections: ConnectionsConfig = Field(default_factory=ConnectionsConfig)
    sources: dict[Name, SourceConfig] | None = Field(default=None, max_length=MAX_SOURCES)
    events: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], EventOverride] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _references(self) -> RelayConfig:
        for vendor in VENDORS:
            if getattr(self, vendor) is not None and DEFAULT in getattr(self.connections, vendor):
                raise rule_error(f"connections.{vendor}.{DEFAULT}", f"is the [{vendor}] section: declare it once")
        declared = self.sections()
        for name, source in (self.sources or {}).items():
            for ref in source.connections or ():
                if ref not in declared:
                    known = ", ".join(declared) or "none"
                    raise rule_error(
                        f"sources.{name}.connections", f"'{ref}' is not a declared connection (declared: {known})"
                    )
        if self.sources is not None and DEFAULT not in self.sources and self.ingest.secrets:
            raise rule_error(
                "ingest.secrets", f"are the {DEFAULT} source's: declare [sources.{DEFAULT}], or give them to a source"
            )
        return self

    def sections(self) -> dict[str, VendorSection]:
        """Every declared connection's section by connection id, enabled or not (the vendors' order)."""
        out: dict[str, VendorSection] = {}
        for vendor in VENDORS:
            if (section := getattr(self, vendor)) is not None:
                out[vendor] = section
            for name, named in getattr(self.connections, vendor).items():
                out[connection_id(vendor, name)] = named
        return out

    def connection(self, connection: str) -> VendorSection | None:
        return self.sections().get(connection)

    @property
    def connection_ids(self) -> list[str]:
        """The enabled connections' ids."""
        return [c for c, section in self.sections().items() if section.enabled]

    def vendor(self, name: str) -> VendorSection | None:
        """The vendor's connection named default (its ``[<vendor>]`` section)."""
        return getattr(self, name)

    def enabled(self, name: str) -> bool:
        """Whether the vendor has an enabled connection."""
        return any(split_connection(c)[0] == name for c in self.connection_ids)

    @property
    def enabled_vendors(self) -> list[str]:
        return [v for v in VENDORS if self.enabled(v)]

    def source_configs(self) -> dict[str, SourceConfig]:
        """The sources by name: those declared, else the one named default; a source named default signs
        with [ingest] secrets when it has none of its own."""
        sources = self.sources if self.sources is not None else {DEFAULT: SourceConfig()}
        out = dict(sources)
        if DEFAULT in out and not out[DEFAULT].secrets and self.ingest.secrets:
            out[DEFAULT] = out[DEFAULT].model_copy(update={"secrets": list(self.ingest.secrets)})
        return out

    def source(self, name: str) -> SourceConfig | None:
        return self.source_configs().get(name)

    def reachable(self, source: str) -> list[str]:
        """The enabled connections a source may reach: those it lists, else all."""
        config = self.source(source)
        if config is None:
            return []
        enabled = self.connection_ids
        return [c for c in enabled if config.connections is None or c in config.connections]

    def for_connection(self, connection: str) -> RelayConfig:
        """This configuration with `connection` as its vendor's only connection (what its forwarder reads)."""
        vendor, _ = split_connection(connection)
        section = self.connection(connection)
        return self.model_copy(update={vendor: section, "connections": ConnectionsConfig()})

    @property
    def event_overrides(self) -> dict[str, dict[str, str | None]]:
        return {name: o.model_dump() for name, o in self.events.items()}

    def secret_values(self) -> list[str]:
        """Every secret in this config (for masking in output and checks that nothing leaks)."""
        out = [s.get_secret_value() for s in self.ingest.secrets]
        for source in (self.sources or {}).values():
            out += [s.get_secret_value() for s in source.secrets]
        for connection, section in self.sections().items():
            for key in SECRET_KEYS[split_connection(connection)[0]]:
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
    secrets: Mapping[str, Any] | None = None,
    credentials: Credentials = True,
    shipped: Mapping[str, Any] | None = None,
) -> RelayConfig:
    """The deployed form: ``RELAY_<SECTION>_<KEY>`` env vars for settings, ``RELAY_EVENTS`` (JSON)
    for event-name overrides, `shipped` (the connections file: sources and connections) and `secrets` (read
    from Secrets Manager, in the configuration's own shape) for the secret keys.

    A vendor section exists when any of its variables (or its secret) is present.
    """
    data: dict[str, Any] = {}
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
    merge(data, shipped or {})
    merge(data, secrets or {})
    if raw := environ.get(f"{ENV_PREFIX}EVENTS"):
        try:
            data["events"] = json.loads(raw)
        except json.JSONDecodeError:
            errors.append(FieldError("events", f"{ENV_PREFIX}EVENTS must be a JSON object"))
    if errors:
        raise ConfigError(errors, "environment")
    return config_from_mapping(data, "environment", credentials=credentials)


def merge(into: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """`more`'s tables merged into `into`'s, key by key (a secret's keys into the section the file declares)."""
    for key, value in more.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = merge({}, value) if isinstance(value, Mapping) else value
    return into

"""Secrets Manager: the signing secret and vendor keys (through Powertools Parameters, cached)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities import parameters

from relay.models.config import SECRET_KEYS, ConfigError, RelayConfig, config_from_env
from relay.models.connections_file import shipped_connections
from relay.models.environment import IngestEnvironment, VendorEnvironment
from relay.models.errors import FieldError
from relay.models.names import DEFAULT

# Secrets are cached an hour (as AWS's own Secrets Manager caching client does) and re-read at once when
# they stop working — a vendor refusing the credentials, a signature that does not verify — but at most
# once per SECRET_REFRESH_MIN_SECONDS per container: a rotation takes effect on the first refusal, and
# nobody can make the relay call Secrets Manager more than once a minute.
SECRET_MAX_AGE_SECONDS = 3600
SECRET_REFRESH_MIN_SECONDS = 60


class SecretRefresh:
    """When a container may re-read its secret before the cache expires: after `due()` was called (the
    secret stopped working), and no sooner than SECRET_REFRESH_MIN_SECONDS after its last forced read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._due = False
        self._last = float("-inf")

    def due(self) -> None:
        self._due = True

    def take(self) -> bool:
        """True once per allowed refresh: the caller then reads the secret with `refresh=True`."""
        now = self.clock()
        if not self._due or now - self._last < SECRET_REFRESH_MIN_SECONDS:
            return False
        self._due, self._last = False, now
        return True


def read_secret(arn: str, section: str, client: Any = None, refresh: bool = False) -> dict[str, Any]:
    """A JSON secret, cached for SECRET_MAX_AGE_SECONDS (`refresh`: read it anew). Errors name the section,
    never the value."""
    try:
        if client is not None:
            provider = parameters.SecretsProvider(boto3_client=client)
            value = provider.get(arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh)
        else:
            value = parameters.get_secret(arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh)
    except parameters.exceptions.TransformParameterError:
        raise ConfigError([FieldError(section, "the secret is not a JSON object")], "Secrets Manager") from None
    except parameters.exceptions.GetParameterError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
        raise ConfigError(
            [
                FieldError(
                    section, f"the secret cannot be read ({cause}); fill it with aws secretsmanager put-secret-value"
                )
            ],
            "Secrets Manager",
        ) from None
    if not isinstance(value, dict):
        raise ConfigError([FieldError(section, "the secret is not a JSON object")], "Secrets Manager")
    return value


def ingest_secrets(secret: Mapping[str, Any]) -> list[str]:
    """The ingest secret is ``{"secret": current, "previous": optional}`` (rotation keeps both): the default
    source's; another source's are under ``"sources": {"<name>": {"secret": ..., "previous": ...}}``."""
    return [s for s in (secret.get("secret"), secret.get("previous")) if isinstance(s, str) and s]


def load_ingest_config(environment: IngestEnvironment, client: Any = None, refresh: bool = False) -> RelayConfig:
    """The ingest's configuration: its settings, the connections file, and the sources' signing secrets."""
    secret = read_secret(environment.secret_arn, "ingest.secrets", client, refresh)
    shipped = shipped_connections(environment.connections_file)
    declared = shipped.get("sources") if isinstance(shipped.get("sources"), dict) else None
    values: dict[str, Any] = {}
    if declared is None or DEFAULT in declared:  # the top-level secret is the default source's, when it exists
        values["ingest"] = {"secrets": ingest_secrets(secret)}
    sources = secret.get("sources")
    if isinstance(sources, dict) and declared is not None:  # a source's secret without the source is not one
        values["sources"] = {
            name: {"secrets": ingest_secrets(value)}
            for name, value in sources.items()
            if isinstance(value, dict) and name in declared
        }
    return config_from_env(environment.settings, values, credentials=False, shipped=shipped)


def load_vendor_config(environment: VendorEnvironment, client: Any = None, refresh: bool = False) -> RelayConfig:
    """A vendor function's configuration: its settings, the connections file, and its vendor's keys (the
    default connection's at the top of its secret, another's under ``"connections": {"<name>": {...}}``); a
    connection without its key is still in it (`VendorFunction.forwarder` refuses to send for it)."""
    vendor = environment.vendor
    secret = read_secret(environment.secret_arn, vendor, client, refresh)
    values: dict[str, Any] = {vendor: {k: secret[k] for k in SECRET_KEYS[vendor] if k in secret}}
    shipped = shipped_connections(environment.connections_file)
    declared = (shipped.get("connections") or {}).get(vendor) or {}
    named = secret.get("connections")
    if isinstance(named, dict):
        values["connections"] = {
            vendor: {
                name: {k: v[k] for k in SECRET_KEYS[vendor] if k in v}
                for name, v in named.items()
                if isinstance(v, dict) and name in declared
            }
        }
    # each connection's keys are checked when its forwarder is made (relay.delivery.function): one connection
    # missing its key holds its own events, not the others'
    return config_from_env(environment.settings, values, credentials=False, shipped=shipped)

"""The environment variables each function reads, one pydantic model per function.

`template.yaml` sets them. A function validates its model once, on its first invocation
(`get_environment`); a missing or malformed variable raises `InvalidEnvironment` naming it, so the
invocation fails as a Lambda error (which the template's error alarms count) instead of answering requests
with a configuration it cannot use. This module is the only one that reads `os.environ`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from relay.models.names import Vendor

DAY_SECONDS = 86_400
SQS_MAX_RETENTION_SECONDS = 14 * DAY_SECONDS
SETTINGS_PREFIX = "RELAY_"


class InvalidEnvironment(RuntimeError):
    """A function's environment variables do not describe a usable function; the message names each one."""


class FunctionEnvironment(BaseModel):
    """What every function reads. `settings` holds the ``RELAY_<SECTION>_<KEY>`` variables, which
    `relay.models.config.config_from_env` turns into the relay's configuration."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    idempotency_table: str = Field(alias="RELAY_IDEMPOTENCY_TABLE", min_length=1)
    max_event_age_days: int = Field(7, alias="RELAY_INGEST_MAX_EVENT_AGE_DAYS", ge=1)
    dead_letter_retention_seconds: int = Field(
        SQS_MAX_RETENTION_SECONDS, alias="RELAY_DEAD_LETTER_RETENTION_SECONDS", ge=60, le=SQS_MAX_RETENTION_SECONDS
    )
    # how long the archive keeps events (0: no archive): the ledger remembers deliveries as long (relay replay)
    archive_retention_days: int = Field(0, alias="RELAY_ARCHIVE_RETENTION_DAYS", ge=0, le=3650)
    # the sources and connections (relay.models.connections_file): the file shipped in the layer unless set
    connections_file: str | None = Field(None, alias="RELAY_CONNECTIONS_FILE")
    settings: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _settings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = {k: v for k, v in data.items() if v != ""}  # an empty template parameter is the default
            data["settings"] = {k: v for k, v in data.items() if isinstance(k, str) and k.startswith(SETTINGS_PREFIX)}
        return data


class IngestEnvironment(FunctionEnvironment):
    """IngestFunction's variables."""

    topic_arn: str = Field(alias="RELAY_TOPIC_ARN", min_length=1)
    secret_arn: str = Field(alias="RELAY_INGEST_SECRET_ARN", min_length=1)
    replay_table: str | None = Field(None, alias="RELAY_REPLAY_TABLE")
    archive: bool = Field(False, alias="RELAY_ARCHIVE")  # publish each request's archive message (relay.archive)


class VendorEnvironment(FunctionEnvironment):
    """A vendor function's variables."""

    vendor: Vendor = Field(alias="RELAY_VENDOR")
    dlq_url: str = Field(alias="RELAY_DLQ_URL", min_length=1)
    max_receive_count: int = Field(alias="RELAY_MAX_RECEIVE_COUNT", ge=1)
    secret_arn: str = Field(alias="RELAY_VENDOR_SECRET_ARN", min_length=1)
    # the function's own queue (retry delays, automatic redrive); else derived from the records' queue ARN
    queue_url: str | None = Field(None, alias="RELAY_QUEUE_URL")


class ArchiveEnvironment(BaseModel):
    """ArchiveFunction's variables (Firehose's transformation: no table, no secret)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key_id: str = Field(alias="RELAY_ARCHIVE_KEY_ID", min_length=1)  # the archive's KMS key: seals personal fields


class TracingEnvironment(BaseModel):
    """Whether X-Ray tracing is on: only in Lambda, and only with POWERTOOLS_TRACE_DISABLED false."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    function_name: str | None = Field(None, alias="AWS_LAMBDA_FUNCTION_NAME")
    trace_disabled: bool = Field(True, alias="POWERTOOLS_TRACE_DISABLED")

    @property
    def enabled(self) -> bool:
        return self.function_name is not None and not self.trace_disabled


M = TypeVar("M", bound=BaseModel)


def read_environment(model: type[M], environ: Mapping[str, str] | None = None) -> M:
    """`model` validated from `environ` (the process's environment by default); raises InvalidEnvironment."""
    try:
        return model.model_validate(dict(os.environ if environ is None else environ))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'environment'}: {e['msg']}" for e in exc.errors())
        raise InvalidEnvironment(f"{model.__name__}: {problems}") from None


@functools.cache
def get_environment(model: type[M]) -> M:
    """`read_environment(model)` once per container: the variables of a function do not change while it runs."""
    return read_environment(model)

"""The ingest API's OpenAPI document, generated from the pydantic models (committed as openapi.json;
a test fails when the file drifts from the models: run `make openapi`)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from relay import __version__
from relay.aws.sns import SNS_MAX_BYTES
from relay.ingest.signing import HEADER
from relay.journey.refusals import REASONS
from relay.models.event import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST, Event
from relay.models.fields import MAX_EVENT_ID_LENGTH
from relay.models.names import NAME_PATTERN, SOURCE_HEADER


class FieldErrorModel(BaseModel):
    field: str = Field(description="dotted path of the field, e.g. items[0].price")
    message: str = Field(description="the rule it broke")


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="IngestRequest")
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class AcceptedEvent(BaseModel):
    index: int
    event_id: str
    destinations: list[str] = Field(
        description="connections the event is queued for: `applovin` (a vendor's default connection), `applovin.eu`"
    )
    skipped: dict[str, str] | None = Field(default=None, description="connection -> why it does not get the event")
    invalid: dict[str, list[FieldErrorModel]] | None = Field(
        default=None, description="connection -> the vendor rules the event breaks (not queued for it)"
    )
    duplicate: bool | None = Field(
        default=None, description="true: the relay queued this event_id before (a resend); not queued again"
    )


class RejectedEvent(BaseModel):
    index: int
    event_id: str | None
    errors: list[FieldErrorModel]


class IngestResponse(BaseModel):
    accepted: list[AcceptedEvent]
    rejected: list[RejectedEvent]


class ErrorResponse(BaseModel):
    error: str
    request_id: str = Field(description="API Gateway's id of the request: quote it, or GET /v1/requests/{request_id}")
    reason: str | None = Field(default=None, description="4xx: why, as a code (docs/ingest-api.md, Refused requests)")
    not_enqueued: list[str] | None = Field(default=None, description="503 only: event_ids to resend")


class RejectedRecord(BaseModel):
    index: int
    event_id: str | None
    errors: list[FieldErrorModel] = Field(description="the fields and the rules they broke, never their values")


class SignatureDiagnosis(BaseModel):
    diagnosis: Literal["missing", "malformed", "milliseconds", "stale", "mismatch", "replayed"]
    skew_seconds: int | None = Field(default=None, description="stale: the relay's clock less the signed t")


class Refusal(BaseModel):
    request_id: str
    at: str = Field(description="when it was refused (ISO 8601, UTC)")
    method: str
    status: int
    reason: Literal[tuple(REASONS)] = Field(description="why (docs/ingest-api.md, Refused requests)")  # type: ignore[valid-type]
    error: str = Field(description="the message the client got")
    source: str = Field(description="the source the request named")
    source_known: bool = Field(description="false: X-Relay-Source named no source of the relay")
    event_ids: list[str] = Field(description="the event ids its body named, read though it was refused")
    rejected: list[RejectedRecord] | None = None
    signature: SignatureDiagnosis | None = None
    not_recorded: int | None = Field(default=None, description="refusals before this one the flood budget left out")


class Attempt(BaseModel):
    at: str = Field(description="when the request was made (ISO 8601, UTC)")
    attempt: int = Field(description="which try of this request within its invocation (1 = the first)")
    status: int | None = Field(description="the vendor's HTTP status; null when it did not answer")
    latency_ms: float
    response: str = Field(description="the vendor's answer, at most 1 KB")


class VendorRequestModel(BaseModel):
    model_config = ConfigDict(title="VendorRequest")
    method: str
    url: str
    headers: dict[str, str] = Field(description="secret headers masked as ***")
    body: Any = Field(description="the body as sent (hashed identifiers), IP addresses truncated to /24 or /48")


class Requeued(BaseModel):
    at: str = Field(description="when a fixed resend queued the event for this vendor (ISO 8601, UTC)")
    earlier_errors: list[FieldErrorModel] = Field(description="what the vendor had found invalid before")


class VendorJourney(BaseModel):
    outcome: Literal["delivered", "skipped", "invalid", "dead_lettered", "pending"]
    reason: str | None = Field(default=None, description="why it was skipped, dead-lettered or is pending")
    errors: list[FieldErrorModel] | None = Field(default=None, description="invalid: the vendor rules it breaks")
    status: int | None = Field(default=None, description="delivered: the vendor's HTTP status")
    next_attempt_at: str | None = Field(default=None, description="pending: when it is tried again")
    requeued: Requeued | None = Field(default=None, description="a fixed resend reached a vendor that found it invalid")
    attempts: list[Attempt] = Field(description="every vendor request that carried the event, oldest first")
    request: VendorRequestModel | None = Field(description="the last request that carried it")


class EventJourney(BaseModel):
    event_id: str
    accepted_at: str | None = Field(description="when the ingest queued it (ISO 8601, UTC)")
    request_id: str | None = Field(description="the API Gateway request id of that POST")
    source: str = Field(description="the source that sent it (event ids are scoped per source)")
    vendors: dict[str, VendorJourney] = Field(description="connection -> what became of the event there")
    refused: list[Refusal] = Field(description="the refused requests that named the event (7 days), newest first")


def _response(description: str, *refs: str) -> dict[str, Any]:
    schemas = [{"$ref": f"#/components/schemas/{r}"} for r in refs]
    schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi() -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (IngestRequest, "validation"),
            (IngestResponse, "serialization"),
            (ErrorResponse, "serialization"),
            (EventJourney, "serialization"),
            (Refusal, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "S2S Relay ingest API",
            "version": __version__,
            "description": "Signed canonical conversion events in; see docs/ingest-api.md.",
        },
        "paths": {
            "/v1/events": {
                "post": {
                    "operationId": "postEvents",
                    "summary": f"Send 1 to {MAX_EVENTS_PER_REQUEST} canonical events",
                    "parameters": [
                        {
                            "name": SOURCE_HEADER,
                            "in": "header",
                            "required": False,
                            "description": "the source that signs the request (docs/connections.md); default: default",
                            "schema": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
                        },
                        {
                            "name": HEADER,
                            "in": "header",
                            "required": True,
                            "description": 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>',
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "description": f"at most {MAX_BODY_BYTES} bytes; each event at most {SNS_MAX_BYTES} bytes",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestRequest"}}},
                    },
                    "responses": {
                        "202": _response("at least one event accepted", "IngestResponse"),
                        "400": _response("no event valid, or the body is not JSON", "IngestResponse", "ErrorResponse"),
                        "401": _response(
                            "signature missing, malformed, stale, not matching the source's secrets, or already used "
                            "(replay); X-Relay-Source naming no source",
                            "ErrorResponse",
                        ),
                        "413": _response(f"body over {MAX_BODY_BYTES} bytes or over 100 events", "ErrorResponse"),
                        "415": _response("Content-Type is not application/json", "ErrorResponse"),
                        "503": _response(
                            "events could not be queued; resend (event_id makes it safe)", "ErrorResponse"
                        ),
                    },
                }
            },
            "/v1/events/{event_id}": {"get": _get_event()},
            "/v1/requests/{request_id}": {"get": _get_request()},
        },
        "components": {"schemas": defs["$defs"]},
    }


def _get_event() -> dict[str, Any]:
    return {
        "operationId": "getEvent",
        "summary": "What became of one event at each vendor: its journey",
        "parameters": [
            {
                "name": "event_id",
                "in": "path",
                "required": True,
                "description": "the event's event_id, percent-encoded (every UTF-8 byte but A-Z a-z 0-9 - . _ ~)",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID_LENGTH},
            },
            {
                "name": SOURCE_HEADER,
                "in": "header",
                "required": False,
                "description": "the source whose event it is, and whose secret signs (docs/connections.md)",
                "schema": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
            },
            {
                "name": HEADER,
                "in": "header",
                "required": True,
                "description": 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.GET /v1/events/<event_id>")>, '
                "the event_id percent-encoded as in the path",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": _response("the event's journey", "EventJourney"),
            "400": _response("the event_id is not one (empty, too long, not printable)", "ErrorResponse"),
            "401": _response("signature missing, malformed, stale or not matching", "ErrorResponse"),
            "404": _response("the relay knows no such event (never accepted, or past its horizon)", "ErrorResponse"),
            "503": _response("the journey could not be read; ask again", "ErrorResponse"),
        },
    }


def _get_request() -> dict[str, Any]:
    return {
        "operationId": "getRequest",
        "summary": "What the relay kept of a request it refused (7 days)",
        "parameters": [
            {
                "name": "request_id",
                "in": "path",
                "required": True,
                "description": "the request_id of a refusal's answer",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~+=-]{1,128}$"},
            },
            {
                "name": SOURCE_HEADER,
                "in": "header",
                "required": False,
                "description": "the source that signs; it reads refusals of requests that named it or no known source",
                "schema": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
            },
            {
                "name": HEADER,
                "in": "header",
                "required": True,
                "description": 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.GET /v1/requests/<request_id>")>',
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": _response("the refusal", "Refusal"),
            "400": _response("the request_id is not one", "ErrorResponse"),
            "401": _response("signature missing, malformed, stale or not matching", "ErrorResponse"),
            "404": _response("no refusal of that request kept (accepted, or older than 7 days)", "ErrorResponse"),
            "503": _response("the record could not be read; ask again", "ErrorResponse"),
        },
    }


def openapi_json() -> str:
    return json.dumps(openapi(), indent=2, sort_keys=True) + "\n"

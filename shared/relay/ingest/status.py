"""GET /v1/events/{event_id}: a backend checks what became of an event (docs/ingest-api.md, "Event status").

Signed with the same header as a POST, the HMAC taken over ``"<t>.GET /v1/events/<event_id>"``, the event_id
percent-encoded as in the URL: every byte of its UTF-8 but ``A-Z a-z 0-9 - . _ ~`` as ``%XX`` (upper-case hex),
so an id of those characters alone is signed as it is. The relay takes that form from the decoded id, so how a
proxy re-encodes the path does not matter. The timestamp tolerance applies; the replay guard does not
(reading twice changes nothing). A source other than default names itself in ``X-Relay-Source``, signs with
its own secret and reads its own events only (event ids are scoped per source).

GET /v1/requests/{request_id} answers what the relay kept of a request it refused (relay.journey.refusals),
signed the same way over ``"<t>.GET /v1/requests/<request_id>"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote

from relay.ingest.signing import HEADER, SignatureError, SignatureMismatch, verify
from relay.models.fields import MAX_EVENT_ID_LENGTH, is_event_id
from relay.models.names import DEFAULT, SOURCE_HEADER

if TYPE_CHECKING:
    from relay.journey import JourneyTable
    from relay.journey.refusals import RefusalLog
    from relay.models.config import RelayConfig

STATUS_PREFIX = "/v1/events/"
REQUESTS_PREFIX = "/v1/requests/"
REQUEST_ID = re.compile(r"[A-Za-z0-9._~+=-]{1,128}")


def event_path(event_id: str) -> str:
    """The path of an event's status: ``/v1/events/`` and the id, percent-encoded (RFC 3986 unreserved kept)."""
    return STATUS_PREFIX + quote(event_id, safe="")


def signed_message(event_id: str) -> bytes:
    """What a GET's signature is taken over, after ``"<t>."``: ``GET /v1/events/<encoded event_id>``."""
    return f"GET {event_path(event_id)}".encode()


class StatusResult(NamedTuple):
    status: int
    body: dict[str, Any]
    secret_mismatch: bool = False  # refused because no configured secret made the signature (a rotation?)
    reason: str | None = None  # why it was refused (relay.journey.refusals.REASONS)
    signature: dict[str, Any] | None = None  # a refused signature's diagnosis
    event_ids: list[str] | None = None  # the event id the path names, when it was refused


def _event_id(path: str, path_parameters: Mapping[str, str] | None) -> str | StatusResult:
    """The event_id a GET names, or the 400 that says why it names none."""
    if path_parameters and "event_id" in path_parameters:
        event_id = path_parameters["event_id"]
    else:
        try:
            event_id = unquote(path[len(STATUS_PREFIX) :], errors="strict")
        except UnicodeDecodeError:
            why = "event_id: the path's percent-encoding is not UTF-8"
            return StatusResult(400, {"error": why}, reason="invalid_event_id")
    if not is_event_id(event_id):
        why = f"must be 1 to {MAX_EVENT_ID_LENGTH} printable characters, percent-encoded in the path"
        return StatusResult(400, {"error": f"event_id: {why}"}, reason="invalid_event_id")
    return event_id


def _signer(
    headers: Mapping[str, str], config: RelayConfig, message: bytes, now: float, signed_over: str
) -> str | StatusResult:
    """The source whose secret signed a GET over `message`, or the 401 that says why none did."""
    source = headers.get(SOURCE_HEADER.lower()) or DEFAULT
    signer = config.source(source)
    if signer is None:
        return StatusResult(401, {"error": f"{SOURCE_HEADER}: names no source of this relay"}, reason="unknown_source")
    secrets = [s.get_secret_value() for s in signer.secrets]
    try:
        verify(message, headers.get(HEADER.lower()), secrets, config.ingest.tolerance_seconds, now=now)
    except SignatureError as exc:
        why = f'{exc} (a GET is signed over "<t>.GET {signed_over}")'
        diagnosis = {"diagnosis": exc.diagnosis}
        if exc.skew_seconds is not None:
            diagnosis["skew_seconds"] = exc.skew_seconds
        mismatch = isinstance(exc, SignatureMismatch)
        return StatusResult(401, {"error": why}, mismatch, f"signature_{exc.diagnosis}", diagnosis)
    return source


def event_status(
    path: str,
    headers: Mapping[str, str],
    config: RelayConfig,
    journeys: JourneyTable,
    now: float,
    path_parameters: Mapping[str, str] | None = None,
) -> StatusResult:
    """The answer to a GET of `path`. `path_parameters`: API Gateway's, which hold the event_id decoded (the
    route is ``/v1/events/{event_id+}``, so that an id holding a slash reaches it); without them (the local
    stack) the id is decoded from the path."""
    event_id = _event_id(path, path_parameters)
    if isinstance(event_id, StatusResult):
        return event_id
    source = _signer(headers, config, signed_message(event_id), now, f"{STATUS_PREFIX}<percent-encoded event_id>")
    if isinstance(source, StatusResult):
        return source._replace(event_ids=[event_id])
    from relay.journey.trace import trace_event

    try:
        journey = trace_event(journeys, event_id, source, config.reachable(source))
    except Exception:  # noqa: BLE001 - DynamoDB throttled or unavailable: the client asks again
        return StatusResult(503, {"error": "could not read the event's journey; try again"})
    if journey is None:
        why = f"the relay knows no event {event_id!r} (never accepted, or older than its horizon)"
        return StatusResult(404, {"error": why})
    return StatusResult(200, journey)


def request_path(request_id: str) -> str:
    return REQUESTS_PREFIX + quote(request_id, safe="")


def request_status(
    path: str,
    headers: Mapping[str, str],
    config: RelayConfig,
    refusals: RefusalLog,
    now: float,
    path_parameters: Mapping[str, str] | None = None,
) -> StatusResult:
    """GET /v1/requests/{request_id}: the refusal the relay keeps of a request (7 days), signed like an event's
    GET over ``"<t>.GET /v1/requests/<request_id>"``. A source reads the refusals of requests that named it,
    and those of requests that named no source of the relay."""
    request_id = (path_parameters or {}).get("request_id") or unquote(path[len(REQUESTS_PREFIX) :])
    if not REQUEST_ID.fullmatch(request_id):
        why = "request_id: must be 1 to 128 of A-Z a-z 0-9 . _ ~ + = - (the request id of an answer)"
        return StatusResult(400, {"error": why}, reason="invalid_request_id")
    source = _signer(headers, config, f"GET {request_path(request_id)}".encode(), now, f"{REQUESTS_PREFIX}<request_id>")
    if isinstance(source, StatusResult):
        return source
    try:
        refused = refusals.get(request_id)
    except Exception:  # noqa: BLE001 - DynamoDB throttled or unavailable: the client asks again
        return StatusResult(503, {"error": "could not read the request's record; try again"})
    if refused is None or (refused["source_known"] and refused["source"] != source):
        why = (
            f"the relay keeps no refusal of request {request_id!r}: refusals are kept 7 days; the events of a "
            f"request it accepted are traced by their ids ({STATUS_PREFIX}{{event_id}})"
        )
        return StatusResult(404, {"error": why})
    return StatusResult(200, {k: v for k, v in refused.items() if k != "written_at"})

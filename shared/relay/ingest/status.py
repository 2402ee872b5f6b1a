"""GET /v1/events/{event_id}: a backend checks what became of an event (docs/ingest-api.md, "Event status").

Signed with the same header as a POST, the HMAC taken over ``"<t>.GET /v1/events/<event_id>"``, the event_id
percent-encoded as in the URL: every byte of its UTF-8 but ``A-Z a-z 0-9 - . _ ~`` as ``%XX`` (upper-case hex),
so an id of those characters alone is signed as it is. The relay takes that form from the decoded id, so how a
proxy re-encodes the path does not matter. The timestamp tolerance applies; the replay guard does not
(reading twice changes nothing). A source other than default names itself in ``X-Relay-Source``, signs with
its own secret and reads its own events only (event ids are scoped per source).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote

from relay.ingest.signing import HEADER, SignatureError, SignatureMismatch, verify
from relay.models.fields import MAX_EVENT_ID_LENGTH, is_event_id
from relay.models.names import DEFAULT, SOURCE_HEADER

if TYPE_CHECKING:
    from relay.journey import JourneyTable
    from relay.models.config import RelayConfig

STATUS_PREFIX = "/v1/events/"


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


def _event_id(path: str, path_parameters: Mapping[str, str] | None) -> str | StatusResult:
    """The event_id a GET names, or the 400 that says why it names none."""
    if path_parameters and "event_id" in path_parameters:
        event_id = path_parameters["event_id"]
    else:
        try:
            event_id = unquote(path[len(STATUS_PREFIX) :], errors="strict")
        except UnicodeDecodeError:
            return StatusResult(400, {"error": "event_id: the path's percent-encoding is not UTF-8"})
    if not is_event_id(event_id):
        why = f"must be 1 to {MAX_EVENT_ID_LENGTH} printable characters, percent-encoded in the path"
        return StatusResult(400, {"error": f"event_id: {why}"})
    return event_id


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
    source = headers.get(SOURCE_HEADER.lower()) or DEFAULT
    signer = config.source(source)
    if signer is None:
        return StatusResult(401, {"error": f"{SOURCE_HEADER}: names no source of this relay"})
    secrets = [s.get_secret_value() for s in signer.secrets]
    try:
        verify(signed_message(event_id), headers.get(HEADER.lower()), secrets, config.ingest.tolerance_seconds, now=now)
    except SignatureError as exc:
        why = f'{exc} (a GET is signed over "<t>.GET {STATUS_PREFIX}<percent-encoded event_id>")'
        return StatusResult(401, {"error": why}, isinstance(exc, SignatureMismatch))
    from relay.journey.trace import trace_event

    try:
        journey = trace_event(journeys, event_id, source, config.reachable(source))
    except Exception:  # noqa: BLE001 - DynamoDB throttled or unavailable: the client asks again
        return StatusResult(503, {"error": "could not read the event's journey; try again"})
    if journey is None:
        why = f"the relay knows no event {event_id!r} (never accepted, or older than its horizon)"
        return StatusResult(404, {"error": why})
    return StatusResult(200, journey)

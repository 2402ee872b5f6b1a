"""A refused request's trace: what the IngestFunction keeps of it (relay.journey.refusals) and counts.

Made from the answer the client got and the request itself, never from its values: the event ids its body
names are read best effort (a body refused for its signature or its shape may still name them), every other
value of the body is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics

from relay.journey.refusals import MAX_EVENT_IDS, UNKNOWN_SOURCE_MAX, Refusal, RefusalLog
from relay.models.config import RelayConfig
from relay.models.event import MAX_BODY_BYTES
from relay.models.fields import is_event_id
from relay.models.names import DEFAULT, SOURCE_HEADER
from relay.observability import MetricUnit, metrics

REFUSED_METRIC = "RequestsRefused"  # dimension reason: every refusal
NOT_RECORDED_METRIC = "RefusalsNotRecorded"  # refusals the flood budget (or DynamoDB) left unrecorded


def named_event_ids(raw: bytes) -> list[str]:
    """The event ids a body names (``{"events": [{"event_id": ...}]}``), best effort: [] when it is not JSON."""
    if len(raw) > MAX_BODY_BYTES:  # a body over the ingest's limit is not read for its event ids
        return []
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        return []
    ids = [e.get("event_id") for e in events[:MAX_EVENT_IDS] if isinstance(e, dict)]
    return [i for i in ids if is_event_id(i)]


def source_named(headers: Mapping[str, str], config: RelayConfig) -> tuple[str, bool]:
    """The source a request named, and whether the relay has it (an unknown name kept printable and short)."""
    name = headers.get(SOURCE_HEADER.lower()) or DEFAULT
    if config.source(name) is not None:
        return name, True
    printable = "".join(c for c in name if c.isascii() and c.isprintable())[:UNKNOWN_SOURCE_MAX]
    return printable or "(unprintable)", False


def refusal(
    answer: tuple[int, Mapping[str, Any], str],
    request: tuple[str, str, bytes, Mapping[str, str]],
    config: RelayConfig,
    now: float,
    signature: dict[str, Any] | None = None,
    event_ids: list[str] | None = None,
) -> Refusal:
    """The Refusal of a request refused with `answer` (status, body, reason). `request`: its id, method, raw
    body and lower-case headers; `event_ids`: the ids it named, when the caller knows them (a GET's path)."""
    status, body, reason = answer
    request_id, method, raw, headers = request
    source, known = source_named(headers, config)
    rejected = [
        {k: r[k] for k in ("index", "event_id", "errors", "invalid", "skipped") if k in r}
        for r in body.get("rejected", [])
    ]
    if event_ids is None:
        event_ids = [r["event_id"] for r in rejected if r.get("event_id")] if rejected else named_event_ids(raw)
    return Refusal(
        request_id=request_id,
        at=now,
        status=status,
        reason=reason,
        error=str(body.get("error") or f"{len(rejected)} event(s) rejected"),
        source=source,
        method=method,
        source_known=known,
        event_ids=event_ids,
        rejected=rejected,
        signature=signature,
    )


def keep(log: RefusalLog, reason: str, refused: Refusal | None = None) -> bool:
    """Count a refusal (metric RequestsRefused, by `reason`) and write it (`refused`) within the log's
    budget; `refused` None: the budget is spent, the refusal is counted and left out."""
    counted = EphemeralMetrics()
    counted.add_dimension("reason", reason)
    counted.add_metric(REFUSED_METRIC, MetricUnit.Count, 1)
    counted.flush_metrics()
    written = log.write(refused) if refused is not None else log.leave_out()
    if not written:
        metrics.add_metric(NOT_RECORDED_METRIC, MetricUnit.Count, 1)
    return written

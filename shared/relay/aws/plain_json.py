"""A JSON-protocol serializer for trusted calls (DynamoDB's, relay.aws.clients.tuned): parameters already in
their wire form (`{"S": ...}`) go to `json.dumps` as they are. botocore walks them through the operation's
shapes and copies them, member by member, before dumping the copy: the same JSON, and two thirds of the
ingest's claim of 100 events. An operation takes this path only when its whole input, read from botocore's
model, is strings, numbers, booleans, blobs, lists, maps and structures with no renamed member, timestamp,
float, document or host prefix; blobs are given as bytes (base64 in the JSON, as botocore writes them).
Anything else, or a value JSON cannot write, goes through botocore's own serializer.
tests/integration/test_aws_clients.py checks both give the same bytes (docs/decisions/0012)."""

from __future__ import annotations

import base64
import json
from typing import Any

from botocore.serialize import JSONSerializer

# the shapes whose values JSON writes as they are (a blob as its base64, see _blob)
_PLAIN_TYPES = frozenset({"string", "integer", "long", "boolean", "blob", "list", "map", "structure"})


def _blob(value: Any) -> str:
    """A blob's JSON value, as botocore writes it (base64 of the bytes)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not a blob")


def plain(shape: Any, seen: set[str] | None = None) -> bool:
    """Whether every value of `shape` is written to JSON as given: no renamed member, no timestamp, float or
    document (botocore converts those), following the shape's members (recursive shapes once)."""
    seen = set() if seen is None else seen
    if shape is None or shape.name in seen:
        return True
    seen.add(shape.name)
    if shape.type_name not in _PLAIN_TYPES or getattr(shape, "is_document_type", False):
        return False
    if shape.type_name == "structure":
        members = shape.members.values()
        return all("name" not in m.serialization for m in members) and all(plain(m, seen) for m in members)
    children = {"list": lambda: (shape.member,), "map": lambda: (shape.key, shape.value)}.get(shape.type_name)
    return children is None or all(plain(child, seen) for child in children())


def plain_operation(operation_model: Any) -> bool:
    """Whether an operation takes the plain path: its whole input plain, no host prefix, not a query-compatible
    service."""
    return (
        operation_model.endpoint is None
        and not operation_model.metadata.get("awsQueryCompatible")
        and plain(operation_model.input_shape)
    )


# per operation of each API version, once per process whatever the clients made: the request botocore makes
# of no parameters (method, target, content type) when the operation takes the plain path; None when not
_SKELETONS: dict[tuple[Any, Any, str], dict[str, Any] | None] = {}


class PlainJsonSerializer(JSONSerializer):
    """botocore's JSON serializer, with `json.dumps` of the parameters for operations whose input is plain
    (`adopt` turns a client's serializer into one, keeping its settings)."""

    @classmethod
    def adopt(cls, serializer: Any) -> bool:
        """Make `serializer` (botocore's JSONSerializer, nothing derived from it) one of these; False when
        it is not botocore's JSONSerializer."""
        if type(serializer) is not JSONSerializer:
            return False
        serializer.__class__ = cls
        return True

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> dict[str, Any]:
        metadata = operation_model.metadata
        key = (metadata.get("serviceId"), metadata.get("apiVersion"), operation_model.name)
        if key not in _SKELETONS:
            plain_path = plain_operation(operation_model)
            _SKELETONS[key] = super().serialize_to_request({}, operation_model) if plain_path else None
        empty = _SKELETONS[key]
        if empty is None:
            return super().serialize_to_request(parameters, operation_model)
        try:
            body = _ENCODER.encode(parameters).encode("utf-8")
        except (TypeError, ValueError):  # a value JSON cannot write as given (a set, a memoryview): botocore's way
            return super().serialize_to_request(parameters, operation_model)
        return {**empty, "headers": dict(empty["headers"]), "body": body}  # botocore adds to the headers


# json.dumps' defaults (botocore's), blobs as base64; the relay's parameters hold no cycles
_ENCODER = json.JSONEncoder(default=_blob, check_circular=False)

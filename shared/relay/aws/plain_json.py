"""A JSON-protocol serializer for trusted calls (relay.aws.clients.plain_json): parameters already in their
wire form go to `json.dumps` as they are, instead of through botocore's copy of them, shape by shape."""

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


def _plain_operation(operation_model: Any) -> bool:
    """Whether an operation takes the plain path: worked out once per process for each operation of each API
    version (a walk through its input's shapes), whatever the clients made."""
    metadata = operation_model.metadata
    key = (metadata.get("serviceId"), metadata.get("apiVersion"), operation_model.name)
    if key not in _PLAIN_OPERATIONS:
        _PLAIN_OPERATIONS[key] = (
            operation_model.endpoint is None
            and not metadata.get("awsQueryCompatible")
            and plain(operation_model.input_shape)
        )
    return _PLAIN_OPERATIONS[key]


_PLAIN_OPERATIONS: dict[tuple[Any, Any, str], bool] = {}


class PlainJsonSerializer(JSONSerializer):
    """botocore's JSON serializer, with `json.dumps` of the parameters for operations whose input is plain
    (`adopt` turns a client's serializer into one, keeping its settings)."""

    # per operation: the request botocore makes of no parameters (method, target, content type), when the
    # operation takes the plain path; None when it does not
    _plain: dict[str, dict[str, Any] | None]

    @classmethod
    def adopt(cls, serializer: Any) -> bool:
        """Make `serializer` (botocore's JSONSerializer, nothing derived from it) one of these; False when
        it is not botocore's JSONSerializer."""
        if type(serializer) is not JSONSerializer:
            return False
        serializer.__class__ = cls
        serializer._plain = {}
        return True

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> dict[str, Any]:
        name = operation_model.name
        if name not in self._plain:
            plain_path = _plain_operation(operation_model)
            self._plain[name] = super().serialize_to_request({}, operation_model) if plain_path else None
        empty = self._plain[name]
        if empty is None:
            return super().serialize_to_request(parameters, operation_model)
        try:
            body = _ENCODER.encode(parameters).encode("utf-8")
        except (TypeError, ValueError):  # a value JSON cannot write as given (a set, a memoryview): botocore's way
            return super().serialize_to_request(parameters, operation_model)
        return {**empty, "headers": dict(empty["headers"]), "body": body}  # botocore adds to the headers


# json.dumps' defaults (botocore's), blobs as base64; the relay's parameters hold no cycles
_ENCODER = json.JSONEncoder(default=_blob, check_circular=False)

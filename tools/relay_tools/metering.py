"""What the relay's AWS calls would be billed, counted where they are made: botocore's event hooks on the
local stack's clients (`relay_tools.dev.LocalStack.clients`) count every call by function and operation,
and the DynamoDB write and read units each call consumes.

Every DynamoDB call asks for its consumed capacity (`ReturnConsumedCapacity`), as a deployed relay could;
moto's answer is not DynamoDB's (a 3 KB put is one unit there, a transaction none), so the units are
worked out here by DynamoDB's own rules
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html): a write
takes one unit per KB of the larger of the item before and after it, a read half a unit per 4 KB (one
when strongly consistent), a transaction twice that; a write that adds, changes or removes an item's entry
in a global secondary index takes one more unit per KB of that entry.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from decimal import Decimal
from typing import Any

from relay_tools import console

CAPACITY_OPERATIONS = {
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "GetItem",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
    "Query",
    "Scan",
}
INDEX_ENTRY_OVERHEAD = 100  # bytes DynamoDB adds to each index entry


def item_size(item: dict[str, Any]) -> int:
    """An item's size in bytes as DynamoDB counts it: attribute names and values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(v)
    if kind == "N":
        digits = str(Decimal(v)).lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(_value_size(x) + 1 for x in v)
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum(_value_size({"N": x}) for x in v)
    return sum(len(x) for x in v)  # BS


class Meter:
    """Counts, per function (the local stack's invocation running the thread, or the vendor function whose
    send pool it is; `poller-<vendor>` for Lambda's SQS poller), each AWS operation and DynamoDB's write and
    read units, and SNS's and SQS's billed requests."""

    def __init__(
        self, raw_dynamodb: Any, indexes: dict[str, list[tuple[str, ...]]], pools: dict[str, str] | None = None
    ):
        self.pools = pools or {}  # a vendor's send-pool thread prefix -> its function (relay_tools.console)
        self.raw = raw_dynamodb  # a client of its own, not metered: reads the items before and after a write
        self.indexes = indexes  # table name -> each global secondary index's key attributes
        self.calls: Counter[tuple[str, str, str]] = Counter()  # (function, service, operation)
        self.write_units: Counter[str] = Counter()
        self.read_units: Counter[str] = Counter()
        self.received: Counter[str] = Counter()  # queue url -> messages received
        self.receives: Counter[str] = Counter()  # queue url -> ReceiveMessage calls that returned messages
        # queue url -> SQS requests as billed (a request per 64 KB of payload): SNS's delivery of each message
        # received, and each receive that returned messages
        self.delivered_billed: Counter[str] = Counter()
        self.receive_billed: Counter[str] = Counter()
        # SNS PublishBatch requests as billed (a request per 64 KB of payload), per function
        self.publish_billed: Counter[str] = Counter()
        self.invocations: dict[str, set[str]] = {}  # function -> the invocations that made a call
        self.lock = threading.Lock()
        self._before: threading.local = threading.local()

    def reset(self) -> None:
        """Forget what was counted (a call under way when the hooks were installed is counted only in part)."""
        with self.lock:
            counters = (self.calls, self.write_units, self.read_units, self.received, self.receives)
            for counter in (*counters, self.publish_billed, self.delivered_billed, self.receive_billed):
                counter.clear()
            self.invocations.clear()

    def _hooks(self) -> tuple[tuple[str, Any], ...]:
        return (
            ("provide-client-params.dynamodb.*", self._ask_capacity),
            ("before-call.*.*", self._before_call),
            ("after-call.*.*", self._after_call),
        )

    def install(self, clients: dict[str, Any]) -> None:
        for client in clients.values():
            for event, hook in self._hooks():
                client.meta.events.register(event, hook)

    def uninstall(self, clients: dict[str, Any]) -> None:
        for client in clients.values():
            for event, hook in self._hooks():
                client.meta.events.unregister(event, hook)

    def function(self) -> str:
        invocation = getattr(console._current, "invocation", None)
        if invocation is not None:
            self.invocations.setdefault(invocation[0], set()).add(invocation[1])
            return invocation[0]
        thread = threading.current_thread().name
        vendor = thread.split("-send", 1)[0]
        if vendor in self.pools:
            return self.pools[vendor]
        return thread if thread.startswith("poller-") else "other"

    def _ask_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in CAPACITY_OPERATIONS:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        with self.lock:
            self.calls[(self.function(), service, model.name)] += 1
        body = params.get("body")
        request = json.loads(body) if service in ("dynamodb", "sqs") and body else {}
        if service == "sns" and model.name == "PublishBatch":
            payload = sum(len(str(v).encode()) for k, v in body.items() if k.endswith((".Message", ".Value")))
            with self.lock:
                self.publish_billed[self.function()] += _chunks(payload)
        self._before.request = request
        if service == "dynamodb" and model.name in {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}:
            self._before.writes = self._old_items(model.name, request)

    def _after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        request = getattr(self._before, "request", {})
        if service == "sqs" and model.name == "ReceiveMessage":
            sizes = [_message_bytes(m) for m in parsed.get("Messages", [])]
            url = request.get("QueueUrl", "")
            with self.lock:
                self.received[url] += len(sizes)
                self.receives[url] += bool(sizes)
                self.delivered_billed[url] += sum(_chunks(size) for size in sizes)
                self.receive_billed[url] += _chunks(sum(sizes)) if sizes else 0
        if service != "dynamodb" or parsed.get("Error"):
            return
        writes, reads = self._units(model.name, parsed, request)
        with self.lock:
            self.write_units[self.function()] += writes
            self.read_units[self.function()] += reads

    # -- DynamoDB's units ---------------------------------------------------------------------------

    def _old_items(
        self, operation: str, request: dict[str, Any]
    ) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        """(table, key, item before) of each item the write touches."""
        ops = (
            [next(iter(t.values())) for t in request.get("TransactItems", [])]
            if operation == "TransactWriteItems"
            else [request]
        )
        out = []
        for op in ops:
            table = op["TableName"]
            key = op.get("Key") or {"id": op["Item"]["id"]}
            old = self.raw.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
            out.append((table, key, old))
        return out

    def _units(self, operation: str, parsed: dict[str, Any], request: dict[str, Any]) -> tuple[float, float]:
        if operation in {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}:
            factor = 2 if operation == "TransactWriteItems" else 1
            total = 0.0
            for table, key, old in getattr(self._before, "writes", []):
                new = self.raw.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
                size = max(item_size(old or {}), item_size(new or {}))
                total += factor * (max(1, math.ceil(size / 1024)) + self._index_units(table, old, new))
            self._before.writes = []
            return total, 0.0
        if operation == "BatchWriteItem":  # puts of new items (the refusals' records and pointers)
            puts = [
                (t, r["PutRequest"]["Item"])
                for t, rs in request["RequestItems"].items()
                for r in rs
                if "PutRequest" in r
            ]
            return sum(math.ceil(item_size(i) / 1024) + self._index_units(t, None, i) for t, i in puts), 0.0
        consistent = bool(request.get("ConsistentRead"))
        if operation == "GetItem":
            return 0.0, _read_units([parsed.get("Item") or {}], consistent)
        if operation in {"Query", "Scan"}:
            return 0.0, _read_units(parsed.get("Items", []), consistent, together=True)
        if operation == "BatchGetItem":
            items = [i for table in parsed.get("Responses", {}).values() for i in table]
            return 0.0, _read_units(items, False)
        return 0.0, 0.0

    def _index_units(self, table: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
        units = 0
        for keys in self.indexes.get(table, []):
            before = tuple(str((old or {}).get(k)) for k in keys) if old and all(k in old for k in keys) else None
            after = tuple(str((new or {}).get(k)) for k in keys) if new and all(k in new for k in keys) else None
            if before != after:
                units += (before is not None) + (after is not None)
        return units


def _chunks(nbytes: int) -> int:
    return max(1, math.ceil(nbytes / 65_536))  # SNS and SQS bill each 64 KB of a payload as a request


def _message_bytes(message: dict[str, Any]) -> int:
    """A message's billed size: its body and its attributes' names, types and values."""
    attributes = message.get("MessageAttributes", {})
    return len(message.get("Body", "").encode()) + sum(
        len(name) + len(a.get("DataType", "")) + len(str(a.get("StringValue", "")).encode())
        for name, a in attributes.items()
    )


def _read_units(items: list[dict[str, Any]], consistent: bool, together: bool = False) -> float:
    per = 1.0 if consistent else 0.5
    if together:
        return per * max(1, math.ceil(sum(item_size(i) for i in items) / 4096))
    return sum(per * max(1, math.ceil(item_size(i) / 4096)) for i in items) or per

"""AWS's documented limits, checked on every SNS, SQS and DynamoDB call the relay makes in a test.

moto accepts what AWS refuses: a SendMessageBatch over its total size, a character SQS cannot carry, a
DynamoDB item over 400 KB. conftest patches botocore's one entry point for API calls with `check`, so a
call that breaks a limit gets the error AWS would answer (a ClientError with AWS's code) and the test
fails at teardown — unless it is marked ``aws_limit_errors_expected`` (it tests how the relay handles that
refusal). Sources: the API references of SNS (Publish, PublishBatch), SQS (SendMessage, SendMessageBatch,
ReceiveMessage, ChangeMessageVisibility, DeleteMessageBatch; "Amazon SQS message quotas") and DynamoDB
(PutItem, TransactWriteItems, BatchWriteItem, BatchGetItem; "Item sizes").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

SNS_MESSAGE_BYTES = 262_144  # a message with its attributes, and a PublishBatch in total
SQS_MESSAGE_BYTES = 262_144  # a message with its attributes, and a SendMessageBatch in total
BATCH_ENTRIES = 10  # PublishBatch, SendMessageBatch, ChangeMessageVisibilityBatch, DeleteMessageBatch
MAX_ATTRIBUTES = 10  # message attributes per SNS or SQS message
SQS_MAX_VISIBILITY = 43_200  # 12 hours
SQS_MAX_WAIT = 20
DYNAMODB_ITEM_BYTES = 409_600  # 400 KB
DYNAMODB_BATCH_GET = 100  # keys per BatchGetItem
DYNAMODB_TRANSACTION_ITEMS = 100
DYNAMODB_TRANSACTION_BYTES = 4_194_304  # 4 MB
DYNAMODB_BATCH_WRITE = 25
DYNAMODB_PARTITION_KEY_BYTES = 2048
# the characters SQS takes (SNS delivers to SQS only what SQS takes): #x9 | #xA | #xD | #x20-#xD7FF |
# #xE000-#xFFFD | #x10000-#x10FFFF
NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")


class Violations(list):
    """The limits broken during one test: (operation, rule)."""


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _attributes_bytes(attributes: dict[str, Any]) -> int:
    total = 0
    for name, value in (attributes or {}).items():
        total += _utf8(name) + _utf8(value.get("DataType", ""))
        total += _utf8(value["StringValue"]) if "StringValue" in value else len(value.get("BinaryValue", b""))
    return total


def _text_rules(where: str, text: str, attributes: dict[str, Any]) -> list[str]:
    errors = []
    if NOT_SQS_TEXT.search(text):
        errors.append(f"{where}: holds a character SQS refuses")
    if len(attributes or {}) > MAX_ATTRIBUTES:
        errors.append(f"{where}: more than {MAX_ATTRIBUTES} message attributes")
    for name, value in (attributes or {}).items():
        if not ATTRIBUTE_NAME.fullmatch(name) or name.lower().startswith(("aws.", "amazon.")) or ".." in name:
            errors.append(f"{where}: attribute name {name[:40]!r} is not allowed")
        if NOT_SQS_TEXT.search(value.get("StringValue", "")):
            errors.append(f"{where}: attribute {name} holds a character SQS refuses")
    return errors


def _batch_rules(op: str, entries: list[dict[str, Any]]) -> list[str]:
    errors = []
    if not 1 <= len(entries) <= BATCH_ENTRIES:
        errors.append(f"{op}: {len(entries)} entries; 1 to {BATCH_ENTRIES}")
    ids = [e.get("Id", "") for e in entries]
    if len(set(ids)) != len(ids):
        errors.append(f"{op}: entry ids are not distinct")
    if any(not BATCH_ID.fullmatch(i) for i in ids):
        errors.append(f"{op}: an entry id is not 1-80 of A-Z a-z 0-9 _ -")
    return errors


def _sns(op: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(AWS error code, rule) per broken limit."""
    out: list[tuple[str, str]] = []
    if op == "Publish":
        messages = [params]
    elif op == "PublishBatch":
        messages = params.get("PublishBatchRequestEntries", [])
        out += [("TooManyEntriesInBatchRequest", e) for e in _batch_rules(op, messages)]
    else:
        return out
    return out + _message_rules(op, messages, "Message", SNS_MESSAGE_BYTES, ("InvalidParameter", "InvalidParameter"))


def _message_rules(
    op: str, messages: list[dict[str, Any]], body: str, limit: int, codes: tuple[str, str]
) -> list[tuple[str, str]]:
    """Each message's size (body and attributes) and characters, and the batch's total size. `codes`: AWS's
    error codes for a message too big and for a character refused."""
    out: list[tuple[str, str]] = []
    total = 0
    for m in messages:
        size = _utf8(m.get(body, "")) + _attributes_bytes(m.get("MessageAttributes", {}))
        total += size
        if size > limit:
            out.append((codes[0], f"{op}: a message of {size} bytes; at most {limit}"))
        out += [(codes[1], e) for e in _text_rules(op, m.get(body, ""), m.get("MessageAttributes", {}))]
    if op.endswith("Batch") and total > limit:
        out.append(("BatchRequestTooLong", f"{op}: {total} bytes in all; at most {limit}"))
    return out


def _sqs(op: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if op in ("SendMessage", "SendMessageBatch"):
        messages = [params] if op == "SendMessage" else params.get("Entries", [])
        if op == "SendMessageBatch":
            out += [("TooManyEntriesInBatchRequest", e) for e in _batch_rules(op, messages)]
        codes = ("InvalidParameterValue", "InvalidMessageContents")
        out += _message_rules(op, messages, "MessageBody", SQS_MESSAGE_BYTES, codes)
    elif op in ("ChangeMessageVisibilityBatch", "DeleteMessageBatch"):
        out += [("TooManyEntriesInBatchRequest", e) for e in _batch_rules(op, params.get("Entries", []))]
        for e in params.get("Entries", []):
            if not 0 <= int(e.get("VisibilityTimeout", 0)) <= SQS_MAX_VISIBILITY:
                out.append(("InvalidParameterValue", f"{op}: VisibilityTimeout over {SQS_MAX_VISIBILITY} s"))
    elif op == "ChangeMessageVisibility":
        if not 0 <= int(params.get("VisibilityTimeout", 0)) <= SQS_MAX_VISIBILITY:
            out.append(("InvalidParameterValue", f"{op}: VisibilityTimeout over {SQS_MAX_VISIBILITY} s"))
    elif op == "ReceiveMessage":
        if not 1 <= int(params.get("MaxNumberOfMessages", 1)) <= BATCH_ENTRIES:
            out.append(("InvalidParameterValue", f"{op}: MaxNumberOfMessages 1 to {BATCH_ENTRIES}"))
        if not 0 <= int(params.get("WaitTimeSeconds", 0)) <= SQS_MAX_WAIT:
            out.append(("InvalidParameterValue", f"{op}: WaitTimeSeconds 0 to {SQS_MAX_WAIT}"))
        if not 0 <= int(params.get("VisibilityTimeout", 0)) <= SQS_MAX_VISIBILITY:
            out.append(("InvalidParameterValue", f"{op}: VisibilityTimeout over {SQS_MAX_VISIBILITY} s"))
    return out


def _value_bytes(value: dict[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return _utf8(v)
    if kind == "N":
        return len(str(v).lstrip("-").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_bytes({kind[0]: x}) for x in v)
    if kind == "L":
        return 3 + sum(1 + _value_bytes(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + _utf8(k) + _value_bytes(x) for k, x in v.items())
    return 0


def item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: attribute names and values (its "Item sizes" rules)."""
    return sum(_utf8(name) + _value_bytes(value) for name, value in item.items())


def _key_rules(op: str, key: dict[str, Any]) -> list[tuple[str, str]]:
    for value in key.values():
        if "S" in value and _utf8(value["S"]) > DYNAMODB_PARTITION_KEY_BYTES:
            return [("ValidationException", f"{op}: a key of more than {DYNAMODB_PARTITION_KEY_BYTES} bytes")]
    return []


def _dynamodb(op: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if op == "PutItem":
        size = item_bytes(params.get("Item", {}))
        if size > DYNAMODB_ITEM_BYTES:
            out.append(("ValidationException", f"{op}: an item of {size} bytes; at most {DYNAMODB_ITEM_BYTES}"))
        out += _key_rules(op, {"id": params.get("Item", {}).get("id", {})})
    elif op in ("GetItem", "DeleteItem"):
        out += _key_rules(op, params.get("Key", {}))
    elif op == "TransactWriteItems":
        actions = params.get("TransactItems", [])
        if not 1 <= len(actions) <= DYNAMODB_TRANSACTION_ITEMS:
            out.append(("ValidationException", f"{op}: {len(actions)} actions; 1 to {DYNAMODB_TRANSACTION_ITEMS}"))
        keys, total = [], 0
        for action in actions:
            ((kind, body),) = action.items()
            item = body.get("Item") or body.get("Key") or {}
            keys.append((body.get("TableName"), repr(item.get("id"))))
            size = item_bytes(item)
            total += size
            if size > DYNAMODB_ITEM_BYTES:
                out.append(("ValidationException", f"{op}: an item of {size} bytes; at most {DYNAMODB_ITEM_BYTES}"))
        if len(set(keys)) != len(keys):
            out.append(("ValidationException", f"{op}: two actions on one item"))
        if total > DYNAMODB_TRANSACTION_BYTES:
            out.append(("ValidationException", f"{op}: {total} bytes in all; at most {DYNAMODB_TRANSACTION_BYTES}"))
    elif op == "BatchGetItem":
        n = sum(len(v.get("Keys", [])) for v in params.get("RequestItems", {}).values())
        if not 1 <= n <= DYNAMODB_BATCH_GET:
            out.append(("ValidationException", f"{op}: {n} keys; 1 to {DYNAMODB_BATCH_GET}"))
    elif op == "BatchWriteItem":
        n = sum(len(v) for v in params.get("RequestItems", {}).values())
        if n > DYNAMODB_BATCH_WRITE:
            out.append(("ValidationException", f"{op}: {n} requests; at most {DYNAMODB_BATCH_WRITE}"))
    return out


RULES: dict[str, Callable[[str, dict[str, Any]], list[tuple[str, str]]]] = {
    "sns": _sns,
    "sqs": _sqs,
    "dynamodb": _dynamodb,
}


def check(service: str, operation: str, params: dict[str, Any], violations: Violations) -> None:
    """Raise the ClientError AWS would answer for the first limit `params` break, and note every one."""
    rules = RULES.get(service)
    broken = rules(operation, params) if rules else []
    if not broken:
        return
    violations.extend((f"{service}.{operation}", rule) for _, rule in broken)
    code, rule = broken[0]
    raise ClientError({"Error": {"Code": code, "Message": rule}}, operation)

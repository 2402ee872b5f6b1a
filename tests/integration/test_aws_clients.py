"""The functions' AWS clients (relay.aws.clients): a fixed User-Agent, the endpoint resolved once per
operation, the trusted DynamoDB calls serialised by json.dumps (the same bytes as botocore's), against moto."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import boto3
import botocore
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from relay.aws import plain_json
from relay.aws.clients import AWS_CALLS, TRUSTED_CALLS, USER_AGENT, LazyClient, new_client, steady_endpoints
from relay.aws.ledger import DeliveryLedger
from relay.aws.plain_json import PlainJsonSerializer, plain, plain_operation


def test_a_client_resolves_its_endpoint_once_per_operation_and_sends_the_relays_user_agent(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        client = boto3.client("dynamodb", config=AWS_CALLS)
        resolver = client._ruleset_resolver
        resolved: list[str] = []
        real = resolver.construct_endpoint

        def counting(operation_model, call_args, request_context):
            resolved.append(operation_model.name)
            return real(operation_model=operation_model, call_args=call_args, request_context=request_context)

        resolver.construct_endpoint = counting
        steady_endpoints(client)
        sent: list[tuple[str, str]] = []
        client.meta.events.register(
            "before-send.dynamodb.*", lambda request, **_: sent.append((request.url, request.headers["User-Agent"]))
        )
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(3):
            client.put_item(TableName="t", Item={"id": {"S": f"item-{i}"}})
        assert client.scan(TableName="t")["Count"] == 3  # the cached endpoint reaches the table
        assert resolved == ["CreateTable", "PutItem", "Scan"]  # once per operation, not per call
        # the region's own endpoint (account-based endpoints off), the same for every call
        assert {url for url, _ in sent} == {"https://dynamodb.eu-west-1.amazonaws.com/"}
        agents = {a.decode() if isinstance(a, bytes) else a for _, a in sent}
        # the relay's fixed string, then botocore's name and what a library adds (Powertools: "PT/…")
        assert len(agents) == 1 and agents.pop().startswith(f"{USER_AGENT} Botocore/{botocore.__version__}")


def test_the_relays_lazy_clients_and_the_ledger_are_made_steady(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():

        class Queue(LazyClient):
            service = "sqs"

        for client in (Queue().client, DeliveryLedger("applovin", "t").client):
            assert client.meta.config.user_agent == f"{USER_AGENT} Botocore/{botocore.__version__}"
            assert client._ruleset_resolver.construct_endpoint.__name__ == "construct_endpoint"
            assert client._ruleset_resolver.construct_endpoint.__qualname__.startswith("steady_endpoints")


# --- plain JSON serialising of the trusted DynamoDB calls (relay.aws.clients.plain_json) ---------------------

_LEAF = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=40)),
    st.builds(lambda n: {"N": str(n)}, st.integers(-(10**12), 10**12)),
    st.builds(lambda b: {"B": b}, st.binary(max_size=40)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": s}, st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True)),
    st.builds(lambda s: {"BS": s}, st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=3, unique=True)),
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"M": v}, st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    ),
    max_leaves=12,
)
_ITEM = st.dictionaries(st.text(min_size=1, max_size=12), _VALUE, min_size=1, max_size=6)


def _unvalidated():
    """A DynamoDB client with botocore's own serializer and no parameter validation (as TRUSTED_CALLS)."""
    return boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x", config=TRUSTED_CALLS
    )


def _calls(item: dict) -> list[tuple[str, dict]]:
    """Every DynamoDB operation the relay calls, with parameters shaped as the relay's."""
    key = {"id": {"S": "k"}}
    return [
        (
            "PutItem",
            {
                "TableName": "t",
                "Item": item,
                "ConditionExpression": "attribute_not_exists(id)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                "ReturnConsumedCapacity": "TOTAL",
            },
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": "t", "Item": item}},
                    {
                        "Update": {
                            "TableName": "t",
                            "Key": key,
                            "UpdateExpression": "SET #a = :a",
                            "ExpressionAttributeNames": {"#a": "a"},
                            "ExpressionAttributeValues": {":a": {"N": "1"}},
                        }
                    },
                ]
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": "t",
                "Key": key,
                "UpdateExpression": "SET d = :d",
                "ExpressionAttributeValues": {":d": next(iter(item.values()))},
                "ReturnValues": "ALL_NEW",
            },
        ),
        ("GetItem", {"TableName": "t", "Key": key, "ConsistentRead": True}),
        ("DeleteItem", {"TableName": "t", "Key": key, "ConditionExpression": "attribute_exists(id)"}),
        (
            "Query",
            {
                "TableName": "t",
                "IndexName": "journeys",
                "KeyConditionExpression": "m = :m",
                "ExpressionAttributeValues": {":m": {"S": "x"}},
                "Limit": 50,
                "ScanIndexForward": False,
                "ExclusiveStartKey": key,
            },
        ),
        ("BatchGetItem", {"RequestItems": {"t": {"Keys": [key], "ConsistentRead": True}}}),
        ("BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": item}}, {"DeleteRequest": {"Key": key}}]}}),
    ]


@settings(max_examples=60, deadline=None)
@given(item=_ITEM)
def test_the_plain_json_body_is_botocores_byte_for_byte(item):
    client = _unvalidated()
    model, botocores = client.meta.service_model, client._serializer
    relays = copy.copy(botocores)
    assert PlainJsonSerializer.adopt(relays)
    for operation, parameters in _calls(item):
        operation_model = model.operation_model(operation)
        theirs = botocores.serialize_to_request(copy.deepcopy(parameters), operation_model)
        ours = relays.serialize_to_request(copy.deepcopy(parameters), operation_model)
        assert plain_operation(operation_model), operation
        assert ours["body"] == plain_json._ENCODER.encode(parameters).encode(), operation  # the plain path's body
        assert ours == theirs, operation  # method, url, headers, query string and the body's bytes


def test_only_operations_whose_input_json_writes_as_given_take_the_plain_path():
    client = _unvalidated()
    model = client.meta.service_model
    assert plain(model.operation_model("PutItem").input_shape)
    # a timestamp (botocore writes epoch seconds), a float: botocore's own serializer
    assert not plain(model.operation_model("RestoreTableToPointInTime").input_shape)
    assert not plain(model.operation_model("ExportTableToPointInTime").input_shape)
    serializer = copy.copy(client._serializer)
    PlainJsonSerializer.adopt(serializer)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    restore = model.operation_model("RestoreTableToPointInTime")
    body = serializer.serialize_to_request(
        {"SourceTableName": "a", "TargetTableName": "b", "RestoreDateTime": when}, restore
    )["body"]
    assert json.loads(body)["RestoreDateTime"] == when.timestamp()  # botocore's conversion, not json.dumps
    assert not plain_operation(restore)


def test_a_value_json_cannot_write_as_given_goes_through_botocore():
    client = _unvalidated()
    serializer = copy.copy(client._serializer)
    PlainJsonSerializer.adopt(serializer)
    put = client.meta.service_model.operation_model("PutItem")
    item = {"id": {"S": "a"}, "b": {"B": memoryview(b"x")}}  # a blob json.dumps cannot write: botocore's base64
    body = serializer.serialize_to_request({"TableName": "t", "Item": item}, put)["body"]
    assert body == client._serializer.serialize_to_request({"TableName": "t", "Item": item}, put)["body"]
    assert json.loads(body) == {"TableName": "t", "Item": {"id": {"S": "a"}, "b": {"B": "eA=="}}}


def test_trusted_dynamodb_clients_serialise_plainly_and_others_as_botocore(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        trusted = new_client("dynamodb", TRUSTED_CALLS)
        assert type(trusted._serializer) is PlainJsonSerializer
        assert type(DeliveryLedger("applovin", "t").client._serializer) is PlainJsonSerializer
        assert type(new_client("dynamodb")._serializer) is not PlainJsonSerializer  # validated calls
        assert type(new_client("sns", TRUSTED_CALLS)._serializer) is not PlainJsonSerializer  # query protocol
        trusted.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        item = {"id": {"S": "é-1"}, "data": {"B": b"\x00\xff journey"}, "n": {"N": "12"}, "l": {"L": [{"S": "x"}]}}
        trusted.put_item(TableName="t", Item=item, ConditionExpression="attribute_not_exists(id)")
        assert trusted.get_item(TableName="t", Key={"id": {"S": "é-1"}}, ConsistentRead=True)["Item"] == item

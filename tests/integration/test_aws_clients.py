"""The functions' AWS clients (relay.aws.clients): a fixed User-Agent, and the endpoint resolved once per
operation, against moto."""

from __future__ import annotations

import boto3
import botocore
from moto import mock_aws

from relay.aws.clients import AWS_CALLS, USER_AGENT, LazyClient, steady_endpoints
from relay.aws.ledger import DeliveryLedger


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

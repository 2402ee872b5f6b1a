"""DynamoDB: the replay guard that refuses a signed request seen before."""

from __future__ import annotations

from typing import Any

from relay.aws.clients import LazyClient


class ReplayGuard(LazyClient):
    """Refuses a second request with the same signature (same signed timestamp and body) while it is still
    within the signature tolerance: one conditional DynamoDB write per request, expiring by TTL."""

    service = "dynamodb"

    def __init__(self, table_name: str, client: Any = None):
        super().__init__(client)
        self.table_name = table_name

    def claim(self, key: str, expires_at: int, now: float) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={"id": {"S": key}, "expiration": {"N": str(int(expires_at))}},
                ConditionExpression="attribute_not_exists(id) OR expiration < :now",
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def release(self, key: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"id": {"S": key}})

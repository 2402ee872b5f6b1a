"""API Gateway HTTP API (payload format 2.0) events: build one from an HTTP request, as API Gateway
does, for the local stack, `sam local invoke` files and tests."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import Any

TEXT_TYPES = ("application/json", "text/")


def http_api_event(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    stage: str = "$default",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    lower = {k.lower(): v for k, v in headers.items()}
    content_type = lower.get("content-type", "")
    text = content_type.startswith(TEXT_TYPES)
    try:
        encoded, is_b64 = (body.decode("utf-8"), False) if text else (base64.b64encode(body).decode(), True)
    except UnicodeDecodeError:
        encoded, is_b64 = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": f"{method.upper()} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": lower,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lower.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method.upper()} {path}",
            "stage": stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": encoded,
        "isBase64Encoded": is_b64,
    }


def response_body(response: Mapping[str, Any]) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")

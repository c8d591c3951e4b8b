"""A function URL (payload 2.0) event and a Lambda context, as Lambda hands them to a handler."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

DOMAIN = "bench0000000000000000000000.lambda-url.us-east-1.on.aws"


def function_url_event(path: str = "/v1/stream", query: str = "prompt=hello") -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": DOMAIN, "accept": "text/event-stream", "x-forwarded-proto": "https"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "bench0000000000000000000000",
            "domainName": DOMAIN,
            "domainPrefix": "bench0000000000000000000000",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench",
            },
            "requestId": "bench-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:00:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }


def lambda_context(timeout_ms: int = 60_000) -> Any:
    deadline = int(time.time() * 1000) + timeout_ms
    return SimpleNamespace(
        function_name="tokenrelay",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:tokenrelay",
        memory_limit_in_mb=128,
        aws_request_id="bench-request",
        log_group_name="/aws/lambda/tokenrelay",
        log_stream_name="bench",
        get_remaining_time_in_millis=lambda: deadline - int(time.time() * 1000),
    )

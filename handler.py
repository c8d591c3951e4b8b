"""AWS Lambda entry point for buffered invocations: `handler.handler`.

For API Gateway (REST and HTTP APIs), ALB, function URLs in BUFFERED mode and `sam local invoke`: the
app behind Mangum, started once per instance. The same zip streams through a function URL when the
function sets `AWS_LAMBDA_EXEC_WRAPPER=/var/task/app/lambda_/bootstrap` (see docs/lambda.md).
"""

from __future__ import annotations

from app.lambda_.buffered import build_handler

handler = build_handler()

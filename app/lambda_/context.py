"""What both Lambda entry points share: the invocation `context` and the deadline handed to streams.

Lambda kills an invocation at its deadline without a word to the client, so every stream gets the
deadline minus a safety margin (through the scope extension the session reads) and ends itself with
a terminal `error` event, code `deadline`, while the client is still there to receive it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mangum.types import ASGI, Receive, Scope, Send

from app.stream.limits import Deadline, with_deadline
from app.trace import with_xray_trace_id

if TYPE_CHECKING:
    from litestar import Litestar

    from app.settings import Settings

# Mangum's ASGI types: what its handlers and lifespan cycle accept.
ASGIApp = ASGI


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """The function's identity, from the variables Lambda sets in every execution environment."""

    name: str
    version: str
    memory_limit_in_mb: int
    log_group_name: str
    log_stream_name: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FunctionInfo:
        memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        return cls(
            name=environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            version=environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            memory_limit_in_mb=int(memory) if memory.isdigit() else 0,
            log_group_name=environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
        )


class InvocationContext:
    """The `context` argument of a Python Lambda handler, for one invocation of the streaming runtime."""

    def __init__(
        self,
        *,
        request_id: str,
        deadline_ms: int,
        invoked_function_arn: str,
        function: FunctionInfo,
        client_context: str | None = None,
        identity: str | None = None,
    ) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = function.name
        self.function_version = function.version
        self.memory_limit_in_mb = function.memory_limit_in_mb
        self.log_group_name = function.log_group_name
        self.log_stream_name = function.log_stream_name
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def configured_app(environ: Mapping[str, str]) -> tuple[Litestar, Settings]:
    """The app and its settings as every Lambda instance starts them, whichever the entry point.

    The OpenAI key and the API keys are read from their secret stores first, logs become JSON lines at the
    configured level, and Mangum keeps to warnings.
    """
    from app.factory import create_app
    from app.lambda_.secrets import with_secrets
    from app.logs import configure_logging
    from app.settings import Settings

    settings = Settings.from_env(with_secrets(environ))
    configure_logging(settings.log_level)
    quiet_mangum_logs()
    return create_app(settings), settings


def quiet_mangum_logs() -> None:
    """Mangum logs every lifespan step and every request at INFO, as plain text: keep its warnings only.

    The service's policy is JSON lines and no access log (paths and queries can carry prompts).
    """
    logging.getLogger("mangum").setLevel(logging.WARNING)


def with_invocation_deadline(app: Any, margin_s: float) -> ASGIApp:
    """Wrap the ASGI `app` so that every HTTP request carries its invocation's deadline, less `margin_s`,
    and its X-Ray trace id (which both runtimes set in `_X_AMZN_TRACE_ID` for the current invocation).

    The deadline comes from the `aws.context` that Mangum's event handlers put in the scope. (`app` is
    untyped because Litestar's signature is narrower than the generic ASGI one that Mangum declares.)
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        context = scope.get("aws.context")
        if scope["type"] == "http" and context is not None:
            # Into the one type streams compare against, once: from here on it is a point on their clock.
            remaining_s = context.get_remaining_time_in_millis() / 1000
            with_deadline(scope, Deadline.after(remaining_s).earlier_by(margin_s))
            trace_id = os.environ.get("_X_AMZN_TRACE_ID")
            if trace_id:
                with_xray_trace_id(scope, trace_id)
        await app(scope, receive, send)

    return asgi

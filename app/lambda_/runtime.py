"""The response-streaming Lambda runtime's entry point: `python -m app.lambda_.runtime`, run by the wrapper.

The managed Python runtime's client cannot stream, so the function sets
`AWS_LAMBDA_EXEC_WRAPPER=/var/task/app/lambda_/bootstrap`, which execs the managed interpreter on this module
instead. The same zip serves `handler.handler` (buffered) when the wrapper is not set, and SnapStart stays
available because the runtime is still a managed one.

Everything expensive happens once per instance, before the first `/next`: secrets, settings, the app and
its lifespan startup. Until then only the standard library and the Runtime API client are imported, so
that even an import error in the app or its dependencies reaches `/init/error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.lambda_.runtime_api import ErrorReport, RuntimeApiClient, RuntimeApiError

if TYPE_CHECKING:
    from mangum.protocols.lifespan import LifespanCycle

    from app.lambda_.streaming import StreamingRuntime

_SHUTDOWN_GRACE_S = 0.4  # Lambda allows 500 ms between SIGTERM and SIGKILL
_logger = logging.getLogger("tokenrelay")


async def run(client: RuntimeApiClient, environ: Mapping[str, str]) -> int:
    """Start once (or report why not), wait for a SnapStart restore, then serve; the exit status."""
    began = time.perf_counter()
    try:
        runtime, lifespan = await _start(environ, client)
    except Exception as exc:
        _log("lambda_init_error", logging.ERROR, exc_type=type(exc).__name__)
        await client.report_init_error(_init_error_report(exc))
        return 1
    _log("lambda_runtime_ready", logging.INFO, init_ms=round((time.perf_counter() - began) * 1000, 1))
    if environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        # The snapshot is taken while this waits; it returns in a restored copy of this instance.
        await client.restore_next()
    serving = asyncio.ensure_future(runtime.serve_forever())
    # Lambda sends SIGTERM before it shuts an instance down (when extensions are registered): run the
    # lifespan shutdown, so that the provider's connections close cleanly.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, serving.cancel)
    try:
        await serving
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SHUTDOWN_GRACE_S):
                await lifespan.shutdown()
        return 0
    except RuntimeApiError as exc:
        _log("runtime_api_error", logging.ERROR, error=str(exc))
        return 1
    return 0


async def _start(
    environ: Mapping[str, str], client: RuntimeApiClient
) -> tuple[StreamingRuntime, LifespanCycle]:
    from app.logs import configure_logging

    configure_logging("INFO")  # until the settings say otherwise, so that init errors are JSON lines too

    from mangum.protocols.lifespan import LifespanCycle

    from app.lambda_.context import FunctionInfo, configured_app, with_invocation_deadline
    from app.lambda_.streaming import StreamingRuntime

    # At most one blocking AWS call per instance (the secret), before any request: no reason to leave
    # the loop for it.
    app, settings = configured_app(environ)
    served = with_invocation_deadline(app, settings.lambda_deadline_margin_s)
    lifespan = LifespanCycle(served, "on")
    _background.add(asyncio.ensure_future(lifespan.run()))
    await lifespan.startup()
    return StreamingRuntime(served, client, FunctionInfo.from_environ(environ)), lifespan


# The lifespan task runs for the instance's life; the loop itself holds tasks only weakly.
_background: set[asyncio.Future[None]] = set()


def _init_error_report(exc: BaseException) -> ErrorReport:
    from app.settings import SettingsError

    if isinstance(exc, SettingsError):  # its message names the variable at fault; a traceback adds nothing
        return ErrorReport(error_type="Runtime.ConfigurationError", error_message=str(exc))
    kind = "ImportModuleError" if isinstance(exc, ImportError) else type(exc).__name__
    return ErrorReport(
        error_type=f"Runtime.{kind}",
        error_message=f"{type(exc).__name__}: {exc}",
        stack_trace=tuple(traceback.format_tb(exc.__traceback__)),
    )


def _log(event: str, level: int, **fields: Any) -> None:
    _logger.log(level, event, extra={"fields": fields})


def main() -> int:
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API", "")
    if not address:
        print(
            "tokenrelay: AWS_LAMBDA_RUNTIME_API is not set: this runs inside AWS Lambda only", file=sys.stderr
        )
        return 2
    return asyncio.run(run(RuntimeApiClient(address), os.environ))


if __name__ == "__main__":
    sys.exit(main())

"""`python -m app`: serve the API with uvicorn on $HOST:$PORT (the mock provider unless a key is set)."""

from __future__ import annotations

import sys

import uvicorn

from app.factory import create_app
from app.http.server import server_stack, uvicorn_config
from app.logs import configure_logging, log_event
from app.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"tokenrelay: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    # A server has time before its first request: the AWS clients are built now, not by the first stream.
    app = create_app(settings, aws_clients_at_start=True)
    stack = server_stack(settings.server_stack, head_timeout_s=settings.request_head_timeout_s)
    log_event(
        "server_start",
        url=f"http://{settings.host}:{settings.port}",
        provider=settings.provider,
        default_model=settings.default_model,
        auth="api_keys" if settings.api_keys else "none",
        server_stack=stack.name,
        stack_fallback=stack.fallback_reason,
    )
    # No access log: query strings can carry prompts, and each stream logs its own `stream_end` line.
    uvicorn.Server(uvicorn_config(app, settings, stack=stack)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

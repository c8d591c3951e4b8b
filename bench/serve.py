"""One app under test, served by one uvicorn worker on 127.0.0.1 in its own process.

    python -m bench.serve {ours,bare,fastapi} [--stamp] [--sliced CHUNKS] [--stack fast|h11]

Prints the port on the first line of stdout, then serves until terminated. With `--stamp` the first
delta of every answer carries the `time.perf_counter_ns()` at which the provider produced it
(`CLOCK_MONOTONIC`, comparable across processes), so a client can measure the latency the app adds.
With `--sliced N` every answer is the peer benchmark's text in N three-character deltas
(`bench.workload.SlicedTextProvider`, what LiteLLM's mock streams). `--stack` picks uvicorn's event loop
and HTTP parser as `python -m app` does (`SERVER_STACK`); the default is asyncio + h11, what the other
benchmarks' tables were measured on.
"""

from __future__ import annotations

import logging
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence

import uvicorn

from app.http.server import server_stack
from bench import report, workload
from bench.workload import ASGIApp
from providers.mock import MockProvider
from providers.protocol import ChatRequest, Provider, StreamItem, TextDelta

APPS = ("ours", "bare", "fastapi")
STAMP_PREFIX = "t="


class StampingProvider:
    """The mock provider, whose first delta is replaced by the moment it was produced."""

    def __init__(self, inner: MockProvider) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def forwards_extra(self) -> bool:
        return self._inner.forwards_extra

    def models(self) -> Sequence[str]:
        return self._inner.models()

    async def list_models(self) -> Sequence[str]:
        return await self._inner.list_models()

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        stamped = False
        async for item in self._inner.stream_chat(request):
            if not stamped and isinstance(item, TextDelta):
                stamped = True
                yield TextDelta(f"{STAMP_PREFIX}{time.perf_counter_ns()}")
            else:
                yield item

    async def aclose(self) -> None:
        await self._inner.aclose()


def build(name: str, provider: Provider, *, tokens: int = 100_000) -> ASGIApp:
    if name == "ours":
        from app.factory import create_app

        return create_app(workload.settings(tokens), provider)
    if name == "bare":
        from bench.baselines.bare_asgi import create_bare_app

        return create_bare_app(provider)
    from bench.baselines.fastapi_sse import create_fastapi_app

    return create_fastapi_app(provider)


def raise_fd_limit() -> None:
    """A thousand streams need more descriptors than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("app", choices=APPS)
    parser.add_argument("--stamp", action="store_true")
    parser.add_argument("--sliced", type=int, metavar="CHUNKS")
    parser.add_argument("--stack", choices=("fast", "h11"), default="h11")
    args = parser.parse_args(argv)
    raise_fd_limit()
    logging.getLogger("tokenrelay").setLevel(logging.WARNING)
    mock = MockProvider()
    provider: Provider = StampingProvider(mock) if args.stamp else mock
    if args.sliced is not None:
        provider = workload.SlicedTextProvider(workload.peer_text(args.sliced))
    stack = server_stack(args.stack)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        build(args.app, provider),
        loop=stack.loop,
        http=stack.parser,
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())

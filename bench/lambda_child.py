"""The streaming Lambda runtime serving a chosen app, for benchmarks: `python -m bench.lambda_child APP`.

It starts the way `app/lambda_/runtime.py` does (invocation deadline in scope, lifespan started once, then
`StreamingRuntime` polls the Runtime API at `$AWS_LAMBDA_RUNTIME_API`), but with an app of our choosing:
ours or the bare ASGI baseline, over the mock provider, stamped (see `bench.serve`) with `--stamp`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from mangum.protocols.lifespan import LifespanCycle

from app.lambda_.context import FunctionInfo, with_invocation_deadline
from app.lambda_.runtime_api import RuntimeApiClient
from app.lambda_.streaming import StreamingRuntime
from bench import report
from bench.serve import APPS, StampingProvider, build
from providers.mock import MockProvider
from providers.protocol import Provider


async def serve(name: str, stamp: bool) -> None:
    mock = MockProvider()
    provider: Provider = StampingProvider(mock) if stamp else mock
    app = with_invocation_deadline(build(name, provider), 0.5)
    lifespan = LifespanCycle(app, "on")
    background = asyncio.ensure_future(lifespan.run())
    await lifespan.startup()
    client = RuntimeApiClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        await StreamingRuntime(app, client, FunctionInfo.from_environ(os.environ)).serve_forever()
    finally:
        background.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("app", choices=APPS)
    parser.add_argument("--stamp", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("tokenrelay").setLevel(logging.WARNING)
    logging.getLogger("mangum").setLevel(logging.WARNING)
    asyncio.run(serve(args.app, args.stamp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The cold-start baseline: the smallest Mangum + FastAPI function that streams an SSE answer (buffered).

One route, the same mock provider and frames as ours, `EventSourceResponse` from sse-starlette;
`handler` is what Lambda would call.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

from mangum import Mangum

from bench.baselines.fastapi_sse import create_fastapi_app
from providers.mock import MockProvider

app = create_fastapi_app(MockProvider())

# Mangum's constructor asks for the current event loop, which Python 3.12 warns about when there is none.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    asyncio.set_event_loop(asyncio.new_event_loop())
    handler: Any = Mangum(app, lifespan="off")

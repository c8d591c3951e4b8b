"""The OpenAI provider: OpenAI, or any server speaking its `/v1/chat/completions`, streamed through the SDK.

`openai` is imported when a provider is built, never when this module is imported: the SDK takes most of
a second to import, which a Lambda cold start serving the mock provider must not pay.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from providers.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderModelNotFoundError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.protocol import ChatRequest, Finish, FinishReason, StreamItem, TextDelta, ToolCallDelta, Usage

if TYPE_CHECKING:
    import httpx2
    from openai import APIError, AsyncStream
    from openai.types.chat import ChatCompletionChunk
    from openai.types.chat.chat_completion_chunk import ChoiceDelta

logger = logging.getLogger(__name__)

# The deprecated `function_call` cannot happen (we send no `functions` of our own; a client's are forwarded
# and answered as `tool_calls` by current servers); an unknown reason ends a complete answer.
_FINISH_REASONS: Final[Mapping[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
_MAX_DETAIL_CHARS: Final = 160
_MIN_SECRET_CHARS: Final = 8


class OpenAIProvider:
    """Streams chat completions from OpenAI or any OpenAI-compatible server through the `openai` SDK."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        models: Sequence[str] = (),
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.25,
        max_retry_wait_s: float = 4.0,
        models_ttl_s: float = 300.0,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeout_s and connect_timeout_s must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if retry_backoff_s < 0 or max_retry_wait_s < 0:
            raise ValueError("retry_backoff_s and max_retry_wait_s must be >= 0")
        if isinstance(models, str):
            raise TypeError("models must be a sequence of model ids, not a single string")

        import httpx2
        from openai import AsyncOpenAI

        self._api_key = api_key
        self._models = tuple(models)
        self._models_ttl_s = models_ttl_s
        self._listed: tuple[str, ...] | None = None
        self._listed_until = 0.0
        self._listing = asyncio.Lock()
        self._max_retries = max_retries
        self._retry_backoff_s = retry_backoff_s
        self._max_retry_wait_s = max_retry_wait_s
        self._client = AsyncOpenAI(
            api_key=api_key,
            # None lets the SDK read OPENAI_BASE_URL, then fall back to api.openai.com.
            base_url=base_url,
            # The read timeout bounds each wait for the next chunk, not the whole answer.
            timeout=httpx2.Timeout(timeout_s, connect=connect_timeout_s),
            # The SDK would retry without knowing whether a token has already reached the client;
            # `_open_stream` retries only while nothing has been sent.
            max_retries=0,
            http_client=http_client,
        )

    @property
    def name(self) -> str:
        return "openai"

    @property
    def forwards_extra(self) -> bool:
        return True

    def models(self) -> Sequence[str]:
        return self._models

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        import openai

        stream = await self._open_stream(request)
        # `async with` closes the HTTP response on every way out: the end of the answer, an error,
        # `aclose()` of this generator or cancellation of the task iterating it, so an abandoned answer
        # stops costing upstream tokens at once.
        async with stream:
            started = False
            # Finish reasons by choice; each choice's `Finish` is yielded when it arrives, but the last one
            # waits for the usage, which comes in a chunk of its own after every choice has finished.
            finished: dict[int, FinishReason] = {}
            usage: Usage | None = None
            try:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(
                            prompt_tokens=chunk.usage.prompt_tokens,
                            completion_tokens=chunk.usage.completion_tokens,
                        )
                    for choice in chunk.choices or ():
                        # A compatible server that leaves out `index` means the one choice.
                        index = choice.index or 0
                        if index >= request.n or index in finished:
                            continue
                        # The SDK builds chunks without validation: compatible servers may omit `delta`
                        # on the finish chunk, and then it is None despite its type.
                        delta = choice.delta
                        if delta is not None:
                            for item in _delta_items(delta, index):
                                # One network read can hold many events, which the SDK decodes without
                                # suspending; the checkpoint keeps every item a point where we can be
                                # cancelled.
                                await asyncio.sleep(0)
                                started = True
                                yield item
                        if choice.finish_reason is not None:
                            reason = _FINISH_REASONS.get(choice.finish_reason, "stop")
                            finished[index] = reason
                            if len(finished) < request.n:
                                yield Finish(reason=reason, choice=index)
            except (openai.APIError, json.JSONDecodeError) as exc:
                raise self._mid_stream_error(exc, started=started) from exc
            if len(finished) < request.n:
                message = "OpenAI upstream ended the stream before the answer finished"
                raise ProviderStreamError(message) if started else ProviderUnavailableError(message)
            # Same reason: the finish and usage often arrive in the read that carried the last delta.
            await asyncio.sleep(0)
            last = next(reversed(finished))
            yield Finish(reason=finished[last], usage=usage, choice=last)

    async def list_models(self) -> Sequence[str]:
        """`OPENAI_MODELS`, else the upstream's own list, fetched at most once per `models_ttl_s`."""
        if self._models:
            return self._models
        now = time.monotonic()
        if self._listed is not None and now < self._listed_until:
            return self._listed
        async with self._listing:
            if self._listed is not None and time.monotonic() < self._listed_until:
                return self._listed
            import openai

            try:
                page = await self._client.models.list()
                listed = tuple(sorted(model.id for model in page.data))
            except openai.APIError as exc:
                logger.warning("OpenAI upstream did not list its models (%s)", _describe(exc))
                # Not cached: the next request asks again. An empty list says "the configured default".
                return ()
            self._listed = listed
            self._listed_until = time.monotonic() + self._models_ttl_s
            return listed

    async def aclose(self) -> None:
        await self._client.close()

    async def _open_stream(self, request: ChatRequest) -> AsyncStream[ChatCompletionChunk]:
        """Send the request and return the open stream, retrying failures that happen before any token."""
        import openai

        # Our messages, tools and formats have OpenAI's wire shape already.
        messages: Any = msgspec.to_builtins(request.messages)
        # `max_tokens`, which every compatible server knows, unless the client chose the newer name (which
        # reasoning models require): then that, as sent, in `extra`.
        max_tokens = request.max_tokens
        if max_tokens is None or "max_completion_tokens" in request.extra:
            max_tokens_arg: Any = openai.omit
        else:
            max_tokens_arg = max_tokens
        attempt = 0
        while True:
            try:
                return await self._client.chat.completions.create(
                    model=request.model,
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                    max_tokens=max_tokens_arg,
                    temperature=openai.omit if request.temperature is None else request.temperature,
                    top_p=openai.omit if request.top_p is None else request.top_p,
                    stop=list(request.stop) if request.stop else openai.omit,
                    seed=openai.omit if request.seed is None else request.seed,
                    user=openai.omit if request.user is None else request.user,
                    n=openai.omit if request.n == 1 else request.n,
                    tools=msgspec.to_builtins(request.tools) if request.tools else openai.omit,
                    tool_choice=_builtins_or_omit(request.tool_choice),
                    parallel_tool_calls=_builtins_or_omit(request.parallel_tool_calls),
                    response_format=_builtins_or_omit(request.response_format),
                    # Everything else the client sent, as sent: the upstream validates it.
                    extra_body=request.extra or None,
                    # The caller's trace context, so the upstream's spans join the same trace.
                    extra_headers=request.trace.headers() if request.trace is not None else None,
                )
            except openai.APIError as exc:
                delay_s = self._retry_delay_s(exc, attempt)
                if delay_s is None:
                    raise self._translate(exc) from exc
                attempt += 1
                logger.warning(
                    "OpenAI upstream failed before the first token (%s); retry %d of %d in %.3f s",
                    _describe(exc),
                    attempt,
                    self._max_retries,
                    delay_s,
                )
                await asyncio.sleep(delay_s)

    def _retry_delay_s(self, exc: APIError, attempt: int) -> float | None:
        """How long to wait before retrying `exc`, or None when it must not be retried."""
        import openai

        if attempt >= self._max_retries:
            return None
        if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            return self._backoff_s(attempt)
        if not isinstance(exc, openai.APIStatusError):
            return None
        if exc.status_code != 429 and exc.status_code < 500:
            return None
        if exc.response.headers.get("x-should-retry") == "false" or exc.code == "insufficient_quota":
            return None
        retry_after_s = parse_retry_after_s(exc.response.headers)
        if retry_after_s is None:
            return self._backoff_s(attempt)
        # Waiting longer would eat the client's own deadline; it gets the 429 and `Retry-After` instead.
        return retry_after_s if retry_after_s <= self._max_retry_wait_s else None

    def _backoff_s(self, attempt: int) -> float:
        delay_s = min(self._retry_backoff_s * 2.0**attempt, self._max_retry_wait_s)
        # Jitter keeps many streams failing together from retrying together.
        return delay_s * (1 - 0.25 * random.random())  # noqa: S311 - jitter, not security

    def _translate(self, exc: APIError) -> ProviderError:
        """Our error for an SDK error raised before any token was yielded."""
        import openai

        detail = self._detail(exc)
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError("OpenAI upstream did not answer in time")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnavailableError("could not reach the OpenAI upstream")
        if not isinstance(exc, openai.APIStatusError):
            return ProviderUnavailableError(f"OpenAI upstream failed before the first token: {detail}")
        status = exc.status_code
        retry_after_s = parse_retry_after_s(exc.response.headers)
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderAuthError(f"OpenAI upstream rejected the credentials (HTTP {status}): {detail}")
        if isinstance(exc, openai.RateLimitError):
            return ProviderRateLimitError(
                f"OpenAI upstream rate limit (HTTP 429): {detail}", retry_after_s=retry_after_s
            )
        if isinstance(exc, openai.NotFoundError):
            return ProviderModelNotFoundError(f"OpenAI upstream does not know the model (HTTP 404): {detail}")
        if 400 <= status < 500:
            return ProviderBadRequestError(f"OpenAI upstream rejected the request (HTTP {status}): {detail}")
        return ProviderUnavailableError(
            f"OpenAI upstream error (HTTP {status}): {detail}", retry_after_s=retry_after_s
        )

    def _mid_stream_error(self, exc: Exception, *, started: bool) -> ProviderError:
        """Our error for a failure while reading the stream (an in-band error event, a dropped connection)."""
        import openai

        if started:
            if isinstance(exc, openai.APIError):
                return ProviderStreamError(f"OpenAI upstream stream failed: {self._detail(exc)}")
            return ProviderStreamError("OpenAI upstream sent a malformed stream event")
        # Nothing reached the client yet, so this can still be an ordinary status code.
        if isinstance(exc, openai.APIError):
            return self._translate(exc)
        return ProviderUnavailableError("OpenAI upstream sent a malformed stream event")

    def _detail(self, exc: APIError) -> str:
        """The upstream's own message, short and without our key (a compatible server may echo it)."""
        body = exc.body
        message = body.get("message") if isinstance(body, Mapping) else body
        if not isinstance(message, str) or not message.strip():
            message = exc.message
        # A placeholder key for keyless servers ("x") is no secret, and replacing it would mangle the text.
        if len(self._api_key) >= _MIN_SECRET_CHARS:
            message = message.replace(self._api_key, "[redacted]")
        message = " ".join(message.split())
        if len(message) > _MAX_DETAIL_CHARS:
            message = message[: _MAX_DETAIL_CHARS - 1] + "…"
        return message


def parse_retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asks us to wait: `retry-after-ms`, then `retry-after` as seconds or HTTP date."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(exc: APIError) -> str:
    """A few words on a failure for logs; never the message, which may quote the request."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection error"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    return type(exc).__name__


def _builtins_or_omit(value: object) -> Any:
    """A typed request value as the SDK takes it, or the SDK's marker for a field left out."""
    import openai

    return openai.omit if value is None else msgspec.to_builtins(value)


def _delta_items(delta: ChoiceDelta, choice: int) -> Iterator[TextDelta | ToolCallDelta]:
    """Our items for one choice's delta: its text, then its tool call pieces."""
    if delta.content:
        yield TextDelta(delta.content, choice)
    for call in delta.tool_calls or ():
        function = call.function
        yield ToolCallDelta(
            index=call.index,
            id=call.id or None,
            name=(function.name or None) if function is not None else None,
            arguments=(function.arguments or "") if function is not None else "",
            choice=choice,
        )

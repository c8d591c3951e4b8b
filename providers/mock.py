"""A deterministic provider: the same request always streams the same tokens.

It is a real provider, not a test double: `make run` uses it when no key is set, load tests use it
to measure the service without a model, and per-request directives inject the faults clients must survive.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import msgspec

from providers.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.mock_schema import UnsupportedSchemaError, instance_of
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FinishReason,
    JsonObjectFormat,
    JsonSchemaFormat,
    MockFault,
    NamedToolChoice,
    StreamItem,
    TextDelta,
    Tool,
    ToolCallDelta,
    Usage,
)

MOCK_MODEL = "mock"

# A word, with the spaces before it, or a run of newlines: newlines must travel as their own tokens
# so that clients which frame SSE naively break visibly in tests.
_TOKEN_PATTERN = re.compile(r"\n+|[ \t]*[^\s]{1,8}|[ \t]+")

_TOPICS = (
    "latency budgets",
    "backpressure",
    "event streams",
    "cold starts",
    "token pacing",
    "cancellation",
    "heartbeats",
    "edge caches",
    "retry policies",
    "idle timeouts",
)
_WORDS = (
    "stream",
    "client",
    "server",
    "token",
    "buffer",
    "socket",
    "request",
    "answer",
    "model",
    "frame",
    "budget",
    "signal",
    "proxy",
    "browser",
    "lambda",
    "deadline",
    "chunk",
    "event",
    "queue",
    "reader",
    "writer",
    "header",
    "byte",
    "flush",
    "cancel",
    "upstream",
    "retry",
    "pause",
    "resume",
    "limit",
)
_VERBS = (
    "carries",
    "delivers",
    "measures",
    "guards",
    "releases",
    "frames",
    "paces",
    "forwards",
    "flushes",
    "bounds",
    "announces",
    "cancels",
)


def tokenize(text: str) -> list[str]:
    """Split text the way the mock streams it: short word pieces with their leading space."""
    return _TOKEN_PATTERN.findall(text)


def count_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Approximate prompt tokens the way the mock counts completions, plus per-message overhead."""
    return sum(len(tokenize(message.text)) + 4 for message in messages)


def _seeded(request: ChatRequest, choice: int, purpose: str = "") -> random.Random:
    """The random source of one choice: a pure function of the model, the messages and the choice."""
    seed_source = "\x1f".join(f"{m.role}\x1e{m.text}" for m in request.messages)
    # Choice 0 keeps the seed it always had, so that `n` does not change the first answer.
    suffix = f"\x1c{choice}" if choice else ""
    digest = hashlib.sha256(f"{request.model}\x1d{seed_source}{suffix}{purpose}".encode()).digest()
    return random.Random(digest)  # noqa: S311 - determinism, not security


def compose_answer(request: ChatRequest, choice: int = 0) -> str:
    """The full answer the mock gives for a request: a pure function of the model, messages and choice."""
    rng = _seeded(request, choice)
    last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
    subject = " ".join(last_user.split()[:8]) or "nothing in particular"
    topic = rng.choice(_TOPICS)

    def sentence() -> str:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 9))]
        words.insert(1, rng.choice(_VERBS))
        return " ".join(words).capitalize() + "."

    paragraphs = [
        f"You asked about: {subject}. Here is a short answer on {topic}.",
        " ".join(sentence() for _ in range(rng.randint(2, 4))),
        "\n".join(f"- {rng.choice(_WORDS)}: {sentence()}" for _ in range(rng.randint(2, 4))),
        " ".join(sentence() for _ in range(rng.randint(1, 3))),
    ]
    name = rng.choice(_WORDS)
    code = (
        "```python\n"
        f"async def relay_{name}(stream):\n"
        "    async for token in stream:\n"
        f"        yield token  # {rng.choice(_VERBS)} as it arrives\n"
        "```"
    )
    paragraphs.insert(3, code)
    return "\n\n".join(paragraphs)


def scripted_answer(request: ChatRequest) -> str | None:
    """The answer the request's `mock.answer` directive asks for, if it asks for one."""
    return request.mock.answer if request.mock is not None and request.mock.answer else None


def answer_to_tool_results(request: ChatRequest) -> str:
    """The answer once the conversation ends with tool results: each result, quoted, by its function."""
    names = {call.id: call.function.name for m in request.messages for call in m.tool_calls}
    results: list[ChatMessage] = []
    for message in reversed(request.messages):
        if message.role != "tool":
            break
        results.insert(0, message)
    lines = [f"The {names.get(m.tool_call_id or '', 'tool')} tool returned: {m.text}" for m in results]
    return "\n".join(lines) + "\n\nThat is the answer, from the tool's own result."


def chosen_tool(request: ChatRequest, choice: int = 0) -> Tool | None:
    """The tool the mock calls, if it calls one: the named one, else one picked from the request.

    A conversation that ends with tool results is answered in text unless a call is required.
    """
    tool_choice = request.tool_choice or "auto"
    if not request.tools or tool_choice == "none":
        return None
    if isinstance(tool_choice, NamedToolChoice):
        return next(tool for tool in request.tools if tool.function.name == tool_choice.function.name)
    if tool_choice == "auto" and request.messages[-1].role == "tool":
        return None
    return _seeded(request, choice, "\x1btool").choice(request.tools)


def tool_call_arguments(request: ChatRequest, tool: Tool, choice: int = 0) -> str:
    """The arguments of a call to `tool`: a JSON text valid against the function's parameters."""
    schema = tool.function.parameters or {"type": "object", "properties": {}}
    rng = _seeded(request, choice, f"\x1bargs\x1b{tool.function.name}")
    value = _instance(schema, rng, f"the parameters of tool {tool.function.name!r}")
    return msgspec.json.encode(value).decode()


def structured_answer(request: ChatRequest, choice: int = 0) -> str | None:
    """A JSON document for `response_format` `json_schema` (valid against it) or `json_object`."""
    response_format = request.response_format
    rng = _seeded(request, choice, "\x1bjson")
    if isinstance(response_format, JsonSchemaFormat):
        spec = response_format.json_schema
        value = _instance(spec.json_schema or {}, rng, f"the response_format schema {spec.name!r}")
        return msgspec.json.encode(value).decode()
    if isinstance(response_format, JsonObjectFormat):
        return msgspec.json.encode({"answer": compose_answer(request, choice).split("\n", 1)[0]}).decode()
    return None


def _instance(schema: dict[str, Any], rng: random.Random, what: str) -> Any:
    try:
        return instance_of(schema, rng, words=_WORDS)
    except UnsupportedSchemaError as exc:
        raise ProviderBadRequestError(f"the mock cannot generate a value for {what}: {exc}") from None


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the first occurrence of any stop sequence."""
    cut = min((index for index in (text.find(s) for s in stop if s) if index >= 0), default=len(text))
    return text[:cut]


def _fragments(text: str, size: int = 8) -> list[str]:
    """A JSON text in small pieces, as a model streams arguments (`tokenize` is made for prose)."""
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


class _Choice:
    """One choice's items, lazily: its deltas, and whether a token budget cut it."""

    def __init__(self, request: ChatRequest, index: int, repeat: int) -> None:
        self.index = index
        self.truncated = False
        self.count = 0
        limit = request.max_tokens
        tool = chosen_tool(request, index)
        if tool is not None:
            call_id = "call_" + _seeded(request, index, "\x1bid").randbytes(12).hex()
            arguments = tool_call_arguments(request, tool, index)
            pieces: Iterator[TextDelta | ToolCallDelta] = (
                ToolCallDelta(
                    index=0,
                    id=call_id if position == 0 else None,
                    name=tool.function.name if position == 0 else None,
                    arguments=fragment,
                    choice=index,
                )
                for position, fragment in enumerate(_fragments(arguments))
            )
            self.reason: FinishReason = "tool_calls"
            total = len(_fragments(arguments))
        else:
            if request.messages[-1].role == "tool":
                tokens = tokenize(answer_to_tool_results(request))
            else:
                structured = structured_answer(request, index)
                tokens = (
                    _fragments(structured)
                    if structured is not None
                    else tokenize(scripted_answer(request) or compose_answer(request, index))
                )
            text_tokens = tokens
            if request.stop:
                text_tokens = tokenize(cut_at_stop("".join(tokens), request.stop))
                repeat = 1 if len(text_tokens) < len(tokens) else repeat
            # The answer `repeat` times over, separated by a blank line: counted, never built, so that a long
            # stream costs the same memory as a short one and each token O(1).
            total = len(text_tokens) * repeat + (repeat - 1)
            pieces = (TextDelta(token, index) for token in _repeated(text_tokens, repeat))
            self.reason = "stop"
        if limit is not None and limit < total:
            self.truncated = True
            self.reason = "length"
            total = limit
        self.items = itertools.islice(pieces, total)


class MockProvider:
    """Streams a deterministic, realistic answer with configurable pacing and injectable faults.

    It acts on tools (it calls one, with arguments valid against its schema, and answers tool results),
    `response_format` (a JSON document valid against the schema), `stop`, `max_tokens` and `n`.
    """

    def __init__(self, *, token_delay_s: float = 0.0) -> None:
        if token_delay_s < 0:
            raise ValueError("token_delay_s must be >= 0")
        self._token_delay_s = token_delay_s
        self.tokens_emitted = 0
        self.active_streams = 0

    @property
    def name(self) -> str:
        return "mock"

    @property
    def forwards_extra(self) -> bool:
        return False

    def models(self) -> Sequence[str]:
        return (MOCK_MODEL,)

    async def list_models(self) -> Sequence[str]:
        return self.models()

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        directives = request.mock
        delay_s = self._token_delay_s
        if directives is not None and directives.delay_ms is not None:
            delay_s = directives.delay_ms / 1000
        repeat = directives.repeat if directives is not None and directives.repeat is not None else 1
        self.active_streams += 1
        try:
            if directives is not None and directives.stall_ms:
                await asyncio.sleep(directives.stall_ms / 1000)
            if directives is not None and directives.error is not None:
                raise _fault(directives.error)
            choices = [_Choice(request, index, repeat) for index in range(request.n)]
            fail_after = directives.fail_after if directives is not None else None
            emitted = 0
            running = list(choices)
            last = choices[-1]
            while running:
                # Round robin over the choices still running, as OpenAI interleaves them.
                for current in list(running):
                    item = next(current.items, None)
                    if item is None:
                        running.remove(current)
                        if running:  # the last choice's `Finish` comes below, with the usage
                            await asyncio.sleep(0)
                            yield Finish(reason=current.reason, choice=current.index)
                        last = current
                        continue
                    if emitted == fail_after:
                        raise ProviderStreamError(f"mock failure injected after {fail_after} deltas")
                    # Always suspend, even at zero delay: a generator that never awaits cannot be cancelled
                    # and would starve every other stream on the event loop.
                    await asyncio.sleep(delay_s)
                    emitted += 1
                    current.count += 1
                    self.tokens_emitted += 1
                    yield item
            if fail_after is not None:
                # Asked to fail after more deltas than the answer has: fail where `Finish` would be.
                raise ProviderStreamError(f"mock failure injected after {fail_after} deltas")
            usage = Usage(prompt_tokens=count_prompt_tokens(request.messages), completion_tokens=emitted)
            yield Finish(reason=last.reason, usage=usage, choice=last.index)
        finally:
            self.active_streams -= 1

    async def aclose(self) -> None:
        return None


def _repeated(tokens: list[str], times: int) -> Iterator[str]:
    """`tokens` `times` over, a blank line between: `tokenize` of the joined text, without joining it."""
    for round_ in range(times):
        if round_:
            yield "\n\n"
        yield from tokens


def _fault(kind: MockFault) -> ProviderError:
    if kind == "rate_limit":
        return ProviderRateLimitError("mock rate limit: slow down and retry", retry_after_s=1.0)
    if kind == "auth":
        return ProviderAuthError("mock upstream rejected the credentials")
    if kind == "timeout":
        return ProviderTimeoutError("mock upstream timed out before the first token")
    return ProviderUnavailableError("mock upstream is unavailable")

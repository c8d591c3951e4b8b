"""Shared pieces of the app tests: request bodies, the mock's expected answers and a scripted provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from providers.mock import MOCK_MODEL, compose_answer, count_prompt_tokens, tokenize
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FinishReason,
    StreamItem,
    TextDelta,
    ToolCallDelta,
    Usage,
)


def user(prompt: str) -> list[dict[str, str]]:
    """A one-message conversation, as a JSON body carries it."""
    return [{"role": "user", "content": prompt}]


def mock_request(prompt: str, *, model: str = MOCK_MODEL, max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(
        model=model, messages=(ChatMessage(role="user", content=prompt),), max_tokens=max_tokens
    )


def expected_tokens(prompt: str, *, model: str = MOCK_MODEL) -> list[str]:
    """The deltas the mock streams for a one-message prompt, in order."""
    return tokenize(compose_answer(mock_request(prompt, model=model)))


def expected_prompt_tokens(prompt: str) -> int:
    return count_prompt_tokens((ChatMessage(role="user", content=prompt),))


@dataclass(frozen=True)
class WaitFor:
    """A scripted step: wait until the test sets this event (created on the test's loop)."""

    event: asyncio.Event


@dataclass(frozen=True)
class Hang:
    """A scripted step: stay silent until cancelled."""


@dataclass(frozen=True)
class Forever:
    """A scripted step: yield this delta again and again, without end."""

    delta: TextDelta


Step = TextDelta | ToolCallDelta | Finish | Exception | WaitFor | Hang | Forever


class ScriptedProvider:
    """A provider that plays a fixed script and records what happened to it."""

    def __init__(self, steps: Sequence[Step], *, name: str = "scripted", models: Sequence[str] = ()) -> None:
        self._steps = tuple(steps)
        self._name = name
        self._models = tuple(models)
        self.requests: list[ChatRequest] = []
        self.yielded = 0
        self.active = 0
        self.finished = 0
        self.cancelled = 0
        self.aclosed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def forwards_extra(self) -> bool:
        return False

    def models(self) -> Sequence[str]:
        return self._models

    async def list_models(self) -> Sequence[str]:
        return self._models

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        self.requests.append(request)
        self.active += 1
        try:
            for step in self._steps:
                await asyncio.sleep(0)
                if isinstance(step, Exception):
                    raise step
                if isinstance(step, WaitFor):
                    await step.event.wait()
                elif isinstance(step, Hang):
                    await asyncio.Event().wait()
                elif isinstance(step, Forever):
                    while True:
                        self.yielded += 1
                        yield step.delta
                        await asyncio.sleep(0)
                else:
                    if isinstance(step, TextDelta):
                        self.yielded += 1
                    yield step
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
            self.finished += 1

    async def aclose(self) -> None:
        self.aclosed = True


def deltas(*texts: str) -> list[Step]:
    return [TextDelta(text) for text in texts]


def finish(completion_tokens: int, *, prompt_tokens: int = 3, reason: FinishReason = "stop") -> Finish:
    return Finish(
        reason=reason, usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    )


# A function's parameters as a client app declares them (closed, with an enum), for the tool-call tests.
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location", "unit"],
    "additionalProperties": False,
}

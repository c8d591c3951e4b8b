"""`/v1/chat/completions`: OpenAI's `chat.completion.chunk` stream, or one `chat.completion` body.

A failure after the first chunk is sent as `data: {"error": {...}}`, which the openai SDK raises as
`APIError`; the stream then ends without `[DONE]`, as OpenAI's own does.
"""

from __future__ import annotations

import time

import msgspec

from app.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    ChunkDelta,
    CompletionChoice,
    ErrorBody,
    UsageInfo,
)
from app.stream.dialects import sse
from app.stream.session import Completed, Failed, Heartbeat, SessionEvent, StreamSession
from providers.protocol import FinishReason, TextDelta

_encode = msgspec.json.Encoder().encode
_CONTENT_KEY = b'"content":'
_EMPTY_CONTENT = _CONTENT_KEY + b'""'


class OpenAIChatDialect:
    """`stream: true`: the assistant role, a chunk per delta, the finish chunk, usage if asked, `[DONE]`."""

    __slots__ = ("_completion_id", "_content_head", "_content_tail", "_created", "_include_usage", "_model")

    def __init__(self, session: StreamSession, *, completion_id: str, include_usage: bool) -> None:
        self._completion_id = completion_id
        self._created = int(time.time())
        self._model = session.request.model
        self._include_usage = include_usage
        # A content chunk is the hot path: everything but its text is the same for the whole stream, so it
        # is encoded once, from the Struct itself, around an empty text.
        sample = self._chunk(ChunkDelta(content=""))
        head, tail = sample.split(_EMPTY_CONTENT, 1)
        self._content_head = head + _CONTENT_KEY
        self._content_tail = tail

    def start(self) -> bytes:
        return self._chunk(ChunkDelta(role="assistant", content=""))

    def frame(self, event: SessionEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            return self._content_head + _encode(event.text) + self._content_tail
        if isinstance(event, Heartbeat):
            return sse.PING
        if isinstance(event, Completed):
            finish = self._chunk(ChunkDelta(), event.finish_reason)
            usage = UsageInfo.of(event.usage)
            if self._include_usage and usage is not None:
                finish += self._event(choices=[], usage=usage)
            return finish + sse.OPENAI_DONE
        if isinstance(event, Failed):
            return sse.event(_encode(ErrorBody(error=event.error.detail)))
        return None

    def _chunk(self, delta: ChunkDelta, finish_reason: FinishReason | None = None) -> bytes:
        return self._event(choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)])

    def _event(self, *, choices: list[ChunkChoice], usage: UsageInfo | None = None) -> bytes:
        body = ChatCompletionChunk(
            id=self._completion_id, created=self._created, model=self._model, choices=choices, usage=usage
        )
        return sse.event(_encode(body))


class CompletionDialect:
    """`stream: false`: nothing until the end, then the whole `chat.completion` as one JSON body.

    No byte has been sent when a failure arrives, so it is raised, to become the response's status.
    """

    __slots__ = ("_completion_id", "_model", "_parts")

    def __init__(self, session: StreamSession, *, completion_id: str) -> None:
        self._completion_id = completion_id
        self._model = session.request.model
        self._parts: list[str] = []

    def start(self) -> None:
        return None

    def frame(self, event: SessionEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            self._parts.append(event.text)
        elif isinstance(event, Completed):
            choice = CompletionChoice(
                index=0,
                message=AssistantMessage(content="".join(self._parts)),
                finish_reason=event.finish_reason,
            )
            completion = ChatCompletion(
                id=self._completion_id,
                created=int(time.time()),
                model=self._model,
                choices=[choice],
                usage=UsageInfo.of(event.usage),
            )
            return _encode(completion)
        elif isinstance(event, Failed):
            raise event.error
        return None

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
    ChunkFunction,
    ChunkToolCall,
    CompletionChoice,
    ErrorBody,
    UsageInfo,
)
from app.stream.dialects import sse
from app.stream.session import Completed, Failed, Heartbeat, SessionEvent, StreamSession
from providers.protocol import Finish, FinishReason, FunctionCall, TextDelta, ToolCall, ToolCallDelta

_encode = msgspec.json.Encoder().encode
_CONTENT_KEY = b'"content":'
_EMPTY_CONTENT = _CONTENT_KEY + b'""'


class OpenAIChatDialect:
    """`stream: true`: the assistant role, a chunk per delta, a finish chunk per choice, usage if asked,
    `[DONE]`. With `n > 1` the choices' chunks interleave as they are produced, each with its `index`."""

    __slots__ = (
        "_choices",
        "_completion_id",
        "_content_head",
        "_content_tail",
        "_created",
        "_finished",
        "_include_usage",
        "_model",
    )

    def __init__(self, session: StreamSession, *, completion_id: str, include_usage: bool) -> None:
        self._completion_id = completion_id
        self._created = int(time.time())
        self._model = session.request.model
        self._choices = session.request.n
        self._include_usage = include_usage
        self._finished: set[int] = set()
        # A content chunk is the hot path: everything but its text is the same for the whole stream, so it
        # is encoded once, from the Struct itself, around an empty text.
        sample = self._chunk(0, ChunkDelta(content=""))
        head, tail = sample.split(_EMPTY_CONTENT, 1)
        self._content_head = head + _CONTENT_KEY
        self._content_tail = tail

    def start(self) -> bytes:
        return b"".join(
            self._chunk(choice, ChunkDelta(role="assistant", content="")) for choice in range(self._choices)
        )

    def frame(self, event: SessionEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            if event.choice:
                return self._chunk(event.choice, ChunkDelta(content=event.text))
            return self._content_head + _encode(event.text) + self._content_tail
        if isinstance(event, ToolCallDelta):
            return self._chunk(event.choice, ChunkDelta(tool_calls=[chunk_tool_call(event)]))
        if isinstance(event, Heartbeat):
            return sse.PING
        if isinstance(event, Finish):
            self._finished.add(event.choice)
            return self._chunk(event.choice, ChunkDelta(), event.reason)
        if isinstance(event, Completed):
            # Every choice not finished yet ends now (all of them when a budget cut the stream short).
            finish = b"".join(
                self._chunk(choice, ChunkDelta(), event.finish_reason)
                for choice in range(self._choices)
                if choice not in self._finished
            )
            usage = UsageInfo.of(event.usage)
            if self._include_usage and usage is not None:
                finish += self._event(choices=[], usage=usage)
            return finish + sse.OPENAI_DONE
        if isinstance(event, Failed):
            return sse.event(_encode(ErrorBody(error=event.error.detail)))
        return None

    def _chunk(self, choice: int, delta: ChunkDelta, finish_reason: FinishReason | None = None) -> bytes:
        return self._event(choices=[ChunkChoice(index=choice, delta=delta, finish_reason=finish_reason)])

    def _event(self, *, choices: list[ChunkChoice], usage: UsageInfo | None = None) -> bytes:
        body = ChatCompletionChunk(
            id=self._completion_id, created=self._created, model=self._model, choices=choices, usage=usage
        )
        return sse.event(_encode(body))


def chunk_tool_call(delta: ToolCallDelta) -> ChunkToolCall:
    """OpenAI's piece of a tool call: `id`, `type` and the name on the first piece only."""
    return ChunkToolCall(
        index=delta.index,
        id=delta.id,
        type="function" if delta.id is not None else None,
        function=ChunkFunction(name=delta.name, arguments=delta.arguments),
    )


class _Choice:
    """One choice of a whole completion, as its pieces arrive."""

    __slots__ = ("calls", "finish_reason", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        # By call index: [id, name, argument fragments...]
        self.calls: dict[int, list[str]] = {}
        self.finish_reason: FinishReason | None = None

    def add_call(self, delta: ToolCallDelta) -> None:
        call = self.calls.get(delta.index)
        if call is None:
            self.calls[delta.index] = [delta.id or f"call_{delta.index}", delta.name or "", delta.arguments]
        else:
            call.append(delta.arguments)

    def message(self) -> AssistantMessage:
        calls = [
            ToolCall(id=call_id, function=FunctionCall(name=name, arguments="".join(arguments)))
            for call_id, name, *arguments in (self.calls[index] for index in sorted(self.calls))
        ]
        text = "".join(self.text)
        return AssistantMessage(
            role="assistant",
            content=text if text or not calls else None,
            refusal=None,
            tool_calls=calls or None,
        )


class CompletionDialect:
    """`stream: false`: nothing until the end, then the whole `chat.completion` as one JSON body.

    No byte has been sent when a failure arrives, so it is raised, to become the response's status.
    """

    __slots__ = ("_choices", "_completion_id", "_model")

    def __init__(self, session: StreamSession, *, completion_id: str) -> None:
        self._completion_id = completion_id
        self._model = session.request.model
        self._choices = [_Choice() for _ in range(session.request.n)]

    def start(self) -> None:
        return None

    def frame(self, event: SessionEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            self._choices[event.choice].text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self._choices[event.choice].add_call(event)
        elif isinstance(event, Finish):
            self._choices[event.choice].finish_reason = event.reason
        elif isinstance(event, Completed):
            choices = [
                CompletionChoice(
                    index=index,
                    message=choice.message(),
                    finish_reason=choice.finish_reason or event.finish_reason,
                )
                for index, choice in enumerate(self._choices)
            ]
            completion = ChatCompletion(
                id=self._completion_id,
                created=int(time.time()),
                model=self._model,
                choices=choices,
                usage=UsageInfo.of(event.usage),
            )
            return _encode(completion)
        elif isinstance(event, Failed):
            raise event.error
        return None

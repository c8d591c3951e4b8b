"""`/v1/responses`: the OpenAI Responses API's semantic events, or one `response` object.

A stream is `response.created`, `response.in_progress`, then one output item at a time — a `message`
(`output_item.added`, `content_part.added`, `output_text.delta`..., `output_text.done`, `content_part.done`,
`output_item.done`) or a `function_call` (`output_item.added`, `function_call_arguments.delta`...,
`.done`, `output_item.done`) — and `response.completed` with the usage. A token budget or a content
filter ends it as `response.incomplete`; a failure after the first token as an `error` event, then
`response.failed` with the output so far. Every event carries `sequence_number`, counting from 0.
"""

from __future__ import annotations

import time
from typing import Final, Literal

import msgspec

from app.schemas import ErrorDetail, tag_of
from app.schemas_responses import (
    ContentPartAdded,
    ContentPartDone,
    ErrorPayload,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    IncompleteDetails,
    ItemStatus,
    OutputFunctionCall,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputMessage,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseObject,
    ResponsesRequest,
    ResponseStreamEvent,
    ResponseUsage,
    StreamError,
    TextConfig,
)
from app.stream.dialects import sse
from app.stream.session import Completed, Failed, Heartbeat, SessionEvent
from providers.protocol import FinishReason, TextDelta, ToolCallDelta, Usage

_encode = msgspec.json.Encoder().encode
_INCOMPLETE: Final[dict[FinishReason, IncompleteDetails]] = {
    "length": IncompleteDetails(reason="max_output_tokens"),
    "content_filter": IncompleteDetails(reason="content_filter"),
}


def response_template(body: ResponsesRequest, *, response_id: str, model: str) -> ResponseObject:
    """The response object as it stands before any output: what the request asked for, echoed."""
    return ResponseObject(
        id=response_id,
        created_at=int(time.time()),
        model=model,
        status="in_progress",
        output=[],
        tools=list(body.tools or ()),
        tool_choice=body.tool_choice or "auto",
        parallel_tool_calls=body.parallel_tool_calls is not False,
        text=body.text or TextConfig(),
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        metadata=body.metadata or {},
        user=body.user,
    )


def response_usage(usage: Usage | None) -> ResponseUsage | None:
    if usage is None:
        return None
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


class _Item:
    """One output item as its pieces arrive: a message's text, or a function call's arguments."""

    __slots__ = ("call_id", "closed", "id", "name", "output_index", "pieces", "tool_index")

    def __init__(self, output_index: int, item_id: str, *, tool_index: int | None = None) -> None:
        self.output_index = output_index
        self.id = item_id
        # The provider's index of the tool call this item is, None for a message.
        self.tool_index = tool_index
        self.call_id = ""
        self.name = ""
        self.pieces: list[str] = []
        # Its `done` events are out: nothing more is framed for it.
        self.closed = False

    def as_output(self, status: ItemStatus) -> OutputItem:
        text = "".join(self.pieces)
        if self.tool_index is None:
            # An item just added has no content part yet: `content_part.added` brings it.
            content = [] if status == "in_progress" else [OutputText(text=text)]
            return OutputMessage(id=self.id, status=status, content=content)
        return OutputFunctionCall(
            id=self.id, call_id=self.call_id, name=self.name, arguments=text, status=status
        )


class _Output:
    """The output items of one response, in order; the last one may still be open."""

    __slots__ = ("_prefix", "items")

    def __init__(self, response_id: str) -> None:
        self._prefix = response_id.removeprefix("resp_")
        self.items: list[_Item] = []

    @property
    def current(self) -> _Item | None:
        return self.items[-1] if self.items else None

    def open_message(self) -> _Item:
        index = len(self.items)
        item = _Item(index, f"msg_{self._prefix}_{index}")
        self.items.append(item)
        return item

    def open_call(self, delta: ToolCallDelta) -> _Item:
        index = len(self.items)
        item = _Item(index, f"fc_{self._prefix}_{index}", tool_index=delta.index)
        item.call_id = delta.id or f"call_{self._prefix}_{delta.index}"
        item.name = delta.name or ""
        self.items.append(item)
        return item

    def final(self, template: ResponseObject, completed: Completed) -> ResponseObject:
        incomplete = _INCOMPLETE.get(completed.finish_reason)
        status: Literal["completed", "incomplete"] = "completed" if incomplete is None else "incomplete"
        return msgspec.structs.replace(
            template,
            status=status,
            output=[item.as_output(status) for item in self.items],
            usage=response_usage(completed.usage),
            incomplete_details=incomplete,
        )


class ResponsesStreamDialect:
    """`stream: true`: the Responses API's event stream, one output item open at a time."""

    __slots__ = ("_delta_frame", "_output", "_sequence", "_template")

    def __init__(self, template: ResponseObject) -> None:
        self._template = template
        self._output = _Output(template.id)
        self._sequence = 0
        # The open message's text delta, encoded once around its two variable parts (see `_delta_parts`).
        self._delta_frame: tuple[bytes, bytes, bytes] | None = None

    def start(self) -> bytes:
        return self._event(ResponseCreated(sequence_number=0, response=self._template)) + self._event(
            ResponseInProgress(sequence_number=0, response=self._template)
        )

    def frame(self, event: SessionEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            return self._text(event.text)
        if isinstance(event, ToolCallDelta):
            return self._call(event)
        if isinstance(event, Heartbeat):
            return sse.PING
        if isinstance(event, Completed):
            final = self._output.final(self._template, event)
            closing = self._close("completed" if final.status == "completed" else "incomplete")
            if final.status == "completed":
                return closing + self._event(ResponseCompleted(sequence_number=0, response=final))
            return closing + self._event(ResponseIncomplete(sequence_number=0, response=final))
        if isinstance(event, Failed):
            return self._failed(event.error.detail)
        return None  # `Finish` of one of several choices: the Responses API has one answer

    def _text(self, text: str) -> bytes:
        head = b""
        item = self._output.current
        if item is None or item.tool_index is not None:
            head = self._close()
            item = self._output.open_message()
            head += self._event(
                OutputItemAdded(
                    sequence_number=0, output_index=item.output_index, item=item.as_output("in_progress")
                )
            )
            head += self._event(
                ContentPartAdded(
                    sequence_number=0,
                    item_id=item.id,
                    output_index=item.output_index,
                    content_index=0,
                    part=OutputText(text=""),
                )
            )
            self._delta_frame = _delta_parts(item)
        item.pieces.append(text)
        assert self._delta_frame is not None
        before, middle, after = self._delta_frame
        sequence = self._sequence
        self._sequence = sequence + 1
        return head + before + _encode(text) + middle + b"%d" % sequence + after

    def _call(self, delta: ToolCallDelta) -> bytes:
        head = b""
        item = self._output.current
        if item is None or item.tool_index != delta.index:
            if any(open_item.tool_index == delta.index for open_item in self._output.items):
                # One item is open at a time, as OpenAI streams them; a provider that went back to an
                # earlier call cannot be framed (the stream ends with an internal error).
                raise RuntimeError(f"tool call {delta.index} continued after another output item began")
            head = self._close()
            item = self._output.open_call(delta)
            head += self._event(
                OutputItemAdded(
                    sequence_number=0, output_index=item.output_index, item=item.as_output("in_progress")
                )
            )
        if not delta.arguments:
            return head
        item.pieces.append(delta.arguments)
        return head + self._event(
            FunctionCallArgumentsDelta(
                sequence_number=0, item_id=item.id, output_index=item.output_index, delta=delta.arguments
            )
        )

    def _close(self, status: ItemStatus = "completed") -> bytes:
        """The `done` events of the open item, if any."""
        item = self._output.current
        if item is None or item.closed:
            return b""
        item.closed = True
        done = item.as_output(status)
        closed_id, index = item.id, item.output_index
        if isinstance(done, OutputMessage):
            part = done.content[0]
            frames = self._event(
                OutputTextDone(
                    sequence_number=0, item_id=closed_id, output_index=index, content_index=0, text=part.text
                )
            ) + self._event(
                ContentPartDone(
                    sequence_number=0, item_id=closed_id, output_index=index, content_index=0, part=part
                )
            )
        else:
            frames = self._event(
                FunctionCallArgumentsDone(
                    sequence_number=0,
                    item_id=closed_id,
                    output_index=index,
                    name=done.name,
                    arguments=done.arguments,
                )
            )
        return frames + self._event(OutputItemDone(sequence_number=0, output_index=index, item=done))

    def _failed(self, detail: ErrorDetail) -> bytes:
        failed = msgspec.structs.replace(
            self._template,
            status="failed",
            output=[item.as_output("incomplete") for item in self._output.items],
            error=ResponseError(code=detail.code, message=detail.message),
        )
        payload = ErrorPayload(type=detail.type, code=detail.code, message=detail.message, param=detail.param)
        # `error` first: the openai SDK raises on it (so `response.failed` is for raw-event readers), and
        # the AI SDK reports a stream error once when `error` comes first, twice when it follows.
        return self._event(
            StreamError(
                sequence_number=0, code=detail.code, message=detail.message, param=detail.param, error=payload
            )
        ) + self._event(ResponseFailed(sequence_number=0, response=failed))

    def _event(self, event: ResponseStreamEvent) -> bytes:
        """One event, numbered: its `sequence_number` (0 as built) is the stream's next."""
        numbered = msgspec.structs.replace(event, sequence_number=self._sequence)
        self._sequence += 1
        return sse.event(_encode(numbered), name=tag_of(numbered))


def _delta_parts(item: _Item) -> tuple[bytes, bytes, bytes]:
    """A text delta of `item` as three constant byte strings around its text and its sequence number.

    (msgspec writes a base class's fields after the subclass's when all are keyword-only: the number is
    last, and the assertion says so should that ever change.)
    """
    sample = OutputTextDelta(
        sequence_number=0, item_id=item.id, output_index=item.output_index, content_index=0, delta=""
    )
    framed = sse.event(_encode(sample), name=tag_of(sample))
    before, rest = framed.split(b'"delta":""', 1)
    middle, after = rest.split(b'"sequence_number":0', 1)
    assert b'"sequence_number"' not in before
    return before + b'"delta":', middle + b'"sequence_number":', after


class ResponseDialect:
    """`stream: false`: nothing until the end, then the whole `response` object as one JSON body.

    No byte has been sent when a failure arrives, so it is raised, to become the response's status.
    """

    __slots__ = ("_output", "_template")

    def __init__(self, template: ResponseObject) -> None:
        self._template = template
        self._output = _Output(template.id)

    def start(self) -> None:
        return None

    def frame(self, event: SessionEvent) -> bytes | None:
        output = self._output
        if isinstance(event, TextDelta):
            item = output.current
            if item is None or item.tool_index is not None:
                item = output.open_message()
            item.pieces.append(event.text)
        elif isinstance(event, ToolCallDelta):
            item = next((i for i in output.items if i.tool_index == event.index), None)
            if item is None:
                item = output.open_call(event)
            item.pieces.append(event.arguments)
        elif isinstance(event, Completed):
            return _encode(output.final(self._template, event))
        elif isinstance(event, Failed):
            raise event.error
        return None

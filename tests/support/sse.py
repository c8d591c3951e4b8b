"""A strict reading of a raw `text/event-stream` body, comments included.

`httpx-sse` drops comments, so heartbeat tests need their own reader; this one follows the WHATWG
parsing rules closely enough to notice framing mistakes (a stray `data:` line, a missing blank line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Frame:
    """One dispatched block of an event stream: an event, or a run of comment lines."""

    event: str | None = None
    data_lines: tuple[str, ...] = ()
    id: str | None = None
    comments: tuple[str, ...] = ()

    @property
    def is_comment(self) -> bool:
        return bool(self.comments) and not self.data_lines

    @property
    def data(self) -> str:
        return "\n".join(self.data_lines)

    def json(self) -> Any:
        return msgspec.json.decode(self.data)


@dataclass
class _Pending:
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    def frame(self) -> Frame:
        return Frame(self.event, tuple(self.data_lines), self.id, tuple(self.comments))


def parse_frames(body: bytes | str) -> list[Frame]:
    """Every block of the stream in order; a block without a terminating blank line is an error."""
    text = body.decode() if isinstance(body, bytes) else body
    lines = _LINE_BREAK.split(text)
    if lines[-1] != "":
        raise AssertionError(f"the stream does not end with a line break: {lines[-1]!r}")
    lines.pop()
    frames: list[Frame] = []
    pending = _Pending()
    for line in lines:
        if line == "":
            if pending.data_lines or pending.comments or pending.event or pending.id:
                frames.append(pending.frame())
            pending = _Pending()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            pending.comments.append(value)
        elif name == "event":
            pending.event = value
        elif name == "data":
            pending.data_lines.append(value)
        elif name == "id":
            pending.id = value
        else:
            raise AssertionError(f"unexpected SSE field line: {line!r}")
    if pending.data_lines or pending.comments or pending.event or pending.id:
        raise AssertionError("the stream ends inside an event (no blank line after it)")
    return frames


def events(frames: list[Frame]) -> list[Frame]:
    """The frames that carry data (what a client dispatches), heartbeats left out."""
    return [frame for frame in frames if frame.data_lines]

"""One generation, supervised: budgets, heartbeats, explicit cancel and exactly one `stream_end` log line.

The provider runs in its own task feeding a small queue, so that waiting for the next token can time out
(for a heartbeat, a budget or a cancel check) without cancelling the provider's iterator mid-step.
Closing the event iterator (client gone, server shutting down) cancels that task, which closes the
upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Final

from app.errors import DEADLINE, IDLE_TIMEOUT, ApiError, cancelled_error, from_provider_error, internal_error
from app.logs import log_event
from app.metrics.record import StreamEnd, StreamLabels
from app.metrics.recorder import StreamMetrics
from app.stream.cancel import CancelRegistry
from app.stream.channel import Channel
from app.stream.limits import StreamLimits
from providers.errors import ProviderError
from providers.protocol import (
    ChatRequest,
    Finish,
    FinishReason,
    Provider,
    StreamItem,
    TextDelta,
    ToolCallDelta,
    Usage,
)

_QUEUE_SIZE: Final = 64
# Sessions built without metrics (tests, benchmarks) still log their one `stream_end` line.
_LOG_ONLY: Final = StreamMetrics()


class Outcome(enum.StrEnum):
    """How a stream ended, as logged in `stream_end`."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ERROR = "error"
    MAX_TOKENS = "max_tokens"
    IDLE_TIMEOUT = "idle_timeout"
    DEADLINE = "deadline"
    # The client stopped reading: one write waited longer than `StreamLimits.send_timeout_s`.
    STALLED = "stalled"
    # A resumable stream whose client left and did not come back within `RESUME_GRACE_S`.
    ABANDONED = "abandoned"


class Heartbeat:
    """Nothing to send for a while: keep the connection open."""

    __slots__ = ()


HEARTBEAT: Final = Heartbeat()


@dataclass(frozen=True, slots=True)
class Completed:
    """The generation finished (possibly cut short by the token budget)."""

    finish_reason: FinishReason
    usage: Usage | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Failed:
    """The stream ends without a complete answer."""

    error: ApiError
    outcome: Outcome


# A `Finish` is an event only when one of several choices ends before the last; the last ends as `Completed`.
SessionEvent = TextDelta | ToolCallDelta | Finish | Heartbeat | Completed | Failed


@dataclass(frozen=True, slots=True)
class _PumpFailure:
    error: BaseException


class _Timer(enum.Enum):
    HEARTBEAT = "heartbeat"
    IDLE = "idle"
    DEADLINE = "deadline"
    CANCEL_CHECK = "cancel_check"


_PROVIDER_ENDED: Final = object()


class StreamSession:
    """Runs one provider generation and turns it into session events under budgets."""

    def __init__(
        self,
        *,
        provider: Provider,
        request: ChatRequest,
        stream_id: str,
        dialect: str,
        limits: StreamLimits,
        cancels: CancelRegistry,
        owner: str | None = None,
        resumable: bool = False,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.provider = provider
        self.request = request
        self.stream_id = stream_id
        self.dialect = dialect
        self.limits = limits
        self._cancels = cancels
        self._owner = owner
        # Whether its events go to the stream log, to be read again after a dropped connection.
        self.resumable = resumable
        self._queue = Channel(_QUEUE_SIZE)
        self.started_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.deltas = 0
        self.usage: Usage | None = None
        # How it ended, once it has.
        self.outcome: Outcome | None = None
        # When the stream must be over, on the loop's clock, once it has started.
        self.deadline_at: float | None = None
        # Set by whoever stops the stream from outside (the writer, for a client that does not read).
        self._stopped_as: Outcome | None = None
        # A stop asked for from outside that the stream itself ends with, as its terminal event.
        self._stop_request: Failed | None = None
        # The error code of the upstream failure that ended it, if one did.
        self.upstream_error: str | None = None
        self._metrics = metrics if metrics is not None else _LOG_ONLY
        self.labels = StreamLabels(dialect=dialect, provider=provider.name, model=request.model)

    @property
    def has_queued(self) -> bool:
        """Whether the provider's next item is already waiting: asking for it now returns at once."""
        return bool(self._queue.items)

    @property
    def ttft_ms(self) -> float | None:
        if self.first_token_at is None:
            return None
        return round((self.first_token_at - self.started_at) * 1000, 2)

    @property
    def duration_ms(self) -> float:
        end = self.ended_at if self.ended_at is not None else time.perf_counter()
        return round((end - self.started_at) * 1000, 2)

    async def _pump(self) -> None:
        items: AsyncIterator[StreamItem] | None = None
        try:
            # Inside the `try`: a provider may fail before it returns its iterator, too.
            items = self.provider.stream_chat(self.request)
            queue = self._queue
            async for item in items:
                if not queue.offer(item):
                    await queue.put(item)
            await self._queue.put(_PROVIDER_ENDED)
        except Exception as exc:  # a provider bug, too, must end the stream cleanly rather than hang it
            await self._queue.put(_PumpFailure(exc))
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    async def events(self) -> AsyncGenerator[SessionEvent, None]:
        """Yield deltas and heartbeats, then exactly one `Completed` or `Failed`, unless closed early."""
        limits = self.limits
        queue = self._queue
        loop = asyncio.get_running_loop()
        loop_clock = time.monotonic
        now = started_at = loop_clock()
        deadline_at = now + limits.deadline_s
        if limits.host_deadline is not None:
            deadline_at = min(deadline_at, limits.host_deadline.at)
        self.deadline_at = deadline_at
        poll_s = self._cancels.poll_interval_s
        max_tokens, idle_s, heartbeat_s = limits.max_tokens, limits.idle_timeout_s, limits.heartbeat_s
        heartbeat_at = now + heartbeat_s
        idle_at = now + idle_s
        cancel_check_at = now + poll_s
        # One alarm wakes the waiting session at its earliest timer. Tokens only push the idle and
        # heartbeat timers later, so the alarm is re-armed when it fires early, not once per token.
        alarm: asyncio.TimerHandle | None = None
        items = queue.items
        choices_left = self.request.n
        outcome = Outcome.CANCELLED
        await self._cancels.register(self.stream_id, self._owner)
        pump = asyncio.create_task(self._pump(), name=f"provider-{self.stream_id}")
        try:
            # Paired with the `stream_ended` of the `finally`: the active-streams gauge cannot drift.
            self._metrics.stream_started(self.labels)
            while True:
                if self._stop_request is not None:  # checked on every turn: `request_stop` rings the alarm
                    outcome = self._stop_request.outcome
                    yield self._stop_request
                    return
                item: object
                if items:  # the common case under load: no timer needed
                    item = queue.pop()
                else:
                    if alarm is None or queue.rang:
                        # The earliest timer; on a tie the first in this order wins.
                        item, wake_at = _Timer.HEARTBEAT, heartbeat_at
                        if idle_at < wake_at:
                            item, wake_at = _Timer.IDLE, idle_at
                        if deadline_at < wake_at:
                            item, wake_at = _Timer.DEADLINE, deadline_at
                        if cancel_check_at < wake_at:
                            item, wake_at = _Timer.CANCEL_CHECK, cancel_check_at
                        current = loop_clock()
                        if alarm is not None:
                            alarm.cancel()
                            alarm = None
                        if wake_at > current:
                            queue.rang = False
                            alarm = loop.call_later(wake_at - current, queue.ring)
                    # An alarm that has not rung is never later than the earliest timer (timers only
                    # move later), so no timer is due and there is nothing to do but wait.
                    if alarm is not None:
                        await queue.wait(loop)
                        if not items:
                            continue  # woken by the alarm: find out which timer is due
                        item = queue.pop()
                now = loop_clock()
                if now >= deadline_at:
                    # Also when items are waiting: a reader slower than the provider keeps the buffer full.
                    item = _Timer.DEADLINE
                if now >= cancel_check_at:
                    cancel_check_at = now + poll_s
                    if await self._cancels.is_cancelled(self.stream_id):
                        outcome = Outcome.CANCELLED
                        yield Failed(cancelled_error(), outcome)
                        return
                if isinstance(item, (TextDelta, ToolCallDelta)):
                    if self.deltas >= max_tokens:
                        # The provider went past max_tokens (or ignores it): the budget is ours to enforce.
                        outcome = Outcome.MAX_TOKENS
                        yield Completed("length", None, outcome)
                        return
                    if self.first_token_at is None:
                        self.first_token_at = time.perf_counter()
                    self.deltas += 1
                    idle_at = now + idle_s
                    heartbeat_at = now + heartbeat_s
                    yield item
                elif isinstance(item, Finish):
                    choices_left -= 1
                    if choices_left > 0:
                        yield item  # one choice ended; the others go on
                        continue
                    self.usage = item.usage
                    outcome = Outcome.MAX_TOKENS if item.reason == "length" else Outcome.COMPLETED
                    yield Completed(item.reason, item.usage, outcome)
                    return
                elif item is _PROVIDER_ENDED:
                    outcome = Outcome.COMPLETED
                    yield Completed("stop", None, outcome)
                    return
                elif isinstance(item, _PumpFailure):
                    outcome = Outcome.ERROR
                    yield Failed(self._translate(item.error), outcome)
                    return
                elif item is _Timer.HEARTBEAT:
                    heartbeat_at = now + heartbeat_s
                    yield HEARTBEAT
                elif item is _Timer.IDLE:
                    outcome = Outcome.IDLE_TIMEOUT
                    yield Failed(_budget_error(outcome, limits.idle_timeout_s), outcome)
                    return
                elif item is _Timer.DEADLINE:
                    outcome = Outcome.DEADLINE
                    # The budget that ran out: the configured one, or the host's (Lambda) when sooner.
                    budget_s = max(0.0, round(deadline_at - started_at, 1))
                    yield Failed(_budget_error(outcome, budget_s), outcome)
                    return
        finally:
            self.ended_at = time.perf_counter()
            if alarm is not None:
                alarm.cancel()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await self._cancels.release(self.stream_id)
            if self._stopped_as is not None:
                outcome = self._stopped_as
            self.outcome = outcome
            self._log_end(outcome)

    def end_unstarted(self) -> None:
        """Log the end of a session that was given up before its events were ever asked for.

        (A WebSocket prompt cancelled before its task ran a step): still one `stream_end` per session.
        """
        if self.deadline_at is not None:  # set as soon as `events()` starts
            return
        self.ended_at = time.perf_counter()
        self.outcome = Outcome.CANCELLED
        self._log_end(Outcome.CANCELLED, started=False)

    def request_stop(self, error: ApiError, outcome: Outcome) -> None:
        """End the stream at once with `error` as its terminal event (a resumable stream nobody reads).

        Unlike closing the event iterator, this lets the stream's framing end it properly.
        """
        self._stop_request = Failed(error, outcome)
        self._queue.ring()

    def stopping_as(self, outcome: Outcome) -> None:
        """Say why the stream is about to be closed from outside, so that its `stream_end` line says so."""
        self._stopped_as = outcome

    def _translate(self, exc: BaseException) -> ApiError:
        if isinstance(exc, ProviderError):
            error = from_provider_error(exc)
            self.upstream_error = error.kind.code
            return error
        log_event(
            "provider_bug",
            logging.ERROR,
            stream_id=self.stream_id,
            provider=self.provider.name,
            exc_type=type(exc).__name__,
        )
        return internal_error()

    def _log_end(self, outcome: Outcome, *, started: bool = True) -> None:
        usage = self.usage
        self._metrics.stream_ended(
            StreamEnd(
                stream_id=self.stream_id,
                labels=self.labels,
                outcome=outcome.value,
                ttft_ms=self.ttft_ms,
                duration_ms=self.duration_ms,
                completion_tokens=usage.completion_tokens if usage else self.deltas,
                prompt_tokens=usage.prompt_tokens if usage else None,
                upstream_error=self.upstream_error if outcome is Outcome.ERROR else None,
                started=started,
            )
        )


def _budget_error(outcome: Outcome, seconds: float) -> ApiError:
    if outcome is Outcome.IDLE_TIMEOUT:
        return IDLE_TIMEOUT(f"no token arrived for {seconds:g}s")
    return DEADLINE(f"the stream ran longer than {seconds:g}s")

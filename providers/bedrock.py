"""The Amazon Bedrock provider: any Converse model, streamed through botocore's `converse_stream`.

Credentials, region and endpoint come from the AWS SDK's own chain (on Lambda: the function's role and
region; `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` points it at another server), so no key is configured here.
botocore is imported when a provider is built, never when this module is imported.

botocore is synchronous. Each generation runs its HTTP call on a thread of its own that hands the decoded
events to the event loop through a bounded buffer; closing the generation shuts the socket down from the
loop (`urllib3`'s `HTTPResponse.shutdown()`, which wakes a thread blocked reading it), so Bedrock sees the
connection close at once and stops generating. Why not aiobotocore: measured here, `import aiobotocore`
(aiohttp with it) took 0.55 s against 0.29 s for `import boto3`, it pins botocore to three patch releases
(3.10.0: `>=1.43.115,<1.43.118`, older than the botocore the lock holds for boto3 and moto), and Lambda's
runtime ships botocore but not aiohttp. Tokens arrive tens per second; one hop between threads per event
costs microseconds (`python -m bench.overhead` measures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

from providers.bedrock_converse import ConverseEvents, converse_arguments
from providers.errors import (
    ProviderAccessDeniedError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderModelNotFoundError,
    ProviderNotReadyError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.openai import parse_retry_after_s
from providers.protocol import ChatRequest, StreamItem

logger = logging.getLogger(__name__)

_MAX_DETAIL_CHARS: Final = 200
# Codes of credentials the service does not accept at all (as opposed to a policy that lacks a permission).
_CREDENTIAL_CODES: Final = frozenset(
    {"unrecognizedclientexception", "invalidsignatureexception", "expiredtokenexception", "expiredexception"}
)
_END: Final = object()
# How long closing waits for the worker thread to let go of the connection once its read is woken.
_CLOSE_WAIT_S: Final = 5.0


class BedrockProvider:
    """Streams chat completions from Amazon Bedrock's Converse API (`converse_stream`)."""

    def __init__(
        self,
        *,
        models: Sequence[tuple[str, str]],
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_retries: int = 2,
        buffer_events: int = 64,
    ) -> None:
        if not models:
            raise ValueError("models must name at least one (public name, Bedrock model id) pair")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeout_s and connect_timeout_s must be > 0")
        if max_retries < 0 or buffer_events < 1:
            raise ValueError("max_retries must be >= 0 and buffer_events >= 1")

        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        self._model_ids = dict(models)
        self._names = tuple(self._model_ids)
        self._buffer_events = buffer_events
        self._active = 0
        self._active_lock = threading.Lock()
        config = Config(
            # Per socket read: bounds each wait for the next event, not the whole answer.
            read_timeout=timeout_s,
            connect_timeout=connect_timeout_s,
            # botocore retries only the call itself (throttling, 5xx before the stream starts), never a
            # stream that has already yielded: safe, as no token has reached the client then.
            retries={"mode": "standard", "total_max_attempts": max_retries + 1},
            # One connection per concurrent stream; botocore's default of 10 would queue the eleventh.
            max_pool_connections=256,
        )
        try:
            self._client: Any = botocore.session.get_session().create_client(
                "bedrock-runtime", region_name=region, endpoint_url=endpoint_url, config=config
            )
        except NoRegionError:
            raise ValueError(
                "no AWS region for Bedrock: set BEDROCK_REGION (or AWS_REGION, which Lambda sets)"
            ) from None
        if not hasattr(self._client, "converse_stream"):
            raise ValueError(
                f"botocore {botocore.__version__} has no ConverseStream: it needs botocore >= 1.34.113"
            )

    @property
    def name(self) -> str:
        return "bedrock"

    @property
    def forwards_extra(self) -> bool:
        return False

    @property
    def active_streams(self) -> int:
        """Upstream responses still open (their worker threads not yet done with them)."""
        return self._active

    def models(self) -> Sequence[str]:
        return self._names

    async def list_models(self) -> Sequence[str]:
        return self._names

    async def aclose(self) -> None:
        self._client.close()

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        model_id = self._model_ids.get(request.model, request.model)
        # Refusals (`n`, remote images, ...) raise here, before any request is sent.
        arguments = converse_arguments(request, model_id)
        events = ConverseEvents()
        pump = _EventPump(
            lambda: self._client.converse_stream(**arguments), self._buffer_events, self._opened
        )
        started = False
        try:
            async for event in pump:
                for item in events.feed(event):
                    started = True
                    yield item
                # One network read can carry many events, which the queue hands over without suspending;
                # the checkpoint keeps every event a point where the consumer can be cancelled.
                await asyncio.sleep(0)
        except ProviderError:
            raise
        except Exception as exc:  # botocore's and urllib3's, raised on the worker thread
            raise _translate(exc, model_id=model_id, started=started) from exc
        finally:
            await pump.close()
        finish = events.finish()
        if finish is None:
            message = "Amazon Bedrock ended the stream before the answer finished"
            raise ProviderStreamError(message) if started else ProviderUnavailableError(message)
        yield finish

    def _opened(self, delta: int) -> None:
        with self._active_lock:
            self._active += delta


class _EventPump:
    """One `converse_stream` call on a thread of its own, its events handed to the loop in order.

    At most `capacity` events wait in the buffer; beyond that the thread stops reading, so a slow client
    slows the upstream through TCP, as an async read would.
    """

    def __init__(
        self, call: Callable[[], Mapping[str, Any]], capacity: int, opened: Callable[[int], None]
    ) -> None:
        self._call = call
        self._opened = opened
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._room = threading.Semaphore(capacity)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._raw: Any = None  # urllib3's response, once the call has returned
        self._done = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._ended = False  # the thread has handed over its last item and let go of the response

    def __aiter__(self) -> _EventPump:
        return self

    async def __anext__(self) -> Mapping[str, Any]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bedrock-stream", daemon=True)
            self._thread.start()
        item = await self._queue.get()
        self._room.release()
        if item is _END:
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        event: Mapping[str, Any] = item  # type: ignore[assignment]
        return event

    async def close(self) -> None:
        """Close the upstream stream now; returns once the thread has let go of the connection."""
        self._closing.set()
        self._room.release()  # a thread waiting for room must see `_closing`
        if self._thread is None or self._ended:
            return
        with self._lock:
            raw = self._raw
        if raw is None or self._done.is_set():
            # No response yet (the thread closes it as soon as it has its head), or the thread is done.
            return
        # Wakes the thread blocked reading; it then closes the connection. A response the thread has just
        # finished with says so by raising: nothing left to shut.
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            _shut(raw)
        try:
            async with asyncio.timeout(_CLOSE_WAIT_S):
                await self._done.wait()
        except TimeoutError:
            # The read did not wake (a socket this code cannot reach): the thread ends at the read timeout.
            logger.warning(
                "Amazon Bedrock stream not closed within %gs: left to its read timeout", _CLOSE_WAIT_S
            )

    def _run(self) -> None:
        self._opened(+1)
        stream: Any = None
        try:
            response = self._call()
            stream = response["stream"]
            with self._lock:
                # botocore's EventStream keeps urllib3's response private; it is the only way to its socket.
                self._raw = stream._raw_stream
            if self._closing.is_set():
                return
            for event in stream:
                self._room.acquire()
                if self._closing.is_set():
                    return
                self._hand_over(event)
            # Read to the end: urllib3 has put the connection back into the pool for the next stream.
            stream = None
            self._hand_over(_END)
        except Exception as exc:  # every failure crosses to the loop, where it is translated
            if not self._closing.is_set():
                self._hand_over(exc)
        finally:
            if stream is not None:
                stream.close()
            self._opened(-1)
            self._call_soon(self._done.set)

    def _hand_over(self, item: object) -> None:
        self._call_soon(self._queue.put_nowait, item)

    def _call_soon(self, callback: Any, *args: object) -> None:
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)


def _shut(raw: Any) -> None:
    """Wake the thread blocked reading urllib3's response `raw`: its `shutdown()` (urllib3 2.3 and newer),
    else a shutdown of the socket under it (the urllib3 of an older Lambda runtime's botocore)."""
    shutdown = getattr(raw, "shutdown", None)
    if shutdown is not None:
        try:
            shutdown()
            return
        except NotImplementedError:  # urllib3 2.0 to 2.2: only the base class's stub
            pass
    # http.client's response reads a buffered SocketIO over the socket (TLS or not).
    reader = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(reader, "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):
        sock.shutdown(socket.SHUT_RDWR)


def _translate(exc: Exception, *, model_id: str, started: bool) -> ProviderError:
    """Our error for a botocore failure; after the first item every failure is a `ProviderStreamError`."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        # HTTP errors name the type `ThrottlingException`, exception frames `throttlingException`.
        name = str(exc.response.get("Error", {}).get("Code", "")) or "unknown error"
        detail = _detail(exc)
        logger.warning("Amazon Bedrock failed (%s, streaming=%s)", name, started)
        if started:
            return ProviderStreamError(f"Amazon Bedrock stream failed ({name}): {detail}")
        return _client_error(name, detail, exc.response, model_id)
    logger.warning("Amazon Bedrock failed (%s, streaming=%s)", type(exc).__name__, started)
    if started:
        if isinstance(exc, ReadTimeoutError):
            return ProviderStreamError("Amazon Bedrock stopped sending in the middle of the answer")
        return ProviderStreamError("the connection to Amazon Bedrock broke in the middle of the answer")
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return ProviderTimeoutError("Amazon Bedrock did not answer in time")
    if isinstance(exc, ParamValidationError):
        # botocore's own check of the arguments, before anything is sent (an empty `stop` string, ...).
        report = " ".join(str(exc.kwargs.get("report", exc)).split())
        return ProviderBadRequestError(f"Amazon Bedrock cannot take this request: {report}")
    if isinstance(exc, NoCredentialsError):
        return ProviderAuthError("the AWS SDK found no credentials for Amazon Bedrock")
    if isinstance(exc, EndpointConnectionError):
        return ProviderUnavailableError("could not reach Amazon Bedrock")
    return ProviderUnavailableError(f"Amazon Bedrock call failed ({type(exc).__name__})")


def _client_error(name: str, detail: str, response: Mapping[str, Any], model_id: str) -> ProviderError:
    code = name.lower()
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    retry_after_s = parse_retry_after_s(headers)
    if code in ("throttlingexception", "toomanyrequestsexception"):
        return ProviderRateLimitError(
            f"Amazon Bedrock throttled the request: {detail}", retry_after_s=retry_after_s
        )
    if code == "accessdeniedexception":
        return ProviderAccessDeniedError(_access_denied_message(detail, model_id))
    if code in _CREDENTIAL_CODES:
        return ProviderAuthError(f"Amazon Bedrock rejected the AWS credentials ({name}): {detail}")
    if code == "resourcenotfoundexception":
        return ProviderModelNotFoundError(f"Amazon Bedrock does not know the model {model_id!r}: {detail}")
    if code == "validationexception":
        return ProviderBadRequestError(f"Amazon Bedrock rejected the request: {detail}")
    if code in ("serviceunavailableexception", "modelnotreadyexception"):
        return ProviderNotReadyError(
            f"Amazon Bedrock cannot serve {model_id!r} now ({name}): {detail}", retry_after_s=retry_after_s
        )
    if code == "modeltimeoutexception":
        return ProviderTimeoutError(f"the Bedrock model {model_id!r} did not answer in time: {detail}")
    return ProviderUnavailableError(f"Amazon Bedrock failed ({name}): {detail}")


_ARN = re.compile(r"arn:[^\s,;]+")


def _access_denied_message(detail: str, model_id: str) -> str:
    """What the deployer must grant: the IAM permission, or the model's access in the Bedrock console."""
    if "not authorized to perform" in detail:
        advice = (
            f"the function's role needs bedrock:InvokeModelWithResponseStream on {model_id!r} "
            "(the model's ARN, and for an inference profile the profile's and its models' ARNs)"
        )
    else:
        advice = (
            f"model access to {model_id!r} must be granted to this account and region in the Bedrock console "
            "(Model access), or the role lacks bedrock:InvokeModelWithResponseStream on it"
        )
    # Bedrock's own message names the caller (`arn:aws:sts::<account>:assumed-role/<role>/…`): the account
    # and role are the deployer's to read in the log, not the API client's.
    logger.warning("Amazon Bedrock denied access to %r: %s", model_id, detail)
    return f"Amazon Bedrock denied access: {advice}. Bedrock said: {_ARN.sub('<arn>', detail)}"


def _detail(exc: Exception) -> str:
    """The service's own message, on one line and short."""
    from botocore.exceptions import ClientError

    message = ""
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))
    message = " ".join((message or type(exc).__name__).split())
    if len(message) > _MAX_DETAIL_CHARS:
        message = message[: _MAX_DETAIL_CHARS - 1] + "…"
    return message

"""The OpenAPI document of the HTTP API, from the same msgspec Structs that decode requests.

The handlers read their bodies themselves (for exact 4xx errors), so the framework cannot see them; the
document is written here instead: every request body and query parameter with its constraints, every
status a client can get with the error shape, and the event streams as `text/event-stream` whose events'
JSON is described by the event Structs. Served at `/schema/openapi.json` with no viewer page: a viewer
would load scripts from a CDN, which the page's policy forbids; any OpenAPI viewer can open the URL.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final, get_args

import msgspec

from app import VERSION
from app.http.requests import MAX_QUERY_MESSAGES, OPENAI_UNTYPED_FIELDS, PARTS_BY_ROLE
from app.schemas import (
    CancelAccepted,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ErrorBody,
    Health,
    Message,
    ModelList,
    StreamEvent,
    StreamRequest,
)
from app.schemas_responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputMessage,
    ResponseObject,
    ResponsesRequest,
    ResponseStreamEvent,
)
from app.schemas_ui import UIPART_TYPES, UIChatRequest, UIMessageChunk
from app.settings import Settings

_REF: Final = "#/components/schemas/{name}"
_ERROR: Final = {"$ref": _REF.format(name="ErrorBody")}

# Statuses and what each means here, by operation kind; every one comes with the error body.
_INPUT_ERRORS: Final = {
    "400": "Invalid input: malformed JSON or UTF-8, a wrong type, an unknown field; `param` names it",
    "404": "The model is not served (`model_not_found`)",
    "408": "The request body did not arrive in time (`request_timeout`)",
    "413": "The request body is larger than `MAX_BODY_BYTES`",
    "415": "The body is not `application/json` in UTF-8",
}
_UPSTREAM_ERRORS: Final = {
    "401": "A missing or wrong API key, or the upstream refused our key (`upstream_authentication_failed`)",
    "429": "The upstream's rate limit (with `Retry-After`)",
    "500": "An internal error (the details are in the server's log only)",
    "502": "The upstream is unavailable or failed before the first token, or denied our own access to the "
    "model (`upstream_access_denied`)",
    "503": "The upstream answered that it cannot serve for now (`upstream_not_ready`, with `Retry-After`)",
    "504": "The upstream timed out, or a budget ran out, before the first token",
}
_STREAM_DESCRIPTION: Final = (
    "Server-Sent Events, written as the model produces tokens. Each event's `data` is one line of JSON; "
    "a failure after the first event is the stream's terminal event rather than a status."
)


@cache
def openapi_document(settings: Settings, *, forwards_extra: bool = False) -> bytes:
    """The document for this configuration (whether an API key is required, whether the provider takes
    fields beyond the typed ones)."""
    schemas, components = msgspec.json.schema_components(
        (ChatCompletionRequest, StreamRequest, ChatCompletion, ChatCompletionChunk, StreamEvent, ModelList,
         CancelAccepted, Health, ErrorBody, ResponsesRequest, ResponseObject, ResponseStreamEvent,
         InputMessage, FunctionCallItem, FunctionCallOutputItem, UIChatRequest, UIMessageChunk,
         *UIPART_TYPES),
        ref_template=_REF,
    )  # fmt: skip
    # Unions: msgspec inlines them, the streams refer to them by name.
    components["StreamEvent"] = schemas[4]
    components["ResponseStreamEvent"] = schemas[11]
    components["UIMessageChunk"] = schemas[16]
    # The server's own cap on tokens, which the Structs cannot know.
    for name, field in (
        ("ChatCompletionRequest", "max_tokens"),
        ("ChatCompletionRequest", "max_completion_tokens"),
        ("StreamRequest", "max_tokens"),
        ("ResponsesRequest", "max_output_tokens"),
        ("UIChatRequest", "max_tokens"),
    ):
        _cap(components[name]["properties"][field], settings.max_tokens_limit)
    _describe_what_the_decoder_cannot(components, forwards_extra=forwards_extra)
    # For `GET /v1/stream?messages=`, which takes the body's conversation as JSON, fewer of them.
    components["QueryMessages"] = {
        **components["StreamRequest"]["properties"]["messages"],
        "maxItems": MAX_QUERY_MESSAGES,
    }
    secured = bool(settings.api_keys)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "tokenrelay",
            "version": VERSION,
            "description": "Stream AI model answers token by token: OpenAI-compatible chat completions, "
            "app-native Server-Sent Events, explicit cancels. See the README for each event's meaning.",
        },
        "paths": {
            "/v1/chat/completions": {
                "post": _operation(
                    "chatCompletions",
                    "OpenAI-compatible chat completions",
                    tags=["openai"],
                    parameters=[STREAM_ID_PARAMETER],
                    body="ChatCompletionRequest",
                    ok={
                        "description": "`stream: false`: one `chat.completion`; `stream: true`: "
                        "`chat.completion.chunk` events ending with `data: [DONE]`.",
                        "content": {
                            "application/json": {"schema": _ref("ChatCompletion")},
                            "text/event-stream": _event_stream("ChatCompletionChunk"),
                        },
                    },
                    errors={**_INPUT_ERRORS, **_UPSTREAM_ERRORS},
                    secured=secured,
                )
            },
            "/v1/responses": {
                "post": _operation(
                    "createResponse",
                    "OpenAI Responses API",
                    tags=["openai"],
                    parameters=[STREAM_ID_PARAMETER],
                    body="ResponsesRequest",
                    ok={
                        "description": "`stream: false`: one `response` object; `stream: true`: the "
                        "Responses API's events, each named by its `type` and numbered by `sequence_number`.",
                        "headers": _STREAM_ID_HEADER,
                        "content": {
                            "application/json": {"schema": _ref("ResponseObject")},
                            "text/event-stream": _event_stream("ResponseStreamEvent"),
                        },
                    },
                    errors={
                        **_INPUT_ERRORS,
                        "400": _INPUT_ERRORS["400"] + "; server-side state (`store: true`, "
                        "`previous_response_id`, `conversation`, `item_reference` items) is "
                        "`unsupported_parameter`",
                        **_UPSTREAM_ERRORS,
                    },
                    secured=secured,
                )
            },
            "/api/chat": {
                "post": _operation(
                    "uiChat",
                    "The Vercel AI SDK's UI message stream (useChat)",
                    tags=["ai-sdk"],
                    parameters=[STREAM_ID_PARAMETER],
                    body="UIChatRequest",
                    ok={
                        "description": "UI message chunks (`start`, `start-step`, `text-*`, `tool-input-*`, "
                        "`finish-step`, `finish`; `error` or `abort`) ending with `data: [DONE]`.",
                        "headers": {
                            **_STREAM_ID_HEADER,
                            "x-vercel-ai-ui-message-stream": {
                                "description": "The protocol's version",
                                "schema": {"const": "v1"},
                            },
                        },
                        "content": {"text/event-stream": _event_stream("UIMessageChunk")},
                    },
                    errors={**_INPUT_ERRORS, **_UPSTREAM_ERRORS},
                    secured=secured,
                )
            },
            "/v1/models": {
                "get": _operation(
                    "listModels",
                    "The models this service streams from",
                    tags=["openai"],
                    ok=_json_ok("ModelList", "The model ids"),
                    errors=_auth_errors(secured),
                    secured=secured,
                )
            },
            "/v1/stream": {
                "get": _operation(
                    "streamGet",
                    "Stream an answer as named SSE events (EventSource)",
                    tags=["stream"],
                    parameters=_stream_query(settings.max_tokens_limit),
                    ok=_native_stream_ok(),
                    errors={
                        **{
                            code: text
                            for code, text in _INPUT_ERRORS.items()
                            if code not in ("408", "413", "415")
                        },
                        "400": "A missing or invalid query parameter, or an unknown one; `param` names it",
                        "403": "A page of another origin (`cross_origin`)",
                        **_UPSTREAM_ERRORS,
                    },
                    secured=secured,
                ),
                "post": _operation(
                    "streamPost",
                    "Stream an answer as named SSE events (fetch)",
                    tags=["stream"],
                    parameters=[STREAM_ID_PARAMETER],
                    body="StreamRequest",
                    ok=_native_stream_ok(),
                    errors={**_INPUT_ERRORS, **_UPSTREAM_ERRORS},
                    secured=secured,
                ),
            },
            "/v1/streams/{stream_id}/cancel": {
                "post": _operation(
                    "cancelStream",
                    "Stop a running stream",
                    tags=["stream"],
                    parameters=[_STREAM_ID_PARAMETER],
                    ok=_json_ok("CancelAccepted", "The stream stops at its next chunk", status="202"),
                    errors={
                        **_auth_errors(secured),
                        "404": "No running stream with this id for this API key (`stream_not_found`)",
                    },
                    secured=secured,
                )
            },
            "/v1/streams/{stream_id}/events": {
                "get": _operation(
                    "streamEvents",
                    "Resume a resumable stream after the last event received",
                    tags=["stream"],
                    parameters=[
                        _STREAM_ID_PARAMETER,
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "description": "The id of the last event received (EventSource sends it itself)",
                            "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        },
                        {
                            "name": "last_event_id",
                            "in": "query",
                            "required": False,
                            "description": "The same, for clients that cannot set headers (the header "
                            "wins when both are sent: EventSource adds it on its own reconnects)",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    ok={
                        "description": "The stream's events after that id, in its own dialect and with its "
                        "ids, then the live ones to its terminal event.",
                        "headers": _STREAM_ID_HEADER,
                        "content": {"text/event-stream": _event_stream_of_any_dialect()},
                    },
                    errors={
                        **_auth_errors(secured),
                        "400": "A last event id that is not a whole number",
                        "404": "No resumable stream with this id for this API key, or it expired "
                        "(`stream_not_found`)",
                        "503": "The stream log cannot be read now (`stream_log_unavailable`)",
                    },
                    secured=secured,
                )
            },
            "/api/chat/{chat_id}/stream": {
                "get": _operation(
                    "resumeUiChat",
                    "Resume a chat's stream (useChat `resume: true`)",
                    tags=["ai-sdk"],
                    parameters=[
                        {
                            "name": "chat_id",
                            "in": "path",
                            "required": True,
                            "description": "The `id` of the useChat request",
                            "schema": {"type": "string"},
                        }
                    ],
                    ok={
                        "status": "200",
                        "description": "The chat's stream still being produced, from its start (204, no "
                        "content, when the chat has none).",
                        "headers": _STREAM_ID_HEADER,
                        "content": {"text/event-stream": _event_stream("UIMessageChunk")},
                    },
                    errors={**_auth_errors(secured), "503": "The stream log cannot be read now"},
                    no_content="The chat has no stream being produced",
                    secured=secured,
                )
            },
            "/healthz": {
                "get": _operation(
                    "healthz", "Liveness probe", tags=["ops"], ok=_json_ok("Health", "Alive"), errors={}
                )
            },
        },
        "components": {"schemas": components},
    }
    if settings.metrics:
        document["paths"]["/metrics"] = {
            "get": _operation(
                "metrics",
                "Stream metrics in the Prometheus text format",
                tags=["ops"],
                ok={
                    "description": "Every metric (README, Observability)",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                errors=_auth_errors(secured),
                secured=secured,
            )
        }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return msgspec.json.encode(document)


# A tagged Struct decoded on its own (not as one branch of a union) takes its tag as optional: the one
# kind there is needs no naming, so `{"function": {...}}` is a tool. The schemas say so too.
_SOLE_KIND_TAGGED = ("Tool", "NamedToolChoice", "EchoedToolCall", "FunctionTool", "FunctionToolChoice")


def _describe_what_the_decoder_cannot(components: dict[str, Any], *, forwards_extra: bool) -> None:
    for name in _SOLE_KIND_TAGGED:
        schema = components[name]
        schema["required"] = [field for field in schema.get("required", []) if field != "type"]
    # The parts of a role are checked after decoding (`to_chat_message`): its schema is narrowed here.
    for message in get_args(Message):
        parts = PARTS_BY_ROLE[message.__struct_config__.tag]
        name = message.__name__
        content = components[name]["properties"]["content"]
        part_list = {"type": "array", "items": {"anyOf": [_ref(part.__name__) for part in parts]}}
        branches = [{"type": "string"}, part_list]
        if any(branch.get("type") == "null" for branch in content.get("anyOf", [])):
            branches.append({"type": "null"})
        components[name]["properties"]["content"] = {"anyOf": branches}
    _describe_responses_input(components)
    _describe_ui_parts(components)
    if not forwards_extra:
        # Nobody to forward other fields to: the standard names the provider ignores, and nothing else.
        request = components["ChatCompletionRequest"]
        for field in sorted(OPENAI_UNTYPED_FIELDS):
            request["properties"].setdefault(field, {"description": "Accepted and ignored by this provider"})
        request["additionalProperties"] = False


def _describe_responses_input(components: dict[str, Any]) -> None:
    """`POST /v1/responses` as `app.http.responses_input` reads it: its items one by one, by role.

    The Struct takes `input` as a list of anything (a message item may leave out its `type`, so the items
    are decoded one by one); the state-keeping fields are typed so that they can be refused by name.
    """
    request = components["ResponsesRequest"]["properties"]
    items = {"anyOf": [_ref(name) for name in ("InputMessage", "FunctionCallItem", "FunctionCallOutputItem")]}
    request["input"] = {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": items}]}
    for field in ("store", "background"):
        request[field] = {
            "description": "Server-side state is not kept: false, null or absent",
            "anyOf": [{"const": False}, {"type": "null"}],
        }
    for field in ("previous_response_id", "conversation"):
        request[field] = {"description": "Server-side state is not kept: refused (400)", "type": "null"}
    # What each role may carry; an image is by URL (or data: URL), a file by its bytes or an upload id.
    message = components["InputMessage"]
    components["InputImage"]["required"] = ["image_url"]
    components["InputImage"]["properties"].pop("file_id")
    components["InputFile"]["properties"].pop("file_url")
    part = {
        name: _ref(name)
        for name in ("InputText", "InputImage", "InputFile", "OutputTextPart", "RefusalContent")
    }
    by_role = {
        ("system", "developer"): ["InputText"],
        ("user",): ["InputText", "InputImage", "InputFile"],
        ("assistant",): ["OutputTextPart", "RefusalContent", "InputText"],
    }
    variants = []
    for roles, kinds in by_role.items():
        variant = {**message, "properties": dict(message["properties"])}
        variant["properties"]["role"] = {"enum": list(roles)}
        parts = {"type": "array", "items": {"anyOf": [part[kind] for kind in kinds]}}
        variant["properties"]["content"] = {"anyOf": [{"type": "string"}, parts]}
        variants.append(variant)
    components["InputMessage"] = {"anyOf": variants, "title": message.get("title", "InputMessage")}
    output = components["FunctionCallOutputItem"]["properties"]
    output["output"] = {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"anyOf": [part["InputText"], part["InputImage"], part["InputFile"]]}},
        ]
    }


def _describe_ui_parts(components: dict[str, Any]) -> None:
    """A `UIMessage`'s parts, which `app.schemas_ui.ui_part` decodes one by one, by their `type`."""
    parts = components["UIMessage"]["properties"]["parts"]
    parts["items"] = {"anyOf": [_ref(part.__name__) for part in UIPART_TYPES]}
    for name, prefix in (("ToolUIPart", "tool-"), ("DataUIPart", "data-")):
        components[name]["properties"]["type"] = {"type": "string", "pattern": f"^{prefix}"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _operation(
    operation_id: str,
    summary: str,
    *,
    tags: list[str],
    ok: dict[str, Any],
    errors: dict[str, str],
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    secured: bool = False,
    no_content: str | None = None,
) -> dict[str, Any]:
    status = ok.pop("status", "200")
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": tags,
        "responses": {
            status: ok,
            **{
                code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
                for code, text in sorted(errors.items())
            },
        },
    }
    if no_content is not None:
        operation["responses"]["204"] = {"description": no_content}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


def _json_ok(schema: str, description: str, *, status: str = "200") -> dict[str, Any]:
    return {
        "status": status,
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _event_stream(data_schema: str) -> dict[str, Any]:
    # Each event, as OpenAPI 3.2 describes a stream's items and as tools such as schemathesis check them:
    # its `event` name, its `id`, and its `data`, one line of JSON of the given schema (`[DONE]` on chat).
    event = {
        "type": "object",
        "description": _STREAM_DESCRIPTION,
        "properties": {
            "event": {"type": "string"},
            "id": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _ref(data_schema),
            },
        },
        "required": ["data"],
    }
    return {"schema": event}


def _event_stream_of_any_dialect() -> dict[str, Any]:
    """A resumed stream's events: those of the dialect it was started in."""
    stream = _event_stream("StreamEvent")
    data = stream["schema"]["properties"]["data"]
    data["contentSchema"] = {
        "anyOf": [
            _ref(name)
            for name in ("StreamEvent", "ChatCompletionChunk", "ResponseStreamEvent", "UIMessageChunk")
        ]
    }
    return stream


def _native_stream_ok() -> dict[str, Any]:
    return {
        "description": "Named events `start`, `delta`..., then `done` or `error`, each with an `id:`; the "
        "`event:` name is the `type` of the JSON data. `: ping` comments keep an idle stream open.",
        "headers": _STREAM_ID_HEADER,
        "content": {"text/event-stream": _event_stream("StreamEvent")},
    }


_STREAM_ID_PARAMETER: Final = {
    "name": "stream_id",
    "in": "path",
    "required": True,
    "description": "From the `start` event or the `X-Stream-Id` header",
    "schema": {"type": "string"},
}
_STREAM_ID_HEADER: Final = {
    "X-Stream-Id": {"description": "For `POST /v1/streams/{id}/cancel`", "schema": {"type": "string"}}
}


def _auth_errors(secured: bool) -> dict[str, str]:
    return {"401": "A missing or wrong API key"} if secured else {}


def _cap(schema: dict[str, Any], maximum: int) -> None:
    """Give the integer branch of a property's schema (`integer | null`) its maximum."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "integer":
            branch["maximum"] = maximum


def _stream_query(max_tokens_limit: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "prompt",
            "in": "query",
            "required": False,
            "description": "The user's message; required unless `messages` is given",
            "schema": {"type": "string", "minLength": 1},
        },
        {
            "name": "messages",
            "in": "query",
            "required": False,
            "description": "A conversation instead of `prompt`: the `messages` of `POST /v1/stream`, as JSON",
            "content": {"application/json": {"schema": _ref("QueryMessages")}},
        },
        {
            "name": "model",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 256},
        },
        {
            "name": "max_tokens",
            "in": "query",
            "required": False,
            "description": "A positive integer in ASCII digits, at most the server's MAX_TOKENS_LIMIT",
            "schema": {"type": "integer", "minimum": 1, "maximum": max_tokens_limit},
        },
        {
            "name": "resumable",
            "in": "query",
            "required": False,
            "description": "`true`: log the stream's events, to resume it from `/v1/streams/{id}/events`",
            "schema": {"type": "boolean"},
        },
        {
            "name": "mock",
            "in": "query",
            "required": False,
            "description": "The mock provider's directives, as JSON (see the `MockDirectives` schema)",
            "content": {"application/json": {"schema": _ref("MockDirectives")}},
        },
        {**STREAM_ID_PARAMETER, "name": "stream_id", "in": "query"},
    ]


# The client's own stream id (`app.http.sessions.chosen_stream_id`), on every endpoint that starts a stream.
STREAM_ID_PARAMETER: dict[str, Any] = {
    "name": "X-Stream-Id",
    "in": "header",
    "required": False,
    "description": "The stream's id, chosen by the client (random, 16 to 128 of A-Z a-z 0-9 - _), so that "
    "`POST /v1/streams/{id}/cancel` can stop it before its first token; by default the server picks one",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$"},
}

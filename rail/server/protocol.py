"""The OpenAI shapes ``rail serve`` speaks: requests, responses, stream chunks and the one error object.

Requests are validated strictly, as OpenAI's API does: a wrong type is refused (``"16"`` is not an
integer), and so is a field this server does not know — ``Unrecognized request argument supplied: …``,
OpenAI's own wording — rather than ignored, because a silently ignored parameter (``logprobs``, ``n``,
``presence_penalty``) would make a client believe it got what it asked for. OpenAI parameters rail does
not implement are accepted only with their neutral value (``n: 1``, ``presence_penalty: 0``,
``echo: false`` …), so clients that always send them keep working.

Every response carries a ``rail`` object (:class:`RailInfo`): the verdict, and for each prompt its
violations with their licence clauses, the disclosure applied, the provenance (with its signature) and
the audit record's request id and sequence number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ApiError",
    "AuditRef",
    "ChatChoice",
    "ChatChunk",
    "ChatChunkChoice",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatDelta",
    "ChatMessage",
    "ChatReply",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionRequest",
    "CompletionResponse",
    "DisclosureInfo",
    "ErrorBody",
    "ErrorResponse",
    "ModelEntry",
    "ModelList",
    "ModerationRequest",
    "ModerationResponse",
    "ModerationResult",
    "PolicyRef",
    "RailInfo",
    "RailResult",
    "Usage",
    "parse_request",
]


class ApiError(Exception):
    """An HTTP error answered as OpenAI's error object: status, message, type, code, param, headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        rail: RailInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.rail = rail

    def body(self) -> dict[str, Any]:
        """Return the JSON body: ``{"error": {message, type, param, code[, rail]}}``."""
        error = ErrorBody(
            message=self.message, type=self.type, param=self.param, code=self.code, rail=self.rail
        )
        body = ErrorResponse(error=error).model_dump()
        if self.rail is None:
            del body["error"]["rail"]
        return body


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# OpenAI parameters rail does not implement, with the one value that means "not used".
_NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "n": (1, None),
    "best_of": (1, None),
    "echo": (False, None),
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "presence_penalty": (0, 0.0, None),
    "frequency_penalty": (0, 0.0, None),
    "suffix": (None, ""),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None, False, True),
}


def _neutral_only(values: Mapping[str, Any], fields: Sequence[str]) -> None:
    for name in fields:
        value = values.get(name)
        if name in values and not any(value == ok and type(value) is type(ok) for ok in _NEUTRAL[name]):
            raise ValueError(f"unsupported:{name}")


class StreamOptions(_Request):
    include_usage: bool = False


class CompletionRequest(_Request):
    """POST /v1/completions."""

    model: str | None = None
    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    n: int | None = None
    best_of: int | None = None
    echo: bool | None = None
    logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    suffix: str | None = None
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _neutral(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            _neutral_only(
                values,
                (
                    "n",
                    "best_of",
                    "echo",
                    "logprobs",
                    "presence_penalty",
                    "frequency_penalty",
                    "suffix",
                    "logit_bias",
                ),
            )
        return values

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ResponseFormat(_Request):
    type: Literal["text"]


class ChatCompletionRequest(_Request):
    """POST /v1/chat/completions."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[Any] | None = None
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _neutral(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            _neutral_only(
                values,
                (
                    "n",
                    "logprobs",
                    "top_logprobs",
                    "presence_penalty",
                    "frequency_penalty",
                    "logit_bias",
                    "tools",
                    "tool_choice",
                    "parallel_tool_calls",
                ),
            )
        return values

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class ModerationRequest(_Request):
    """POST /v1/moderations."""

    input: str | list[str]
    model: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# What a field holds, for the one-line message when a value has the wrong type.
_EXPECTED = {
    "prompt": "a string or a list of strings (token ids are not accepted)",
    "stop": "a string or a list of strings",
    "input": "a string or a list of strings",
    "content": 'a string or a list of {"type": "text", "text": …} parts',
}
_UNSUPPORTED_HINT = {
    "n": "rail answers one choice per prompt: send n=1 or leave it out",
    "best_of": "send best_of=1 or leave it out",
    "tools": "tool calls are not supported: leave tools out",
    "tool_choice": "tool calls are not supported: leave tool_choice out",
}


def _param(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            "[" in part
            or part in ("str", "int", "float", "bool", "list", "dict")
            or part.startswith(
                ("function-", "literal[", "TextPart", "StreamOptions", "ResponseFormat", "ChatMessage")
            )
        ):
            break  # a union branch, not a field
        else:
            out += f".{part}" if out else part
    return out


def _message(exc: ValidationError) -> tuple[str, str | None]:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    param = _param(loc) or None
    text = str(first.get("msg", ""))
    if first["type"] == "value_error" and "unsupported:" in text:
        name = text.split("unsupported:", 1)[1]
        hint = _UNSUPPORTED_HINT.get(name, f"leave {name} out or send its default")
        return f"'{name}' is not supported by this server with that value: {hint}", name
    if first["type"] == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if first["type"] == "missing":
        return f"Missing required parameter: '{param}'", param
    field = (param or "").rsplit(".", 1)[-1].split("[")[0]
    same_field = [e for e in errors if _param(tuple(e["loc"])) == param]
    if field in _EXPECTED and (len(same_field) > 1 or first["type"].endswith("_type")):
        return f"'{param}' must be {_EXPECTED[field]}", param
    return f"'{param}': {text[0].lower() + text[1:] if text else 'invalid value'}", param


def parse_request(model: type[_Request], data: Any) -> Any:
    """Validate a decoded JSON body against ``model``; raise ApiError 400 naming the parameter at fault."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = _message(exc)
        raise ApiError(400, message, param=param) from None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class PolicyRef(BaseModel):
    id: str
    sha256: str


class DisclosureInfo(BaseModel):
    """The machine-generated notice of the deployment, and whether this output carries it."""

    mode: str
    position: str
    applied: bool


class AuditRef(BaseModel):
    """Where the request's audit record is: its request id and sequence number in the log."""

    request_id: str
    seq: int | None


class RailResult(BaseModel):
    """What the gate decided for one prompt (one choice, one moderation input)."""

    index: int
    verdict: str
    violations: list[dict[str, Any]]
    disclosure: DisclosureInfo | None
    provenance: dict[str, Any] | None
    audit: AuditRef
    finish_reason: str | None = None
    cancelled: bool = False


class RailInfo(BaseModel):
    """The ``rail`` object of every gated response."""

    verdict: str
    deployment: str
    policy: PolicyRef
    results: list[RailResult]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    rail: RailInfo | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None
    rail: RailInfo


class CompletionChunk(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    rail: RailInfo | None = None


class ChatReply(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatReply
    logprobs: None = None
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None
    rail: RailInfo


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: None = None
    finish_reason: str | None


class ChatChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    rail: RailInfo | None = None


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]
    rail: RailInfo


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    rail: dict[str, Any]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]

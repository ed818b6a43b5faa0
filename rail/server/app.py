"""The HTTP face of the gate: OpenAI-shaped routes on Starlette, one key check in front of all of them.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``POST /v1/moderations``,
``GET /v1/models``, ``GET /ready``, ``GET /metrics`` — all behind the API key — and ``GET /health``,
the one open route (liveness only; it says nothing about the model or the log). The key check is ASGI
middleware around the whole application, so a route added later cannot be left open by mistake, and an
unknown path without a key is a 401 like any other (nobody learns which routes exist).

A refused prompt is HTTP 400 with ``code: content_filter`` naming the clause (the openai client raises
``BadRequestError``; ``exc.body["rail"]`` holds the verdict); output cut by a check is HTTP 200 with
``finish_reason: content_filter`` and only the text that passed. Streams are Server-Sent Events
(``data: {chunk}`` … ``data: [DONE]``); a failure after the stream started is sent as a final
``data: {"error": …}`` event without ``[DONE]``, which the openai client raises as ``APIError``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rail.errors import ConfigError, RailError
from rail.gate import GateResult
from rail.jsonio import loads
from rail.policy.decision import Stage
from rail.server.auth import bearer_token
from rail.server.metrics import CONTENT_TYPE_LATEST
from rail.server.moderation import moderate
from rail.server.protocol import (
    ApiError,
    ChatChoice,
    ChatChunk,
    ChatChunkChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatReply,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    ModelEntry,
    ModelList,
    ModerationRequest,
    ModerationResponse,
    RailInfo,
    Usage,
    parse_request,
)
from rail.server.service import (
    Service,
    StreamItem,
    StreamRun,
    Tenant,
    api_error,
    finish_reason,
    input_blocked,
)

__all__ = ["DrainingServer", "create_app"]

log = logging.getLogger("rail.server")

_OPEN = "/health"
_ENDPOINTS = frozenset(
    {
        "/health",
        "/ready",
        "/metrics",
        "/v1/models",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/moderations",
    }
)
_UNAUTHORIZED = ApiError(
    401,
    "missing or invalid API key (send it as 'Authorization: Bearer KEY')",
    code="invalid_api_key",
    headers={"WWW-Authenticate": "Bearer"},
)


def _json_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


class KeyCheck:
    """ASGI middleware: every request but ``GET /health`` needs a known API key; counts every answer."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in _ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if path == _OPEN and scope["method"] in ("GET", "HEAD"):
                await self.app(scope, receive, counted)
                return
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            tenant = self.service.keyring.find(bearer_token(header))
            if tenant is None:
                await _json_response(_UNAUTHORIZED)(scope, receive, counted)
                return
            if self.service.draining and endpoint not in ("/ready", "/metrics"):
                refusal = ApiError(
                    503, "the server is shutting down", type="server_error", code="shutting_down"
                )
                await _json_response(refusal)(scope, receive, counted)
                return
            scope["rail.tenant"] = tenant
            await self.app(scope, receive, counted)
        finally:
            metrics = self.service.metrics
            metrics.responses.labels(endpoint, str(status)).inc()
            metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _tenant(request: Request) -> Tenant:
    tenant: Tenant = request.scope["rail.tenant"]
    return tenant


async def _read_json(request: Request, limit: int) -> Any:
    """Read the body (at most ``limit`` bytes, whatever Content-Length says) and parse it as JSON."""
    declared = request.headers.get("content-length")
    too_large = ApiError(
        413,
        f"the request body is larger than this server's limit of {limit:,} bytes",
        code="request_too_large",
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the request body is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        return loads(text, source="request body")
    except ConfigError as exc:
        raise ApiError(400, f"We could not parse the JSON body of your request: {exc.detail}") from None


def _usage(results: Sequence[GateResult]) -> Usage:
    prompt = sum(r.record.input_tokens or 0 for r in results)
    completion = sum(r.record.output_tokens or 0 for r in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _sse(payload: Any) -> str:
    data = payload.model_dump() if hasattr(payload, "model_dump") else payload
    return "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n\n"


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _ready(request: Request) -> Response:
    service = _service(request)
    reason = service.not_ready()
    if reason is not None:
        return _json_response(ApiError(503, f"not ready: {reason}", type="server_error", code="not_ready"))
    return JSONResponse({"status": "ready", "model": service.model_name})


async def _metrics(request: Request) -> Response:
    return Response(_service(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _models(request: Request) -> Response:
    service = _service(request)
    info = service.model.info
    entry = ModelEntry(
        id=service.model_name,
        created=service.started,
        owned_by="rail",
        rail={
            "provider": info.provider,
            "context_length": info.context_length,
            "licence": info.licence or _tenant(request).gate.policy.licence,
            "deployment": _tenant(request).declaration.name,
        },
    )
    return JSONResponse(ModelList(data=[entry]).model_dump())


class _CompletionShape:
    """Stream chunks of /v1/completions."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.model, self.created = f"cmpl-{request_id}", model, int(time.time())

    def start(self) -> list[str]:
        return []

    def delta(self, text: str) -> str:
        choice = CompletionChoice(index=0, text=text, finish_reason=None)
        return _sse(CompletionChunk(id=self.id, created=self.created, model=self.model, choices=[choice]))

    def final(self, reason: str, rail: RailInfo) -> str:
        choice = CompletionChoice(index=0, text="", finish_reason=reason)
        return _sse(
            CompletionChunk(id=self.id, created=self.created, model=self.model, choices=[choice], rail=rail)
        )

    def usage(self, usage: Usage) -> str:
        return _sse(
            CompletionChunk(id=self.id, created=self.created, model=self.model, choices=[], usage=usage)
        )


class _ChatShape(_CompletionShape):
    """Stream chunks of /v1/chat/completions."""

    def __init__(self, request_id: str, model: str) -> None:
        super().__init__(request_id, model)
        self.id = f"chatcmpl-{request_id}"

    def _chunk(self, delta: ChatDelta, reason: str | None, rail: RailInfo | None = None) -> str:
        choice = ChatChunkChoice(index=0, delta=delta, finish_reason=reason)
        return _sse(
            ChatChunk(id=self.id, created=self.created, model=self.model, choices=[choice], rail=rail)
        )

    def start(self) -> list[str]:
        return [self._chunk(ChatDelta(role="assistant", content=""), None)]

    def delta(self, text: str) -> str:
        return self._chunk(ChatDelta(content=text), None)

    def final(self, reason: str, rail: RailInfo) -> str:
        return self._chunk(ChatDelta(), reason, rail)

    def usage(self, usage: Usage) -> str:
        return _sse(ChatChunk(id=self.id, created=self.created, model=self.model, choices=[], usage=usage))


async def _stream(
    service: Service,
    tenant: Tenant,
    prompt: str,
    params: dict[str, Any],
    tags: dict[str, Any],
    *,
    shape: type[_CompletionShape],
    include_usage: bool,
    param: str,
) -> Response:
    run = await service.open_stream(tenant, prompt, params, tags)
    try:
        first = await run.next()
    except TimeoutError:
        run.close(cancel=True)
        raise service.timed_out() from None
    except BaseException:
        run.close(cancel=True)
        raise
    if first.kind == "error":
        run.close(cancel=False)
        raise await service.failure(first.error or RuntimeError("the stream failed"))
    if first.kind == "end" and first.result is not None and input_blocked(first.result):
        # The prompt was refused before anything was streamed: answer 400 like a plain request.
        run.close(cancel=False)
        try:
            seqs = await service.commits.committed([first.result.record.request_id])
        except RailError as exc:
            raise api_error(exc) from None
        refusal = service.refusal(tenant, [first.result], seqs, param)
        assert refusal is not None
        raise refusal
    # The gate names its request when the stream ends; the chunks need an id from the start.
    events = _events(service, tenant, run, first, shape(uuid.uuid4().hex, service.model_name), include_usage)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    service: Service,
    tenant: Tenant,
    run: StreamRun,
    first: StreamItem,
    shape: _CompletionShape,
    include_usage: bool,
) -> AsyncIterator[str]:
    finished = False
    item = first
    try:
        for piece in shape.start():
            yield piece
        while item.kind == "chunk":
            yield shape.delta(item.text)
            item = await run.next()
        if item.kind == "error" or item.result is None:
            raise item.error or RuntimeError("the stream ended without a result")
        result = item.result
        seqs = await asyncio.wait_for(service.commits.committed([result.record.request_id]), run.remaining())
        run.close(cancel=False)
        finished = True
        yield shape.final(finish_reason(result), service.rail_info(tenant, [result], seqs))
        if include_usage:
            yield shape.usage(_usage([result]))
        yield "data: [DONE]\n\n"
    except TimeoutError:
        run.close(cancel=True)
        finished = True
        yield _sse(service.timed_out().body())
    except Exception as exc:
        run.close(cancel=False)
        finished = True
        yield _sse((await service.failure(exc)).body())
    finally:
        if not finished:  # the client went away (or the server is stopping): stop generating
            run.close(cancel=True)


async def _completions(request: Request) -> Response:
    service, tenant = _service(request), _tenant(request)
    req: CompletionRequest = parse_request(
        CompletionRequest, await _read_json(request, service.limits.max_body_bytes)
    )
    service.check_model(req.model)
    prompts = req.prompts()
    service.check_texts(prompts, "prompt")
    params = service.params(
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        seed=req.seed,
        default_max_tokens=service.limits.default_max_tokens,
    )
    tags = service.tags(tenant, "/v1/completions", req.user)
    if req.stream:
        if len(prompts) != 1:
            raise ApiError(400, "streaming takes one prompt per request", param="prompt")
        include = bool(req.stream_options and req.stream_options.include_usage)
        return await _stream(
            service,
            tenant,
            prompts[0],
            params,
            tags,
            shape=_CompletionShape,
            include_usage=include,
            param="prompt",
        )
    results, seqs = await service.generate(tenant, prompts, params, tags)
    refusal = service.refusal(tenant, results, seqs, "prompt")
    if refusal is not None:
        raise refusal
    choices = [
        CompletionChoice(index=i, text=r.final_text or "", finish_reason=finish_reason(r))
        for i, r in enumerate(results)
    ]
    response = CompletionResponse(
        id=f"cmpl-{results[0].record.request_id}",
        created=int(time.time()),
        model=service.model_name,
        choices=choices,
        usage=_usage(results),
        rail=service.rail_info(tenant, results, seqs),
    )
    return JSONResponse(response.model_dump())


async def _chat(request: Request) -> Response:
    service, tenant = _service(request), _tenant(request)
    req: ChatCompletionRequest = parse_request(
        ChatCompletionRequest, await _read_json(request, service.limits.max_body_bytes)
    )
    service.check_model(req.model)
    for index, message in enumerate(req.messages):
        service.check_texts([message.text()], f"messages[{index}].content")
    try:
        prompt = service.chat.render([{"role": m.role, "content": m.text()} for m in req.messages])
    except ConfigError as exc:
        raise ApiError(
            400, f"the conversation cannot be turned into a prompt: {exc.detail}", param="messages"
        ) from None
    service.check_texts([prompt], "messages")
    params = service.params(
        max_tokens=req.requested_max_tokens(),
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        seed=req.seed,
        default_max_tokens=service.limits.max_tokens,
        extra_stop=service.chat.stop,
    )
    tags = service.tags(tenant, "/v1/chat/completions", req.user)
    if req.stream:
        include = bool(req.stream_options and req.stream_options.include_usage)
        return await _stream(
            service, tenant, prompt, params, tags, shape=_ChatShape, include_usage=include, param="messages"
        )
    results, seqs = await service.generate(tenant, [prompt], params, tags)
    refusal = service.refusal(tenant, results, seqs, "messages")
    if refusal is not None:
        raise refusal
    result = results[0]
    choice = ChatChoice(
        index=0, message=ChatReply(content=result.final_text), finish_reason=finish_reason(result)
    )
    response = ChatCompletionResponse(
        id=f"chatcmpl-{result.record.request_id}",
        created=int(time.time()),
        model=service.model_name,
        choices=[choice],
        usage=_usage(results),
        rail=service.rail_info(tenant, results, seqs),
    )
    return JSONResponse(response.model_dump())


async def _moderations(request: Request) -> Response:
    service, tenant = _service(request), _tenant(request)
    req: ModerationRequest = parse_request(
        ModerationRequest, await _read_json(request, service.limits.max_body_bytes)
    )
    texts = req.texts()
    service.check_texts(texts, "input")
    gate = tenant.gate
    tags = service.tags(tenant, "/v1/moderations", None)

    async def work() -> tuple[ModerationResponse, list[str]]:
        async with service.admission.slot():
            screened = await service.run_in_pool(lambda: gate.screening.screen(texts, Stage.INPUT))
            pairs = moderate(texts, screened, gate.policy, deployment=gate.declaration.name, tags=tags)
            for _, record in pairs:
                service.commits.emit(record)
            ids = [record.request_id for _, record in pairs]
            seqs = await service.commits.committed(ids)
        verdicts = [record.verdict for _, record in pairs]
        for s in screened:
            service.metrics.requests.labels("/v1/moderations", s.decision.verdict.value).inc()
            service.metrics.observe_violations(s.decision.violations)
        items = [
            service.rail_item(index, record.verdict, s.decision.violations, record.request_id, seq)
            for index, ((_, record), s, seq) in enumerate(zip(pairs, screened, seqs, strict=True))
        ]
        rail = service.summary(tenant, verdicts, items)
        response = ModerationResponse(
            id=f"modr-{ids[0]}", model=gate.policy.id, results=[result for result, _ in pairs], rail=rail
        )
        return response, ids

    try:
        response, _ = await asyncio.wait_for(work(), service.limits.request_timeout_s)
    except TimeoutError:
        raise service.timed_out() from None
    except RailError as exc:
        raise api_error(exc) from None
    return JSONResponse(response.model_dump())


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json_response(exc)


async def _on_rail_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RailError)
    return _json_response(api_error(exc))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = ApiError(
            405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed"
        )
    elif exc.status_code == 404:
        error = ApiError(404, f"no route {request.url.path} on this server", code="not_found")
    else:
        error = ApiError(exc.status_code, str(exc.detail))
    return _json_response(error)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return _json_response(ApiError(500, "the request failed inside the server", type="server_error"))


def create_app(service: Service) -> Starlette:
    """Return the ASGI application serving ``service``; its shutdown drains work and closes the audit log."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await service.close()

    routes = [
        Route("/health", _health, methods=["GET"]),
        Route("/ready", _ready, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/v1/completions", _completions, methods=["POST"]),
        Route("/v1/chat/completions", _chat, methods=["POST"]),
        Route("/v1/moderations", _moderations, methods=["POST"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _on_api_error,
        RailError: _on_rail_error,
        HTTPException: _on_http_error,
        Exception: _on_unexpected,
    }
    app = Starlette(
        routes=routes,
        middleware=[Middleware(KeyCheck, service=service)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.service = service
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn's server, marking the service as draining the moment a stop signal arrives.

    uvicorn then stops accepting connections and waits for the requests in flight; meanwhile ``/ready``
    answers 503 and a new request on a connection still open gets 503 ``shutting_down``.
    """

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.draining = True
        super().handle_exit(sig, frame)

"""A stand-in upstream: the smallest OpenAI-compatible completion server, written for these tests.

It is not a real engine (see tests/server/test_upstream_engine.py for llama.cpp). It answers
``/v1/models`` and ``/v1/completions`` (plain and streamed, ``data: {...}`` events then ``data: [DONE]``)
with predictable text, and misbehaves on request, by a directive in the prompt:

- ``[say:TEXT]`` answers exactly TEXT (streamed one word at a time);
- ``[fail]`` answers HTTP 500; ``[garbage]`` answers 200 with a body that is not JSON;
- ``[slow]`` waits 3 s before answering (longer than the tests' upstream timeout);
- ``[drip]`` streams a harbour sentence every 50 ms until max_tokens or until the client goes away;
- ``[break]`` streams one sentence, then an event that is not JSON.

Otherwise the text is ``word0. word1. …`` with one word per token, cut at the request's stop sequences.
``GET /stand-in/stats`` tells how many streams the client closed early and echoes the last request body.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "stand-in-bloom"
CONTEXT = 256


class Stats:
    def __init__(self) -> None:
        self.cancelled = 0
        self.completed = 0
        self.last: dict[str, Any] = {}


def _words(prompt: str, max_tokens: int) -> list[str]:
    said = re.search(r"\[say:(.*?)\]", prompt, flags=re.S)
    if said:
        return [w + " " for w in said.group(1).split(" ")][:max_tokens]
    return [f"word{i}. " for i in range(max_tokens)]


def _cut(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def build_app(stats: Stats) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "owned_by": "stand-in", "max_model_len": CONTEXT}],
            }
        )

    async def stats_route(request: Request) -> Response:
        return JSONResponse({"cancelled": stats.cancelled, "completed": stats.completed, "last": stats.last})

    async def completions(request: Request) -> Response:
        body = await request.json()
        stats.last = body
        prompt = body["prompt"]
        max_tokens = int(body.get("max_tokens", 16))
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        if "[fail]" in prompt:
            return JSONResponse(
                {"error": {"message": "stand-in failure", "type": "server_error"}}, status_code=500
            )
        if "[garbage]" in prompt:
            return PlainTextResponse("this is not JSON")
        if "[slow]" in prompt:
            await asyncio.sleep(3)
        base = {
            "id": "cmpl-standin",
            "object": "text_completion",
            "created": int(time.time()),
            "model": MODEL,
        }
        if not body.get("stream"):
            text, stopped = _cut("".join(_words(prompt, max_tokens)), stop)
            stats.completed += 1
            return JSONResponse(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "text": text,
                            "logprobs": None,
                            "finish_reason": "stop" if stopped else "length",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": len(prompt.split()),
                        "completion_tokens": max_tokens,
                        "total_tokens": len(prompt.split()) + max_tokens,
                    },
                }
            )

        async def events() -> Any:
            finished = False
            reason = "length"
            try:
                if "[drip]" in prompt:
                    for i in range(max_tokens):
                        await asyncio.sleep(0.05)
                        yield _event(base, _DRIP[i % len(_DRIP)], None)
                elif "[break]" in prompt:
                    yield _event(base, "One sentence. ", None)
                    yield "data: {broken\n\n"
                else:
                    sent = ""
                    for word in _words(prompt, max_tokens):
                        text, stopped = _cut(sent + word, stop)
                        piece, sent = text[len(sent) :], text
                        if piece:
                            yield _event(base, piece, None)
                        if stopped:
                            reason = "stop"
                            break
                yield _event(base, "", reason)
                yield "data: [DONE]\n\n"
                finished = True
                stats.completed += 1
            finally:
                if not finished:
                    stats.cancelled += 1

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/stand-in/stats", stats_route),
        ]
    )


_DRIP = ("Gulls circle the harbour. ", "Boats rock at their moorings. ", "The sun rises over the water. ")


def _event(base: dict[str, Any], text: str, reason: str | None) -> str:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
    return "data: " + json.dumps({**base, "choices": [choice]}) + "\n\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandIn:
    """Run the stand-in upstream in a thread of the test process: ``with StandIn() as s: s.url``."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(build_app(self.stats), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in upstream did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

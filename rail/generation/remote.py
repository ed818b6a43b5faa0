"""Generate with a remote OpenAI-compatible engine (vLLM, llama.cpp's server, TGI) over HTTP.

The engine only generates: the gate screens each prompt before it is sent and the text that comes back,
exactly as for the local backend, because :class:`RemoteGenerator` is just another
:class:`~rail.generation.Generator`.

>>> engine = connect("http://127.0.0.1:8080")                                  # doctest: +SKIP
>>> engine.info.provider, engine.info.context_length                           # doctest: +SKIP
('llama.cpp', 32)

Failures are :class:`~rail.errors.GenerationError` (engine down, an error status, a body that is not an
OpenAI completion) or :class:`~rail.errors.GenerationTimeout` (no answer in time); the messages name the
engine's address and never include its API key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from rail.errors import ConfigError, GenerationError, GenerationTimeout
from rail.generation.base import (
    Completion,
    GenerationParams,
    HygieneNote,
    ModelInfo,
    PromptHygiene,
    StopFilter,
    apply_hygiene,
)

__all__ = ["RemoteCompletionStream", "RemoteGenerator", "connect"]

#: The engines rail recognises from their answers; anything else is reported as ``openai-compatible``.
KNOWN_PROVIDERS = ("vllm", "llama.cpp", "tgi", "openai-compatible")
_MAX_ERROR_CHARS = 300


def _base_url(url: str) -> str:
    """Return the engine's root URL: ``http://h:p/v1/`` and ``http://h:p`` both give ``http://h:p``."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"upstream URL {url!r} must start with http:// or https://",
            path="--upstream",
            hint="e.g. --upstream http://127.0.0.1:8080",
        )
    root = url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


class _Upstream:
    """One engine address with its HTTP client; turns transport failures into GenerationErrors."""

    def __init__(self, root: str, api_key: str | None, timeout_s: float, connect_timeout_s: float) -> None:
        self.root = root
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=root,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            follow_redirects=False,
        )

    def failure(self, path: str, exc: httpx.HTTPError) -> GenerationError:
        where = f"{self.root}{path}"
        if isinstance(exc, httpx.TimeoutException):
            return GenerationTimeout(f"upstream engine {where} did not answer in time ({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError):
            return GenerationError(f"cannot reach the upstream engine at {where}: is it running?")
        return GenerationError(f"upstream engine {where} failed: {type(exc).__name__}: {_short(str(exc))}")

    def status_error(self, path: str, response: httpx.Response) -> GenerationError:
        try:
            body = response.read().decode("utf-8", "replace")
        except httpx.HTTPError:
            body = ""
        return GenerationError(
            f"upstream engine {self.root}{path} answered HTTP {response.status_code}: "
            f"{_short(body) or '(empty)'}"
        )

    def get_json(self, path: str) -> Any:
        try:
            response = self.client.get(path)
        except httpx.HTTPError as exc:
            raise self.failure(path, exc) from None
        if response.status_code != 200:
            raise self.status_error(path, response)
        try:
            return response.json()
        except ValueError:
            raise GenerationError(f"upstream engine {self.root}{path} did not answer JSON") from None

    def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        try:
            response = self.client.post(path, json=dict(body))
        except httpx.HTTPError as exc:
            raise self.failure(path, exc) from None
        if response.status_code != 200:
            raise self.status_error(path, response)
        try:
            return response.json()
        except ValueError:
            raise GenerationError(f"upstream engine {self.root}{path} did not answer JSON") from None


def _provider(entry: Mapping[str, Any], info: Any) -> str:
    owner = str(entry.get("owned_by", "")).lower()
    if owner == "vllm":
        return "vllm"
    if owner in ("llamacpp", "me") or "meta" in entry:
        # llama.cpp's own server says "llamacpp"; llama-cpp-python's server says "me".
        return "llama.cpp"
    if isinstance(info, Mapping) and ("max_total_tokens" in info or "model_id" in info):
        return "tgi"
    return "openai-compatible"


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _context_length(entry: Mapping[str, Any], info: Any) -> int | None:
    """The engine's context, where it says: vLLM ``max_model_len``, llama.cpp ``meta``, TGI ``/info``."""
    found = _positive_int(entry.get("max_model_len"))
    meta = entry.get("meta")
    if found is None and isinstance(meta, Mapping):
        found = _positive_int(meta.get("n_ctx")) or _positive_int(meta.get("n_ctx_train"))
    if found is None and isinstance(info, Mapping):
        found = _positive_int(info.get("max_total_tokens"))
    return found


def connect(
    url: str,
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 5.0,
    hygiene: PromptHygiene | str = "auto",
    context_length: int | None = None,
    provider: str | None = None,
) -> RemoteGenerator:
    """Ask the engine at ``url`` which model it serves and return a generator for it.

    ``model`` picks one of the engine's models (default: the first it lists). ``context_length`` and
    ``provider`` override what the engine reports (llama-cpp-python's server does not report its context).
    Raises GenerationError when the engine cannot be reached or does not list ``model``.
    """
    if provider is not None and provider not in KNOWN_PROVIDERS:
        raise ConfigError(
            f"unknown upstream provider {provider!r}",
            path="--upstream-provider",
            hint=f"use one of {', '.join(KNOWN_PROVIDERS)}",
        )
    upstream = _Upstream(_base_url(url), api_key, timeout_s, connect_timeout_s)
    listing = upstream.get_json("/v1/models")
    entries = listing.get("data") if isinstance(listing, Mapping) else None
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) and "id" in e for e in entries):
        raise GenerationError(
            f"upstream engine {upstream.root}/v1/models did not answer an OpenAI model list"
        )
    if not entries:
        raise GenerationError(f"upstream engine {upstream.root} serves no model")
    ids = [str(e["id"]) for e in entries]
    if model is not None and model not in ids:
        raise GenerationError(
            f"upstream engine {upstream.root} does not serve {model!r} (it serves "
            f"{', '.join(map(repr, ids))})"
        )
    entry = entries[ids.index(model)] if model is not None else entries[0]
    tgi_info: Any = None
    if "max_model_len" not in entry and "meta" not in entry:
        try:
            tgi_info = upstream.get_json("/info")
        except GenerationError:
            tgi_info = None  # only TGI has /info; the others answer 404
    name = str(entry["id"])
    info = ModelInfo(
        model_id=name,
        revision=None,
        commit=None,
        licence=None,
        dtype="remote",
        device=upstream.root,
        parameters=0,
        architecture=None,
        bloomz="bloomz" in name.lower(),
        local=False,
        context_length=context_length or _context_length(entry, tgi_info),
        provider=provider or _provider(entry, tgi_info),
    )
    return RemoteGenerator(upstream, info, hygiene=hygiene)


def _finish_reason(value: Any) -> str:
    return "length" if value == "length" else "stop"


def _usage(value: Any) -> tuple[int | None, int | None]:
    if not isinstance(value, Mapping):
        return None, None
    return _positive_or_zero(value.get("prompt_tokens")), _positive_or_zero(value.get("completion_tokens"))


def _positive_or_zero(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class RemoteGenerator:
    """A model served by an OpenAI-compatible engine: ``/v1/completions``, plain and streamed.

    Greedy requests are sent with ``temperature: 0``; sampled ones with rail's temperature, top_p and
    top_k. Stop sequences are sent to the engine and also applied here, so a stop sequence never reaches
    the gate whatever the engine does with it. Token counts are the engine's ``usage``; without one, a
    plain completion counts 0 and a stream counts its text events (engines send one token per event).
    A watermark cannot be applied by a remote engine: asking for one is a ConfigError.
    """

    def __init__(
        self, upstream: _Upstream, info: ModelInfo, *, hygiene: PromptHygiene | str = "auto"
    ) -> None:
        self._upstream = upstream
        self.info = info
        self.hygiene = (
            (PromptHygiene.TERMINATE if info.bloomz else PromptHygiene.OFF)
            if hygiene == "auto"
            else PromptHygiene.parse(hygiene)
        )

    @property
    def url(self) -> str:
        return self._upstream.root

    def close(self) -> None:
        """Close the HTTP connections to the engine."""
        self._upstream.client.close()

    def prepare(self, prompts: Sequence[str]) -> list[HygieneNote]:
        """Apply this generator's prompt hygiene to each prompt (what the engine will be sent)."""
        return [apply_hygiene(p, self.hygiene) for p in prompts]

    def request_body(self, prompt: str, params: GenerationParams, *, stream: bool) -> dict[str, Any]:
        """Return the ``/v1/completions`` body for one prompt (the engine's parameter names)."""
        body: dict[str, Any] = {
            "model": self.info.model_id,
            "prompt": prompt,
            "max_tokens": params.max_new_tokens,
            "stream": stream,
        }
        if params.do_sample:
            body.update(temperature=params.temperature, top_p=params.top_p)
            if params.top_k:
                body["top_k"] = params.top_k
        else:
            body["temperature"] = 0.0
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if params.min_new_tokens:
            body["min_tokens"] = params.min_new_tokens
        # llama.cpp penalises repeats by default (1.1); rail's default is none, so say so explicitly.
        if self.info.provider == "llama.cpp":
            body["repeat_penalty"] = params.repetition_penalty
        elif params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if stream and self.info.provider == "vllm":
            body["stream_options"] = {"include_usage": True}
        return body

    @staticmethod
    def _refuse_watermark(watermarking_config: Any | None) -> None:
        if watermarking_config is not None:
            raise ConfigError(
                "a remote engine cannot apply rail's watermark",
                path="watermark",
                hint="serve the model with the local backend to watermark its outputs",
            )

    def _one(self, prompt: str, note: HygieneNote, params: GenerationParams) -> Completion:
        path = "/v1/completions"
        answer = self._upstream.post_json(path, self.request_body(note.sent, params, stream=False))
        choices = answer.get("choices") if isinstance(answer, Mapping) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise GenerationError(f"upstream engine {self.url}{path} did not answer an OpenAI completion")
        choice = choices[0]
        text = choice.get("text")
        if not isinstance(text, str):
            raise GenerationError(f"upstream engine {self.url}{path} answered a completion without text")
        stops = StopFilter(params.stop)
        text = stops.feed(text) + ("" if stops.stopped else stops.flush())
        reason = "stop" if stops.stopped else _finish_reason(choice.get("finish_reason"))
        prompt_tokens, completion_tokens = _usage(answer.get("usage"))
        return Completion(
            prompt=prompt,
            text=text,
            finish_reason=reason,
            input_tokens=prompt_tokens or 0,
            output_tokens=completion_tokens or 0,
            hygiene=note,
        )

    def generate(
        self,
        prompts: Sequence[str],
        params: GenerationParams | None = None,
        *,
        watermarking_config: Any | None = None,
        notes: Sequence[HygieneNote] | None = None,
    ) -> list[Completion]:
        """Generate one completion per prompt; several prompts are sent to the engine concurrently."""
        self._refuse_watermark(watermarking_config)
        params = params or GenerationParams()
        if not prompts:
            return []
        notes = list(notes) if notes is not None else self.prepare(prompts)
        if len(prompts) == 1:
            return [self._one(prompts[0], notes[0], params)]
        with ThreadPoolExecutor(max_workers=min(8, len(prompts)), thread_name_prefix="rail-upstream") as pool:
            return list(
                pool.map(lambda pn: self._one(pn[0], pn[1], params), zip(prompts, notes, strict=True))
            )

    def stream(
        self,
        prompt: str,
        params: GenerationParams | None = None,
        *,
        watermarking_config: Any | None = None,
        note: HygieneNote | None = None,
    ) -> RemoteCompletionStream:
        """Start a streamed completion for one prompt (see :class:`RemoteCompletionStream`)."""
        self._refuse_watermark(watermarking_config)
        params = params or GenerationParams()
        return RemoteCompletionStream(self, prompt, params, note or apply_hygiene(prompt, self.hygiene))


class RemoteCompletionStream:
    """Iterate the text of one streamed upstream completion; ``.completion`` holds the result afterwards.

    The engine's Server-Sent Events are read as they arrive; text that may start a stop sequence is held
    back (:class:`StopFilter`). :meth:`cancel`, from any thread, closes the upstream connection, which
    tells the engine to stop generating; iteration then ends without a completion.
    """

    def __init__(
        self, generator: RemoteGenerator, prompt: str, params: GenerationParams, note: HygieneNote
    ) -> None:
        self._generator = generator
        self._prompt = prompt
        self._params = params
        self._note = note
        self._cancel = threading.Event()
        self._response: httpx.Response | None = None
        self._done = False
        self.completion: Completion | None = None

    def cancel(self) -> None:
        """Stop at once: close the upstream stream so the engine stops generating."""
        self._cancel.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except (httpx.HTTPError, OSError, RuntimeError):
                pass  # the reading thread may be closing it at the same moment

    def _events(self, response: httpx.Response, path: str) -> Iterator[Mapping[str, Any]]:
        for line in response.iter_lines():
            if self._cancel.is_set():
                return
            if not line.startswith("data:"):
                continue  # blank separators, comments and event names
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                self._done = True
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise GenerationError(
                    f"upstream engine {self._generator.url}{path} sent a stream event that is not JSON: "
                    f"{_short(data)}"
                ) from None
            if not isinstance(event, Mapping):
                raise GenerationError(f"upstream engine {self._generator.url}{path} sent a malformed event")
            if "error" in event:
                raise GenerationError(
                    f"upstream engine {self._generator.url}{path} failed mid-stream: "
                    f"{_short(json.dumps(event['error']))}"
                )
            yield event

    def __iter__(self) -> Iterator[str]:
        gen = self._generator
        upstream = gen._upstream
        path = "/v1/completions"
        stops = StopFilter(self._params.stop)
        reason: Any = None
        usage: tuple[int | None, int | None] = (None, None)
        chunks = 0
        try:
            with upstream.client.stream(
                "POST", path, json=gen.request_body(self._note.sent, self._params, stream=True)
            ) as response:
                self._response = response
                if self._cancel.is_set():
                    return
                if response.status_code != 200:
                    raise upstream.status_error(path, response)
                for event in self._events(response, path):
                    if event.get("usage"):
                        usage = _usage(event["usage"])
                    for choice in event.get("choices") or ():
                        if not isinstance(choice, Mapping):
                            continue
                        text = choice.get("text")
                        if isinstance(text, str) and text:
                            chunks += 1
                            safe = stops.feed(text)
                            if safe:
                                yield safe
                        if choice.get("finish_reason") is not None:
                            reason = choice["finish_reason"]
                    if stops.stopped:
                        break  # leaving the block closes the stream: the engine stops generating
        except httpx.HTTPError as exc:
            if self._cancel.is_set():
                return
            raise upstream.failure(path, exc) from None
        if self._cancel.is_set():
            return
        if not (self._done or stops.stopped or reason is not None):
            raise GenerationError(f"upstream engine {gen.url}{path} ended its stream before the completion "
                                  "finished (no finish_reason, no [DONE])")
        tail = "" if stops.stopped else stops.flush()
        if tail:
            yield tail
        self.completion = Completion(
            prompt=self._prompt,
            text=stops.emitted,
            finish_reason="stop" if stops.stopped else _finish_reason(reason),
            input_tokens=usage[0] or 0,
            output_tokens=usage[1] if usage[1] is not None else chunks,
            hygiene=self._note,
        )

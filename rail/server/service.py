"""What a running server holds — model, tenants and their gates, audit commits, limits, metrics — and the
steps of one HTTP request around the gate (limits, admission, dispatch, commit), with no HTTP in it.

The gate decides; this module only runs it: every endpoint, streamed or not, goes through a tenant's
:class:`~rail.gate.GatedGenerator` (generation) or its :class:`~rail.screening.Screening` (moderation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rail.audit.sinks import AuditSink
from rail.errors import (
    AuditError,
    ConfigError,
    DeploymentRefused,
    GenerationError,
    GenerationTimeout,
    RailError,
    ScorerError,
)
from rail.gate import GatedGenerator, GateResult, GateStream
from rail.generation import GenerationParams, Generator
from rail.licences import get_licence
from rail.policy import PolicyEngine, load_declaration, load_policy
from rail.policy.decision import Action, Stage, Verdict, Violation
from rail.policy.declaration import Declaration
from rail.policy.loader import Policy
from rail.scoring import ToxicityScorer
from rail.server.auth import KeyRing, KeySpec
from rail.server.batching import Batcher, Direct, Dispatcher
from rail.server.chat import ChatTemplate
from rail.server.commits import GroupCommit
from rail.server.limits import Admission, RateWindow, Reservation, ServerLimits
from rail.server.metrics import ServerMetrics
from rail.server.protocol import (
    ApiError,
    AuditRef,
    DisclosureInfo,
    PolicyRef,
    RailInfo,
    RailResult,
)

__all__ = [
    "Service",
    "StreamRun",
    "Tenant",
    "api_error",
    "build_service",
    "check_deployments",
    "resolve_tenants",
]

log = logging.getLogger("rail.server")


@dataclass(frozen=True)
class Tenant:
    """One API key's deployment: its gate (declaration and policy), its rate window and its audit tags."""

    key_id: str
    digest: bytes = field(repr=False)
    gate: GatedGenerator
    window: RateWindow
    tags: Mapping[str, Any]

    @property
    def declaration(self) -> Declaration:
        return self.gate.declaration


def api_error(exc: RailError) -> ApiError:
    """Map a RailError raised while serving a request to the HTTP error the client sees."""
    if isinstance(exc, GenerationTimeout):
        log.warning("upstream timeout: %s", exc)
        return ApiError(
            504,
            "the model engine did not answer in time; the request was recorded",
            type="server_error",
            code="upstream_timeout",
        )
    if isinstance(exc, GenerationError):
        log.warning("upstream failure: %s", exc)
        return ApiError(
            502,
            "the model engine failed; the request was recorded",
            type="server_error",
            code="upstream_error",
        )
    if isinstance(exc, AuditError):
        log.error("audit write failed: %s", exc)
        return ApiError(
            503,
            "the audit log cannot be written, so the request is not answered; retry later",
            type="server_error",
            code="audit_unavailable",
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, ConfigError):
        param = {"max_new_tokens": "max_tokens", "generation parameters": None}.get(exc.path or "", exc.path)
        message = exc.detail + (f" — {exc.hint}" if exc.hint else "")
        return ApiError(400, message.replace("max_new_tokens", "max_tokens"), param=param)
    log.error("request failed: %s", exc)
    return ApiError(500, "the request failed inside the server", type="server_error")


def finish_reason(result: GateResult) -> str:
    """OpenAI's finish_reason for a result: content_filter when blocked, else stop or length."""
    if not result.allowed:
        return "content_filter"
    return "length" if result.finish_reason == "length" else "stop"


def input_blocked(result: GateResult) -> bool:
    """Whether the prompt itself was refused (the model never ran), not the output."""
    return any(v.stage is Stage.INPUT and v.action is Action.BLOCK for v in result.violations)


class Service:
    """The running server's state; the app calls :meth:`generate`, :meth:`open_stream`, :meth:`moderate`."""

    def __init__(
        self,
        *,
        model: Generator,
        tenants: Sequence[Tenant],
        commits: GroupCommit,
        limits: ServerLimits,
        admission: Admission,
        metrics: ServerMetrics,
        chat: ChatTemplate,
        model_name: str,
        audit_path: Path | None,
        batch_window_s: float = 0.01,
        max_batch: int = 32,
    ) -> None:
        self.model = model
        self.tenants = list(tenants)
        self.keyring: KeyRing[Tenant] = KeyRing((t.digest, t) for t in tenants)
        self.commits = commits
        self.limits = limits
        self.admission = admission
        self.metrics = metrics
        self.chat = chat
        self.model_name = model_name
        self.audit_path = audit_path
        self.started = int(time.time())
        self.draining = False
        self.pool: Executor = ThreadPoolExecutor(
            max_workers=limits.max_concurrent + 4, thread_name_prefix="rail-gate"
        )
        self._model_thread: ThreadPoolExecutor | None = None
        self.dispatcher: Dispatcher
        if model.info.provider == "transformers":
            # One thread drives a local model (torch spreads each call over the cores itself); batching
            # puts the requests that wait for it into shared calls.
            self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rail-model")
            self.dispatcher = (
                Batcher(
                    self._model_thread,
                    window_s=batch_window_s,
                    max_prompts=max_batch,
                    on_batch=metrics.batch_size.observe,
                )
                if max_batch > 1
                else Direct(self._model_thread)
            )
        else:
            self.dispatcher = Direct(self.pool)

    # -- checks shared by the endpoints ---------------------------------------------------------------

    def check_model(self, requested: str | None) -> None:
        """Refuse a request for a model this server does not serve (404, as OpenAI does)."""
        if requested is not None and requested != self.model_name:
            raise ApiError(
                404,
                f"The model '{requested}' does not exist on this server; it serves "
                f"'{self.model_name}' (see GET /v1/models)",
                param="model",
                code="model_not_found",
            )

    def check_texts(self, texts: Sequence[str], param: str) -> None:
        """Refuse empty lists, too many texts, or texts longer than the server's limit (400)."""
        limits = self.limits
        if not texts:
            raise ApiError(400, f"'{param}' must not be an empty list", param=param)
        if len(texts) > limits.max_prompts:
            raise ApiError(
                400,
                f"'{param}' holds {len(texts)} texts; this server takes at most "
                f"{limits.max_prompts} per request",
                param=param,
            )
        for index, text in enumerate(texts):
            if len(text) > limits.max_prompt_chars:
                where = param if len(texts) == 1 else f"{param}[{index}]"
                raise ApiError(
                    400,
                    f"'{where}' is {len(text):,} characters long; this server takes at most "
                    f"{limits.max_prompt_chars:,}",
                    param=where,
                    code="prompt_too_long",
                )

    def params(
        self,
        *,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        stop: str | Sequence[str] | None,
        seed: int | None,
        default_max_tokens: int,
        extra_stop: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Turn OpenAI sampling parameters into the gate's GenerationParams overrides (400 when invalid).

        temperature 0 is greedy decoding; otherwise rail samples with temperature and top_p (no top-k),
        as OpenAI does; the default temperature is 1, OpenAI's default.
        """
        cap = self.limits.max_tokens
        count = max_tokens if max_tokens is not None else min(default_max_tokens, cap)
        if count > cap:
            raise ApiError(
                400,
                f"max_tokens {count:,} exceeds this server's limit of {cap:,}",
                param="max_tokens",
                code="max_tokens_exceeded",
            )
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 4:
            raise ApiError(400, "'stop' takes at most 4 sequences", param="stop")
        if any(not s for s in stops):
            raise ApiError(400, "'stop' sequences must not be empty strings", param="stop")
        sampling = temperature is None or temperature > 0
        values: dict[str, Any] = {
            "max_new_tokens": count,
            "do_sample": sampling,
            "temperature": temperature if sampling and temperature is not None else 1.0,
            "top_p": top_p if top_p is not None else 1.0,
            "top_k": 0,
            "seed": seed,
            "stop": tuple(dict.fromkeys([*stops, *extra_stop])),
        }
        try:
            GenerationParams(**values)
        except ConfigError as exc:
            raise api_error(exc) from None
        return values

    def tags(self, tenant: Tenant, endpoint: str, user: str | None) -> dict[str, Any]:
        """The audit tags of one request: key id, declaration, endpoint and OpenAI's ``user`` if sent."""
        out = dict(tenant.tags)
        out["endpoint"] = endpoint
        if user:
            out["user"] = user
        return out

    # -- running requests --------------------------------------------------------------------------------

    def _admit(self, tenant: Tenant, tokens: int) -> Reservation:
        try:
            return tenant.window.admit(tokens)
        except ApiError as exc:
            if exc.status == 429:
                self.metrics.rate_limited.labels(tenant.key_id).inc()
            raise

    @staticmethod
    def _used(results: Sequence[GateResult]) -> int:
        return sum((r.record.input_tokens or 0) + (r.record.output_tokens or 0) for r in results)

    def timed_out(self) -> ApiError:
        return ApiError(
            504,
            f"the request did not finish within {self.limits.request_timeout_s:g} s",
            type="server_error",
            code="timeout",
        )

    async def generate(
        self, tenant: Tenant, prompts: Sequence[str], params: Mapping[str, Any], tags: Mapping[str, Any]
    ) -> tuple[list[GateResult], list[int | None]]:
        """Run prompts through the tenant's gate; return the results once their records are committed.

        Raises ApiError: 429 over the key's limits, 503 at capacity or when the audit log fails, 504 past
        the request timeout (waiting for a slot included), 502/504 for engine failures, 400 for parameters
        the model cannot honour.
        """
        reservation = self._admit(tenant, params["max_new_tokens"] * len(prompts))
        results: list[GateResult] = []
        endpoint = str(tags.get("endpoint", ""))

        async def work() -> list[int | None]:
            async with self.admission.slot():
                results.extend(await self.dispatcher.generate(tenant.gate, prompts, params, tags))
                for r in results:
                    self.metrics.observe_result(endpoint, r)
                return await self.commits.committed([r.record.request_id for r in results])

        try:
            return results, await asyncio.wait_for(work(), self.limits.request_timeout_s)
        except TimeoutError:
            self.metrics.requests.labels(endpoint, "error").inc()
            raise self.timed_out() from None
        except RailError as exc:
            self.metrics.requests.labels(endpoint, "error").inc()
            raise await self.failure(exc) from None
        finally:
            tenant.window.settle(reservation, self._used(results))

    async def failure(self, exc: BaseException) -> ApiError:
        """The answer to a request that failed with ``exc``, once the gate's record of the failure is stored.

        The gate records a backend failure before raising it; that record must be on disk before the
        client hears anything, so this waits for the audit log (503 if it cannot write).
        """
        if isinstance(exc, ApiError):
            return exc
        if not isinstance(exc, RailError):
            log.error("request failed: %r", exc)
            return ApiError(500, "the request failed inside the server", type="server_error")
        if isinstance(exc, GenerationError):
            try:
                await asyncio.wait_for(self.commits.barrier(), self.limits.request_timeout_s)
            except AuditError as audit:
                return api_error(audit)
            except TimeoutError:
                return api_error(AuditError("the audit commit did not finish in time"))
        return api_error(exc)

    async def open_stream(
        self, tenant: Tenant, prompt: str, params: Mapping[str, Any], tags: Mapping[str, Any]
    ) -> StreamRun:
        """Start a gated stream in a worker thread, holding a working slot until :meth:`StreamRun.close`."""
        if self.commits.failing:
            # Streamed text is released before the record is written; while the log fails, refuse streams.
            raise api_error(AuditError("the last audit commit failed"))
        reservation = self._admit(tenant, params["max_new_tokens"])
        try:
            await self.admission.acquire()
        except ApiError:
            tenant.window.settle(reservation, 0)
            raise
        endpoint = str(tags.get("endpoint", ""))
        try:
            stream = tenant.gate.generate_stream(prompt, tags=dict(tags), **dict(params))
        except RailError as exc:
            self.admission.release()
            tenant.window.settle(reservation, 0)
            raise api_error(exc) from None

        def done(result: GateResult | None) -> None:
            if result is not None:
                self.metrics.observe_result(endpoint, result)
            tenant.window.settle(reservation, self._used([result]) if result is not None else 0)

        return StreamRun(
            self,
            stream,
            deadline=asyncio.get_running_loop().time() + self.limits.request_timeout_s,
            on_done=done,
        )

    async def run_in_pool(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    # -- the rail object ----------------------------------------------------------------------------------

    def rail_info(
        self, tenant: Tenant, results: Sequence[GateResult], seqs: Sequence[int | None]
    ) -> RailInfo:
        """Build the ``rail`` object of a response from its gate results and audit sequence numbers."""
        gate = tenant.gate
        disclosure = gate.disclosure
        items = []
        for index, (result, seq) in enumerate(zip(results, seqs, strict=True)):
            items.append(
                RailResult(
                    index=index,
                    verdict=result.decision.value,
                    violations=[v.to_dict() for v in result.violations],
                    disclosure=DisclosureInfo(
                        mode=disclosure.mode,
                        position=disclosure.position,
                        applied=result.final_text is not None and disclosure.mode == "visible",
                    ),
                    provenance=result.provenance.to_dict() if result.provenance is not None else None,
                    audit=AuditRef(request_id=result.record.request_id, seq=seq),
                    finish_reason=None if input_blocked(result) else finish_reason(result),
                    cancelled=bool(result.record.extra.get("cancelled")),
                )
            )
        return self.summary(tenant, [i.verdict for i in items], items)

    @staticmethod
    def rail_item(
        index: int, verdict: str, violations: Sequence[Violation], request_id: str, seq: int | None
    ) -> RailResult:
        """The ``rail`` entry of a text that was screened but not generated for (moderation)."""
        return RailResult(
            index=index,
            verdict=verdict,
            violations=[v.to_dict() for v in violations],
            disclosure=None,
            provenance=None,
            audit=AuditRef(request_id=request_id, seq=seq),
        )

    @staticmethod
    def summary(tenant: Tenant, verdicts: Sequence[str], items: list[RailResult]) -> RailInfo:
        order = [Verdict.ALLOWED.value, Verdict.MODIFIED.value, Verdict.BLOCKED.value]
        worst = max(verdicts, key=order.index, default=Verdict.ALLOWED.value)
        policy = tenant.gate.policy
        return RailInfo(
            verdict=worst,
            deployment=tenant.declaration.name,
            policy=PolicyRef(id=policy.id, sha256=policy.sha256),
            results=items,
        )

    def refusal(
        self, tenant: Tenant, results: Sequence[GateResult], seqs: Sequence[int | None], param: str
    ) -> ApiError | None:
        """The 400 content_filter error for a request whose prompt was refused, naming the clauses."""
        blocked = [(i, r) for i, r in enumerate(results) if input_blocked(r)]
        if not blocked:
            return None
        index, result = blocked[0]
        clauses = sorted(
            {
                c
                for v in result.violations
                if v.action is Action.BLOCK and v.stage is Stage.INPUT
                for c in v.clauses
            }
        )
        licence = tenant.gate.policy.licence
        try:
            licence_name = get_licence(licence).name
        except ConfigError:
            licence_name = licence
        if clauses:
            word = "clause" if len(clauses) == 1 else "clauses"
            under = f"under {word} " + ", ".join(f"({c})" for c in clauses) + f" of the {licence_name}"
        else:
            under = "by the deployment's policy"
        where = param if len(results) == 1 else f"{param}[{index}]"
        message = f"The prompt was refused {under}: {result.reason}"
        return ApiError(
            400, message, code="content_filter", param=where, rail=self.rail_info(tenant, results, seqs)
        )

    def warm_up(self) -> list[str]:
        """Load the toxicity models the policies need now, not on the first request; return what failed.

        A scorer that cannot load is not fatal: the policies then block (or, fail_open, warn on) every
        request that needs scores, with the reason, as they would anyway.
        """
        problems = []
        for screening in {id(t.gate.screening): t.gate.screening for t in self.tenants}.values():
            if not any(screening.needs_scores(stage) for stage in (Stage.INPUT, Stage.OUTPUT)):
                continue
            scorer = screening.scorer
            models = (
                ("unbiased", "multilingual") if scorer.settings.model == "auto" else (scorer.settings.model,)
            )
            for model in models:
                try:
                    scorer.load(model)
                except ScorerError as exc:
                    problems.append(f"detoxify {model!r}: {exc}")
        return problems

    # -- readiness and shutdown --------------------------------------------------------------------------

    def not_ready(self) -> str | None:
        """Why the server should not get traffic now (None when ready)."""
        if self.draining:
            return "the server is shutting down"
        if self.commits.failing:
            return "the last audit commit failed"
        path = self.audit_path
        if path is not None:
            target = path if path.exists() else path.parent
            if not os.access(target, os.W_OK) or not os.access(path.parent, os.W_OK):
                return f"the audit log {path} is not writable"
        return None

    async def close(self) -> None:
        """Finish: stop batching, wait for workers, commit and close the audit store."""
        self.draining = True
        await self.dispatcher.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown_workers)

    def _shutdown_workers(self) -> None:
        if isinstance(self.pool, ThreadPoolExecutor):
            self.pool.shutdown(wait=True)
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=True)
        self.commits.close()
        close = getattr(self.model, "close", None)
        if close is not None:
            close()


@dataclass
class StreamItem:
    kind: str  # chunk | end | error
    text: str = ""
    result: GateResult | None = None
    error: BaseException | None = None


@dataclass
class StreamRun:
    """A GateStream iterated in a worker thread, its chunks handed to the event loop through a queue."""

    service: Service
    stream: GateStream
    deadline: float
    on_done: Callable[[GateResult | None], None]
    queue: asyncio.Queue[StreamItem] = field(default_factory=asyncio.Queue)
    _closed: bool = False

    def __post_init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.service.pool.submit(self._work)

    def _put(self, item: StreamItem) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self._loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _work(self) -> None:
        try:
            for chunk in self.stream:
                self._put(StreamItem("chunk", text=chunk))
        except BaseException as exc:
            self.on_done(self.stream.result)
            self._put(StreamItem("error", error=exc))
            return
        self.on_done(self.stream.result)
        self._put(StreamItem("end", result=self.stream.result))

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._loop.time())

    async def next(self) -> StreamItem:
        """The next chunk, the end, or the error; raises TimeoutError past the request's deadline."""
        return await asyncio.wait_for(self.queue.get(), self.remaining())

    def close(self, *, cancel: bool) -> None:
        """Release the slot; with ``cancel`` stop the generation (the client went away or time ran out)."""
        if self._closed:
            return
        self._closed = True
        if cancel:
            self.stream.cancel()
        self.service.admission.release()


def check_deployments(
    specs: Sequence[tuple[KeySpec, Declaration, Policy]], *, model_ref: str, sink: AuditSink
) -> None:
    """Refuse to start when any key's declaration falls under a licence restriction, naming key and clause.

    Runs before any weights load. The refusal is recorded in ``sink`` by the gate itself.
    """
    for spec, declaration, policy in specs:
        try:
            PolicyEngine(policy).require_deployment(declaration)
        except DeploymentRefused as exc:
            try:
                # The check fails again inside the gate, which records the refusal before it loads anything.
                GatedGenerator(model=model_ref, declaration=declaration, policy=policy, sink=sink)
            except DeploymentRefused:
                pass
            raise DeploymentRefused(
                f"API key '{spec.id}' ({spec.where}): {exc}", clauses=exc.clauses
            ) from None


def resolve_tenants(
    specs: Sequence[KeySpec], *, declaration: str | None, policy: str
) -> list[tuple[KeySpec, Declaration, Policy]]:
    """Load each key's declaration and policy (the server's defaults where the key names none)."""
    out = []
    loaded: dict[tuple[str, str], tuple[Declaration, Policy]] = {}
    for spec in specs:
        decl_ref = spec.declaration or declaration
        if decl_ref is None:
            raise ConfigError(
                f"API key '{spec.id}' ({spec.where}) has no deployment declaration",
                path="--declaration",
                hint="pass --declaration FILE, or give the key a declaration in the keys file",
            )
        pol_ref = spec.policy or policy
        if (decl_ref, pol_ref) not in loaded:
            loaded[(decl_ref, pol_ref)] = (load_declaration(decl_ref), load_policy(pol_ref))
        out.append((spec, *loaded[(decl_ref, pol_ref)]))
    return out


def build_service(
    *,
    model: Generator,
    tenants: Sequence[tuple[KeySpec, Declaration, Policy]],
    store: AuditSink,
    limits: ServerLimits,
    chat: ChatTemplate,
    model_name: str,
    audit_path: Path | None,
    scorer: ToxicityScorer,
    signing_key: Any = None,
    without: Sequence[str] = (),
    batch_window_s: float = 0.01,
    max_batch: int = 32,
) -> Service:
    """Put a server together: one gate per declaration and policy, shared model, scorer and audit commits."""
    admission = Admission(limits.max_concurrent, limits.max_queue)
    metrics = ServerMetrics(queue_depth=lambda: admission.waiting, in_flight=lambda: admission.active)
    commits = GroupCommit(store, on_commit=metrics.observe_commit)
    gates: dict[tuple[int, int], GatedGenerator] = {}
    built: list[Tenant] = []
    try:
        for spec, declaration, policy in tenants:
            key = (id(declaration), id(policy))
            if key not in gates:
                gates[key] = GatedGenerator(
                    model=model,
                    declaration=declaration,
                    policy=policy,
                    scorer=scorer,
                    sink=commits,
                    signing_key=signing_key,
                    without=without,
                )
            tags = {
                "api_key_id": spec.id,
                "declaration": {
                    "name": declaration.name,
                    "sha256": declaration.sha256,
                    "source": declaration.source,
                },
            }
            built.append(
                Tenant(
                    key_id=spec.id,
                    digest=spec.digest,
                    gate=gates[key],
                    window=RateWindow(spec.limits),
                    tags=tags,
                )
            )
    except BaseException:
        commits.close()
        raise
    return Service(
        model=model,
        tenants=built,
        commits=commits,
        limits=limits,
        admission=admission,
        metrics=metrics,
        chat=chat,
        model_name=model_name,
        audit_path=audit_path,
        batch_window_s=batch_window_s,
        max_batch=max_batch,
    )

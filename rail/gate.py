"""Generate with BLOOM inside the licence: the one place that knows the order of a request's steps.

    declaration check (at start) ─► input checks (+ prompt scores) ─► generate ─► output checks (+ scores)
        ─► attribution (disclosure, provenance, watermark) ─► audit record to the sink ─► GateResult

>>> gate = GatedGenerator(model="bigscience/bloomz-560m", declaration="deployment.yaml")   # doctest: +SKIP
>>> result = gate.generate("Translate to English: Je t'aime.")                           # doctest: +SKIP
>>> result.decision, result.final_text                                                   # doctest: +SKIP
(<Verdict.ALLOWED: 'allowed'>, "I love you.\\n\\n[Machine-generated text: …]")

Streaming (:meth:`GatedGenerator.generate_stream`) fails closed: text is released only in pieces that end at
a sentence boundary and only after the whole output so far has passed the output checks (and scores); the
first piece that fails ends the stream, and nothing after it is released.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rail._version import __version__
from rail.attribution import Disclosure, Provenance, WatermarkSettings, sha256_text
from rail.audit.record import AuditRecord, utc_now
from rail.audit.sinks import AuditSink
from rail.errors import ConfigError, DeploymentRefused, GenerationError
from rail.generation import (
    TERMINATORS,
    Completion,
    CompletionStream,
    GenerationParams,
    Generator,
    HygieneNote,
    load_model,
)
from rail.policy import DEFAULT_POLICY
from rail.policy.decision import Action, Decision, Stage, Verdict, Violation
from rail.scoring import ScorerSettings, ToxicityScorer
from rail.screening import Screened, Screening

_BOUNDARIES = TERMINATORS | {"\n"}


@dataclass(frozen=True)
class GateResult:
    """The outcome of one request: what to show, what the model wrote, the verdict and why, and its records.

    ``final_text`` is None when the request was blocked. ``raw_text`` is the model's text before output
    redaction and disclosure (None when the input was blocked): it is UNCHECKED text — for a blocked or
    modified request it holds exactly what the policy kept back (the blocked output, unredacted personal
    data) — so it is never shown or serialised unless asked for (see :meth:`to_dict`). ``scores`` is
    ``{"prompt": {label: p}, "output": {label: p}}`` with the stages that were scored.
    """

    prompt: str
    final_text: str | None
    raw_text: str | None
    decision: Verdict
    violations: tuple[Violation, ...]
    scores: Mapping[str, Mapping[str, float]]
    provenance: Provenance | None
    record: AuditRecord
    language: str | None = None
    finish_reason: str | None = None
    hygiene: HygieneNote | None = None
    skipped: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision is not Verdict.BLOCKED

    @property
    def reason(self) -> str | None:
        """The first blocking reason, for a one-line message; None when the request passed."""
        if self.allowed:
            return None
        blocking = [v.reason for v in self.violations if v.action is Action.BLOCK]
        return (blocking or [v.reason for v in self.violations] or ["blocked by policy"])[0]

    @property
    def warnings(self) -> tuple[str, ...]:
        """Reasons of the warn-level violations (e.g. a scorer failure under a fail_open policy)."""
        return tuple(v.reason for v in self.violations if v.action is Action.WARN)

    def to_dict(self, *, include_raw: bool = False) -> dict[str, Any]:
        """Return the JSON form printed by ``rail generate --json``.

        ``raw_text`` is filled only when the verdict is allowed (nothing was held back, so it is the text
        shown minus the disclosure); for a blocked or modified request it is None unless ``include_raw``.
        """
        show_raw = include_raw or self.decision is Verdict.ALLOWED
        return {
            "allowed": self.allowed,
            "verdict": self.decision.value,
            "text": self.final_text,
            "raw_text": self.raw_text if show_raw else None,
            "reason": self.reason,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": list(self.warnings),
            "skipped": list(self.skipped),
            "scores": {k: dict(v) for k, v in self.scores.items()},
            "language": self.language,
            "finish_reason": self.finish_reason,
            "prompt_hygiene": self.hygiene.to_dict() if self.hygiene else None,
            "provenance": self.provenance.to_dict() if self.provenance else None,
            "request_id": self.record.request_id,
        }


@dataclass(frozen=True)
class _Facts:
    """What every provenance and audit record of this gate says about the model, policy and deployment."""

    model: str
    model_revision: str | None
    licence: str | None
    provider: str
    policy_id: str
    policy_sha256: str
    deployment: str | None


@dataclass
class _Request:
    """Working state of one request as it moves through the steps."""

    prompt: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    language: str | None = None
    input: Decision | None = None
    output: Decision | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    completion: Completion | None = None
    note: HygieneNote | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)

    def add_time(self, screened: Screened, checks_key: str) -> None:
        """Add a screening's time: language and checks under ``checks_key``, scoring under ``scoring``."""
        spent = screened.durations_ms
        self.durations[checks_key] = (
            self.durations.get(checks_key, 0.0) + spent.get("language", 0.0) + spent.get("checks", 0.0)
        )
        self.durations["scoring"] = self.durations.get("scoring", 0.0) + spent.get("scoring", 0.0)


def _merge(*decisions: Decision | None) -> Verdict:
    verdicts = {d.verdict for d in decisions if d is not None}
    if Verdict.BLOCKED in verdicts:
        return Verdict.BLOCKED
    return Verdict.MODIFIED if Verdict.MODIFIED in verdicts else Verdict.ALLOWED


class _Steps:
    """The steps of a request in their order; GatedGenerator and GateStream both run requests through it."""

    def __init__(
        self,
        *,
        screening: Screening,
        model: Generator,
        facts: _Facts,
        disclosure: Disclosure,
        sink: AuditSink | None,
        watermark: WatermarkSettings | None,
        signing_key: Any,
    ) -> None:
        self.screening = screening
        self.model = model
        self.facts = facts
        self.disclosure = disclosure
        self.sink = sink
        self.watermark = watermark
        self.watermarking_config = watermark.to_transformers() if watermark else None
        self.signing_key = signing_key
        info = model.info
        self.model_name = Path(info.model_id).name if info.local else info.model_id

    def check_params(self, params: GenerationParams) -> None:
        """Refuse generation parameters the model cannot honour (more new tokens than its context)."""
        limit = self.model.info.context_length
        if limit is not None and params.max_new_tokens > limit:
            raise ConfigError(
                f"max_new_tokens {params.max_new_tokens:,} exceeds the model's context of {limit:,} tokens",
                path="max_new_tokens",
                hint=f"ask for at most {limit:,} new tokens (the prompt shares the same context)",
            )

    def screen_inputs(self, requests: list[_Request]) -> None:
        screened = self.screening.screen([r.prompt for r in requests], Stage.INPUT)
        for r, s in zip(requests, screened, strict=True):
            r.language, r.input = s.language, s.decision
            if s.scores:
                r.scores["prompt"] = dict(s.scores)
            r.add_time(s, "input_checks")

    def screen_output(self, r: _Request, text: str) -> Decision:
        """Screen the output so far of one request (a whole completion, or a stream's text up to now)."""
        s = self.screening.screen([text], Stage.OUTPUT)[0]
        self._take_output(r, s)
        return s.decision

    def screen_outputs(self, requests: list[_Request]) -> None:
        texts = [r.completion.text for r in requests if r.completion is not None]
        for r, s in zip(requests, self.screening.screen(texts, Stage.OUTPUT), strict=True):
            self._take_output(r, s)

    @staticmethod
    def _take_output(r: _Request, s: Screened) -> None:
        r.output = s.decision
        r.language = s.language or r.language
        if s.scores:
            r.scores["output"] = dict(s.scores)
        r.add_time(s, "output_checks")

    def generate(self, requests: list[_Request], params: GenerationParams) -> None:
        t0 = time.perf_counter()
        prompts = [r.input.text for r in requests if r.input is not None]
        completions = self.model.generate(
            prompts, params, watermarking_config=self.watermarking_config, notes=self.model.prepare(prompts)
        )
        elapsed = (time.perf_counter() - t0) * 1000
        for r, c in zip(requests, completions, strict=True):
            r.completion, r.durations["generate"] = c, elapsed

    def notice(self, language: str | None) -> str:
        return self.disclosure.notice(language, self.model_name)[0]

    def _provenance(self, r: _Request, final_text: str, params: GenerationParams) -> Provenance:
        f = self.facts
        provenance = Provenance(
            model=f.model,
            model_revision=f.model_revision,
            licence=f.licence,
            policy_id=f.policy_id,
            policy_sha256=f.policy_sha256,
            deployment=f.deployment,
            time=utc_now(),
            output_sha256=sha256_text(final_text),
            params=params.to_dict(),
            request_id=r.request_id,
            language=r.language,
            disclosure=self.disclosure.position if self.disclosure.mode == "visible" else None,
            watermark=self.watermark.to_dict() if self.watermark else None,
        )
        return provenance.sign(self.signing_key) if self.signing_key is not None else provenance

    def finish(
        self,
        r: _Request,
        params: GenerationParams,
        final_text: str | None = None,
        *,
        error: GenerationError | None = None,
    ) -> GateResult:
        """Attribute an output that passed, build the audit record, emit it and return the result.

        ``error`` is the backend failure that ended the request; the record keeps its type and message.
        """
        t0 = time.perf_counter()
        verdict = _merge(r.input, r.output)
        provenance = None
        if verdict is not Verdict.BLOCKED and r.output is not None:
            if final_text is None:
                final_text = self.disclosure.apply(r.output.text, r.language, self.model_name)
            provenance = self._provenance(r, final_text, params)
        else:
            final_text = None
        r.durations["attribution"] = (time.perf_counter() - t0) * 1000
        violations = tuple(r.input.violations if r.input else ()) + tuple(
            r.output.violations if r.output else ()
        )
        skipped = tuple(
            dict.fromkeys((*(r.input.skipped if r.input else ()), *(r.output.skipped if r.output else ())))
        )
        r.durations["total"] = (time.perf_counter() - r.started) * 1000
        c = r.completion
        extra: dict[str, Any] = dict(r.tags)
        if c is not None:
            extra["prompt_hygiene"] = c.hygiene.to_dict()
        if self.watermark:
            extra["watermark"] = self.watermark.to_dict()
        if error is not None:
            extra["error"] = {"type": type(error).__name__, "message": str(error)}
        f = self.facts
        record = AuditRecord(
            request_id=r.request_id,
            deployment=f.deployment,
            model=f.model,
            model_revision=f.model_revision,
            provider=f.provider,
            params=params.to_audit(),
            input_tokens=c.input_tokens if c else None,
            output_tokens=c.output_tokens if c else None,
            finish_reason=c.finish_reason if c else ("error" if error is not None else None),
            verdict=verdict.value,
            violations=tuple(v.to_dict() for v in violations),
            scores=r.scores,
            language=r.language,
            provenance=provenance.to_dict() if provenance else None,
            policy_id=f.policy_id,
            policy_sha256=f.policy_sha256,
            licence=f.licence,
            rail_version=__version__,
            durations_ms=r.durations,
            prompt=r.prompt,
            output=c.text if c else None,
            extra=extra,
        )
        if self.sink is not None:
            self.sink.emit(record)
        return GateResult(
            prompt=r.prompt,
            final_text=final_text,
            raw_text=c.text if c else None,
            decision=verdict,
            violations=violations,
            scores=r.scores,
            provenance=provenance,
            record=record,
            language=r.language,
            finish_reason=c.finish_reason if c else None,
            hygiene=c.hygiene if c else r.note,
            skipped=skipped,
        )


def _refusal_record(declaration: Any, policy: Any, model: Any, decision: Decision) -> AuditRecord:
    """The audit record of a deployment refused before any weights loaded."""
    name = model if isinstance(model, str) else model.info.model_id
    return AuditRecord(
        deployment=declaration.name,
        operation="deployment_check",
        model=name,
        verdict=Verdict.BLOCKED.value,
        violations=tuple(v.to_dict() for v in decision.violations),
        policy_id=policy.id,
        policy_sha256=policy.sha256,
        licence=policy.licence,
        extra={"declaration": {"source": str(declaration.source), "purpose": declaration.purpose}},
    )


class GatedGenerator:
    """Generate text that has passed the deployment's policy, with attribution, scores and an audit record.

    Construction checks the deployment declaration first and raises DeploymentRefused (naming the clause)
    before any weights are loaded; the refusal is recorded in ``sink``. ``model`` is a loaded Generator or
    a hub id / local directory; ``policy`` a Policy or a pack name / file; ``declaration`` a Declaration or
    its YAML file. ``scorer`` defaults to detoxify configured from the environment and loads on first need.
    ``signing_key`` (a key file or loaded key) signs provenance records; ``watermark`` adds a statistical
    watermark; ``without`` names check kinds not to run (they are listed as skipped).
    """

    def __init__(
        self,
        *,
        model: Generator | str,
        declaration: Any,
        policy: Any = DEFAULT_POLICY,
        scorer: ToxicityScorer | ScorerSettings | None = None,
        sink: AuditSink | None = None,
        params: GenerationParams | None = None,
        watermark: WatermarkSettings | None = None,
        signing_key: Any = None,
        disclosure: Disclosure | None = None,
        model_options: Mapping[str, Any] | None = None,
        without: Sequence[str] = (),
    ) -> None:
        from rail.policy import PolicyEngine, load_declaration, load_policy

        self.policy = policy if hasattr(policy, "rules") else load_policy(policy)
        self.declaration = (
            declaration if hasattr(declaration, "disclosure") else load_declaration(declaration)
        )
        self.engine = PolicyEngine(self.policy)
        try:
            self.engine.require_deployment(self.declaration)
        except DeploymentRefused:
            if sink is not None:
                decision = self.engine.check_deployment(self.declaration)
                sink.emit(_refusal_record(self.declaration, self.policy, model, decision))
            raise
        self.screening = Screening(self.engine, scorer, without=without)
        self.model: Generator = model if not isinstance(model, str) else load_model(
            model, **dict(model_options or {})
        )
        self.params = params or GenerationParams()
        info = self.model.info
        facts = _Facts(
            model=info.model_id,
            model_revision=info.commit or info.revision,
            licence=info.licence or self.policy.licence,
            provider=info.provider,
            policy_id=self.policy.id,
            policy_sha256=self.policy.sha256,
            deployment=self.declaration.name,
        )
        self._steps = _Steps(
            screening=self.screening,
            model=self.model,
            facts=facts,
            disclosure=disclosure or Disclosure.from_declaration(self.declaration),
            sink=sink,
            watermark=watermark,
            signing_key=signing_key,
        )

    @property
    def disclosure(self) -> Disclosure:
        return self._steps.disclosure

    @property
    def sink(self) -> AuditSink | None:
        return self._steps.sink

    def _params(self, params: Mapping[str, Any]) -> GenerationParams:
        run = self.params.replace(**params) if params else self.params
        self._steps.check_params(run)
        return run

    def generate(self, prompt: str, *, tags: Mapping[str, Any] | None = None, **params: Any) -> GateResult:
        """Run one prompt through the gate and return its GateResult.

        Keyword arguments override this gate's GenerationParams for this call (max_new_tokens, seed, stop …);
        ``tags`` (JSON-shaped) are kept in the audit record's ``extra`` (e.g. the API key id of a caller).
        """
        return self.generate_batch([prompt], tags=tags, **params)[0]

    def generate_batch(
        self, prompts: Sequence[str], *, tags: Mapping[str, Any] | None = None, **params: Any
    ) -> list[GateResult]:
        """Run prompts through the gate together; one GateResult per prompt, in order.

        Prompts blocked at input are not generated; the others are generated together in one batch.
        A backend failure (GenerationError) is recorded for every request of the batch, then raised.
        """
        if isinstance(prompts, str):
            raise TypeError("generate_batch takes a list of prompts; use generate() for one prompt")
        run = self._params(params)
        steps = self._steps
        requests = [_Request(p, tags=dict(tags or {})) for p in prompts]
        if not requests:
            return []
        steps.screen_inputs(requests)
        passing = [r for r in requests if r.input is not None and r.input.allowed]
        if passing:
            try:
                steps.generate(passing, run)
            except GenerationError as exc:
                for r in requests:
                    steps.finish(r, run, error=exc if r in passing else None)
                raise
            steps.screen_outputs(passing)
        return [steps.finish(r, run) for r in requests]

    def generate_stream(
        self, prompt: str, *, tags: Mapping[str, Any] | None = None, **params: Any
    ) -> GateStream:
        """Generate for one prompt, yielding text as it passes the output checks (see the module doc)."""
        return GateStream(self._steps, prompt, self._params(params), tags=tags)


class GateStream:
    """Iterate the released text of one gated request; ``.result`` holds the GateResult afterwards.

    The chunks joined equal ``result.final_text`` when the request was allowed (disclosure included).
    When an output check fails mid-stream, generation stops, the stream ends, and ``result`` is blocked:
    the text already released had passed every check on the output up to that point. ``close()`` (or
    leaving the loop early) stops generation; the request is then recorded as cut short. :meth:`cancel`
    does the same from another thread, even while the model is still working on the next piece.
    """

    def __init__(
        self, steps: _Steps, prompt: str, params: GenerationParams, *, tags: Mapping[str, Any] | None = None
    ) -> None:
        self._steps = steps
        self._prompt = prompt
        self._params = params
        self._tags = dict(tags or {})
        self.result: GateResult | None = None
        self._prefixed = False
        self._cancelled = threading.Event()
        self._model_stream: CompletionStream | None = None

    def cancel(self) -> None:
        """Stop generating from any thread (a client went away); iteration ends, recorded as cut short."""
        self._cancelled.set()
        if self._model_stream is not None:
            self._model_stream.cancel()

    def __iter__(self) -> Iterator[str]:
        steps, params = self._steps, self._params
        r = _Request(self._prompt, tags=self._tags)
        steps.screen_inputs([r])
        if r.input is None or not r.input.allowed:
            self.result = steps.finish(r, params)
            return
        r.note = steps.model.prepare([r.input.text])[0]
        stream = steps.model.stream(
            r.input.text, params, watermarking_config=steps.watermarking_config, note=r.note
        )
        self._model_stream = stream
        if self._cancelled.is_set():
            stream.cancel()
        t0 = time.perf_counter()
        raw = ""  # everything the model produced so far
        released = ""  # checked (possibly redacted) text already yielded, without disclosure
        shown: list[str] = []
        disclosure = steps.disclosure
        prefix = disclosure.mode == "visible" and disclosure.position == "prefix"
        failed = False
        try:
            for chunk in stream:
                raw += chunk
                if failed or self._cancelled.is_set():
                    continue
                end = max(raw.rfind(b) for b in _BOUNDARIES) + 1
                if end <= len(released) or end == 0:
                    continue
                piece = self._release(r, raw[:end], released, prefix and not released)
                if piece is None:
                    failed = True
                    stream.cancel()
                    continue
                released = released + piece[1]
                shown.append(piece[0])
                yield piece[0]
        except GeneratorExit:
            # The consumer went away (a client disconnected): stop the model and record what happened.
            self._cut_short(r, stream, t0, shown)
            raise
        except GenerationError as exc:
            r.durations["generate"] = (time.perf_counter() - t0) * 1000
            self.result = steps.finish(r, params, final_text="".join(shown), error=exc)
            raise
        if self._cancelled.is_set():
            self._cut_short(r, stream, t0, shown)
            return
        r.durations["generate"] = (time.perf_counter() - t0) * 1000
        r.completion = stream.completion
        tail = (
            None
            if failed or r.completion is None
            else self._release(r, r.completion.text, released, prefix and not released)
        )
        if tail is None:
            self.result = steps.finish(r, params)
            return
        released += tail[1]
        ending = tail[0]
        if disclosure.mode == "visible" and (not released or disclosure.position == "suffix"):
            notice = steps.notice(r.language)
            ending += disclosure.separator + notice if released else notice
        if ending:
            shown.append(ending)
            yield ending
        self.result = steps.finish(r, params, final_text="".join(shown))

    def _cut_short(self, r: _Request, stream: CompletionStream, t0: float, shown: list[str]) -> None:
        stream.cancel()
        r.durations["generate"] = (time.perf_counter() - t0) * 1000
        r.tags = {**r.tags, "cancelled": True}
        self.result = self._steps.finish(r, self._params, final_text="".join(shown))

    def _release(self, r: _Request, text: str, released: str, with_prefix: bool) -> tuple[str, str] | None:
        """Check the output so far; return (text to yield, new checked text) or None when it must stop."""
        steps = self._steps
        language_before = r.language
        decision = steps.screen_output(r, text)
        language = r.language
        if not decision.allowed:
            return None
        if not decision.text.startswith(released):
            # A redaction reached text already shown: it cannot be taken back, so stop here.
            stopped = Violation(
                rule="rail.stream.redaction", restriction=None, licence=None, stage=Stage.OUTPUT,
                action=Action.BLOCK, severity="high",
                reason="a redaction reached text already streamed; the stream was stopped",
            )
            violations = (*decision.violations, stopped)
            r.output = Decision(
                Verdict.BLOCKED, decision.text, violations, decision.skipped, decision.measurements
            )
            return None
        new = decision.text[len(released) :]
        if self._prefixed and released:
            r.language = language_before  # the disclosure's language is fixed once a prefix notice is out
        if with_prefix and new:
            self._prefixed = True
            return steps.notice(language) + steps.disclosure.separator + new, new
        return new, new

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

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rail import __version__
from rail.attribution import Disclosure, Provenance, WatermarkSettings, sha256_text
from rail.audit.record import AuditRecord, utc_now
from rail.audit.sinks import AuditSink
from rail.errors import ScorerError
from rail.generation import TERMINATORS, Completion, GenerationParams, HygieneNote, TextGenerator, load_model
from rail.language import detect
from rail.policy import DEFAULT_POLICY
from rail.policy.decision import Action, Decision, Stage, Verdict, Violation
from rail.scoring import ScorerSettings, ToxicityScorer

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


def _merge(*decisions: Decision | None) -> Verdict:
    verdicts = {d.verdict for d in decisions if d is not None}
    if Verdict.BLOCKED in verdicts:
        return Verdict.BLOCKED
    return Verdict.MODIFIED if Verdict.MODIFIED in verdicts else Verdict.ALLOWED


class GatedGenerator:
    """Generate text that has passed the deployment's policy, with attribution, scores and an audit record.

    Construction checks the deployment declaration first and raises DeploymentRefused (naming the clause)
    before any weights are loaded. ``model`` is a loaded TextGenerator or a hub id / local directory;
    ``policy`` a Policy or a pack name / file; ``declaration`` a Declaration or its YAML file. ``scorer``
    defaults to detoxify configured from the environment and loads on first need. ``signing_key`` (a key
    file or loaded key) signs provenance records; ``watermark`` adds a statistical watermark.
    """

    def __init__(
        self,
        *,
        model: TextGenerator | str,
        declaration: Any,
        policy: Any = DEFAULT_POLICY,
        scorer: ToxicityScorer | ScorerSettings | None = None,
        sink: AuditSink | None = None,
        params: GenerationParams | None = None,
        watermark: WatermarkSettings | None = None,
        signing_key: Any = None,
        disclosure: Disclosure | None = None,
        model_options: Mapping[str, Any] | None = None,
    ) -> None:
        from rail.policy import PolicyEngine, load_declaration, load_policy

        self.policy = policy if hasattr(policy, "rules") else load_policy(policy)
        self.declaration = (
            declaration if hasattr(declaration, "disclosure") else load_declaration(declaration)
        )
        self.engine = PolicyEngine(self.policy)
        self.engine.require_deployment(self.declaration)
        self.model = (
            model if isinstance(model, TextGenerator) else load_model(model, **dict(model_options or {}))
        )
        self.scorer = (
            scorer
            if isinstance(scorer, ToxicityScorer)
            else ToxicityScorer(scorer or ScorerSettings.from_env())
        )
        self.sink = sink
        self.params = params or GenerationParams()
        self.watermark = watermark
        self._watermarking_config = watermark.to_transformers() if watermark else None
        self.signing_key = signing_key
        self.disclosure = disclosure or Disclosure.from_declaration(self.declaration)
        self._needs_scores = {stage: self.engine.needs_scores(stage) for stage in (Stage.INPUT, Stage.OUTPUT)}

    # -- steps ---------------------------------------------------------------------------------------------

    def _score(
        self, stage: Stage, texts: list[str], languages: list[str | None]
    ) -> tuple[list[dict[str, float] | None], str | None]:
        """Score texts in one batch when a rule at ``stage`` needs it; return (scores, error)."""
        if not texts or not self._needs_scores[stage]:
            return [None] * len(texts), None
        try:
            return list(self.scorer.score(texts, languages)), None
        except ScorerError as exc:
            return [None] * len(texts), f"toxicity scorer unavailable: {exc}"

    def _check_inputs(self, requests: list[_Request]) -> None:
        t0 = time.perf_counter()
        for r in requests:
            r.language = detect(r.prompt)
        t1 = time.perf_counter()
        scores, error = self._score(Stage.INPUT, [r.prompt for r in requests], [r.language for r in requests])
        t2 = time.perf_counter()
        for r, s in zip(requests, scores, strict=True):
            if s is not None:
                r.scores["prompt"] = s
            r.input = self.engine.check(
                r.prompt, Stage.INPUT, scores=s, scores_error=error, language=r.language
            )
        t3 = time.perf_counter()
        for r in requests:
            r.durations.update(input_checks=(t1 - t0 + t3 - t2) * 1000, scoring=(t2 - t1) * 1000)

    def _check_outputs(self, requests: list[_Request]) -> None:
        t0 = time.perf_counter()
        texts = [r.completion.text for r in requests if r.completion]
        languages = [detect(t) for t in texts]
        t1 = time.perf_counter()
        scores, error = self._score(Stage.OUTPUT, texts, languages)
        t2 = time.perf_counter()
        for r, text, language, s in zip(requests, texts, languages, scores, strict=True):
            if s is not None:
                r.scores["output"] = s
            r.language = language or r.language
            r.output = self.engine.check(text, Stage.OUTPUT, scores=s, scores_error=error, language=language)
        t3 = time.perf_counter()
        for r in requests:
            r.durations["output_checks"] = (t1 - t0 + t3 - t2) * 1000
            r.durations["scoring"] = r.durations.get("scoring", 0.0) + (t2 - t1) * 1000

    def _provenance(self, r: _Request, final_text: str, params: GenerationParams) -> Provenance:
        info = self.model.info
        provenance = Provenance(
            model=info.model_id,
            model_revision=info.commit or info.revision,
            licence=info.licence or getattr(self.policy, "licence", None),
            policy_id=self.policy.id,
            policy_sha256=self.policy.sha256,
            deployment=self.declaration.name,
            time=utc_now(),
            output_sha256=sha256_text(final_text),
            params=params.to_dict(),
            request_id=r.request_id,
            language=r.language,
            disclosure=self.disclosure.position if self.disclosure.mode == "visible" else None,
            watermark=self.watermark.to_dict() if self.watermark else None,
        )
        return provenance.sign(self.signing_key) if self.signing_key is not None else provenance

    def _model_name(self) -> str:
        return Path(self.model.info.model_id).name if self.model.info.local else self.model.info.model_id

    def _finish(self, r: _Request, params: GenerationParams, final_text: str | None = None) -> GateResult:
        """Attribute an output that passed, build the audit record, emit it and return the result."""
        t0 = time.perf_counter()
        verdict = _merge(r.input, r.output)
        provenance = None
        if verdict is not Verdict.BLOCKED and r.output is not None:
            if final_text is None:
                final_text = self.disclosure.apply(r.output.text, r.language, self._model_name())
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
        info = self.model.info
        extra: dict[str, Any] = {}
        if c is not None:
            extra["prompt_hygiene"] = c.hygiene.to_dict()
        if self.watermark:
            extra["watermark"] = self.watermark.to_dict()
        record = AuditRecord(
            request_id=r.request_id,
            deployment=self.declaration.name,
            model=info.model_id,
            model_revision=info.commit or info.revision,
            provider="transformers",
            params=params.to_audit(),
            input_tokens=c.input_tokens if c else None,
            output_tokens=c.output_tokens if c else None,
            finish_reason=c.finish_reason if c else None,
            verdict=verdict.value,
            violations=tuple(v.to_dict() for v in violations),
            scores=r.scores,
            language=r.language,
            provenance=provenance.to_dict() if provenance else None,
            policy_id=self.policy.id,
            policy_sha256=self.policy.sha256,
            licence=info.licence or getattr(self.policy, "licence", None),
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

    # -- public API ----------------------------------------------------------------------------------------

    def generate(self, prompt: str | Sequence[str], **params: Any) -> GateResult | list[GateResult]:
        """Run prompt(s) through the gate; one GateResult per prompt (a list when given a list).

        Keyword arguments override this gate's GenerationParams for this call (max_new_tokens, seed, stop …).
        Prompts blocked at input are not generated; the others are generated together in one batch.
        """
        single = isinstance(prompt, str)
        prompts = [prompt] if single else list(prompt)
        run = self.params.replace(**params) if params else self.params
        requests = [_Request(p) for p in prompts]
        self._check_inputs(requests)
        passing = [r for r in requests if r.input is not None and r.input.allowed]
        if passing:
            t0 = time.perf_counter()
            notes = self.model.prepare([r.input.text for r in passing])  # type: ignore[union-attr]
            completions = self.model.generate(
                [r.input.text for r in passing],
                run,  # type: ignore[union-attr]
                watermarking_config=self._watermarking_config,
                notes=notes,
            )
            elapsed = (time.perf_counter() - t0) * 1000
            for r, c in zip(passing, completions, strict=True):
                r.completion, r.durations["generate"] = c, elapsed
            self._check_outputs(passing)
        results = [self._finish(r, run) for r in requests]
        return results[0] if single else results

    def generate_stream(self, prompt: str, **params: Any) -> GateStream:
        """Generate for one prompt, yielding text as it passes the output checks (see the module doc)."""
        return GateStream(self, prompt, self.params.replace(**params) if params else self.params)


class GateStream:
    """Iterate the released text of one gated request; ``.result`` holds the GateResult afterwards.

    The chunks joined equal ``result.final_text`` when the request was allowed (disclosure included).
    When an output check fails mid-stream, generation stops, the stream ends, and ``result`` is blocked:
    the text already released had passed every check on the output up to that point.
    """

    def __init__(self, gate: GatedGenerator, prompt: str, params: GenerationParams) -> None:
        self._gate = gate
        self._prompt = prompt
        self._params = params
        self.result: GateResult | None = None
        self._prefixed = False

    def __iter__(self) -> Iterator[str]:
        gate, params = self._gate, self._params
        r = _Request(self._prompt)
        gate._check_inputs([r])
        if r.input is None or not r.input.allowed:
            self.result = gate._finish(r, params)
            return
        r.note = gate.model.prepare([r.input.text])[0]
        stream = gate.model.stream(
            r.input.text, params, watermarking_config=gate._watermarking_config, note=r.note
        )
        t0 = time.perf_counter()
        raw = ""  # everything the model produced so far
        released = ""  # checked (possibly redacted) text already yielded, without disclosure
        shown: list[str] = []
        prefix = gate.disclosure.mode == "visible" and gate.disclosure.position == "prefix"
        failed = False
        for chunk in stream:
            raw += chunk
            if failed:
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
        r.durations["generate"] = (time.perf_counter() - t0) * 1000
        r.completion = stream.completion
        tail = (
            None
            if failed or r.completion is None
            else self._release(r, r.completion.text, released, prefix and not released)
        )
        if tail is None:
            self.result = gate._finish(r, params)
            return
        released += tail[1]
        ending = tail[0]
        if gate.disclosure.mode == "visible" and (not released or gate.disclosure.position == "suffix"):
            notice, _ = gate.disclosure.notice(r.language, gate._model_name())
            ending += gate.disclosure.separator + notice if released else notice
        if ending:
            shown.append(ending)
            yield ending
        self.result = gate._finish(r, params, final_text="".join(shown))

    def _release(self, r: _Request, text: str, released: str, with_prefix: bool) -> tuple[str, str] | None:
        """Check the output so far; return (text to yield, new checked text) or None when it must stop."""
        gate = self._gate
        t0 = time.perf_counter()
        language = detect(text) or r.language
        t1 = time.perf_counter()
        scores, error = gate._score(Stage.OUTPUT, [text], [language])
        t2 = time.perf_counter()
        decision = gate.engine.check(
            text, Stage.OUTPUT, scores=scores[0], scores_error=error, language=language
        )
        # Checks of a stream add up over its pieces; they overlap generation, which runs meanwhile.
        for key, spent in (("output_checks", t1 - t0 + time.perf_counter() - t2), ("scoring", t2 - t1)):
            r.durations[key] = r.durations.get(key, 0.0) + spent * 1000
        if scores[0] is not None:
            r.scores["output"] = scores[0]
        r.output = decision
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
            r.output = Decision(Verdict.BLOCKED, decision.text, violations, decision.skipped)
            return None
        new = decision.text[len(released) :]
        if not (self._prefixed and released):
            r.language = language  # the disclosure's language once a prefix notice is out
        if with_prefix and new:
            self._prefixed = True
            notice, _ = gate.disclosure.notice(language, gate._model_name())
            return notice + gate.disclosure.separator + new, new
        return new, new

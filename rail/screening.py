"""Screen a batch of texts at one stage — language, scores, checks — in the one order every caller shares.

The gate (plain and streamed), ``rail check``, ``rail policy eval`` and the HTTP server all screen through
:class:`Screening`, so a text is judged the same way wherever it arrives:

    detect language ─► toxicity scores (only when a rule at this stage reads them) ─► the policy's checks

>>> from rail.policy import PolicyEngine, load_policy
>>> screening = Screening(PolicyEngine(load_policy()), weights_free=True)
>>> [s.decision.verdict.value for s in screening.screen(["Why is the sky blue?"], "input")]
['allowed']
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from rail.errors import ConfigError, ScorerError
from rail.language import detect
from rail.policy.checks import check_kinds
from rail.policy.decision import Decision, Stage
from rail.policy.engine import PolicyEngine
from rail.scoring import ScorerSettings, ToxicityScorer

__all__ = ["Screened", "Screening"]


@dataclass(frozen=True)
class Screened:
    """One text after screening: the Decision, the language found, every score, and where time went.

    ``scores`` holds the detoxify labels (when scored) and the numbers checks recorded (``semantic.a`` …).
    ``durations_ms`` has ``language``, ``scoring`` and ``checks``: the batch's time for each step.
    """

    decision: Decision
    language: str | None
    scores: Mapping[str, float] = field(default_factory=dict)
    durations_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


class Screening:
    """Screen texts against one policy: ``screen(texts, stage)`` returns one :class:`Screened` per text.

    ``scorer`` is a ToxicityScorer or its settings (default: from the environment); it loads a model only
    when a rule at the stage reads scores. ``weights_free`` skips every rule that needs a model;
    ``without`` skips the rules of the named check kinds (e.g. ``{"toxicity"}`` on a machine without
    detoxify checkpoints). Skipped rules are listed in each Decision's ``skipped``.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        scorer: ToxicityScorer | ScorerSettings | None = None,
        *,
        weights_free: bool = False,
        without: Collection[str] = (),
    ) -> None:
        unknown = sorted(set(without) - set(check_kinds()))
        if unknown:
            raise ConfigError(
                f"unknown check kind {', '.join(map(repr, unknown))} to run without",
                path="--without",
                hint=f"known kinds: {', '.join(check_kinds())}",
            )
        self.engine = engine
        if not isinstance(scorer, ToxicityScorer):
            scorer = ToxicityScorer(scorer or ScorerSettings.from_env())
        self.scorer = scorer
        self.weights_free = weights_free
        self.without = frozenset(without)
        self._needs_scores = {
            stage: not weights_free and engine.needs_scores(stage, without=self.without)
            for stage in (Stage.INPUT, Stage.OUTPUT)
        }

    def needs_scores(self, stage: Stage | str) -> bool:
        """Whether screening at ``stage`` runs the toxicity scorer."""
        return self._needs_scores[Stage(stage)]

    def screen(
        self,
        texts: Sequence[str],
        stage: Stage | str,
        *,
        languages: Sequence[str | None] | None = None,
    ) -> list[Screened]:
        """Screen ``texts`` at ``stage`` (input or output) in one batch; ``languages`` skips detection."""
        stage = Stage(stage)
        texts = list(texts)
        if not texts:
            return []
        t0 = time.perf_counter()
        found = list(languages) if languages is not None else [detect(t) for t in texts]
        t1 = time.perf_counter()
        scores: list[Mapping[str, float] | None] = [None] * len(texts)
        error = None
        if self.needs_scores(stage):
            try:
                scores = list(self.scorer.score(texts, found))
            except ScorerError as exc:
                error = str(exc)
        t2 = time.perf_counter()
        decisions = self.engine.check_batch(
            texts, stage, scores=scores, scores_error=error, languages=found,
            weights_free=self.weights_free, without=self.without,
        )
        t3 = time.perf_counter()
        durations = {"language": (t1 - t0) * 1000, "scoring": (t2 - t1) * 1000, "checks": (t3 - t2) * 1000}
        return [
            Screened(decision, language, {**(s or {}), **decision.measurements}, durations)
            for decision, language, s in zip(decisions, found, scores, strict=True)
        ]

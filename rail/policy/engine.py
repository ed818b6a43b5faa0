"""Apply a policy to a text at one stage, or to a deployment declaration, and return a Decision."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from rail.errors import DeploymentRefused
from rail.policy.checks import CheckInput, CheckUnavailable, Finding, group_checks
from rail.policy.decision import Action, Decision, Stage, Verdict, Violation
from rail.policy.declaration import Declaration
from rail.policy.loader import Policy, Rule
from rail.policy.pii import replace_spans

__all__ = ["PolicyEngine"]


class PolicyEngine:
    """Run a policy's rules: ``check`` for prompts and outputs, ``check_deployment`` for the declaration.

    >>> from rail.policy import load_policy
    >>> engine = PolicyEngine(load_policy())
    >>> engine.check("Translate to English: Je t’aime.", "input", weights_free=True).allowed
    True
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._by_stage: dict[Stage, tuple[Rule, ...]] = {
            stage: tuple(r for r in policy.rules if stage in r.stages) for stage in Stage
        }
        for stage in (Stage.INPUT, Stage.OUTPUT):
            group_checks(stage.value, [(r.kind, r.check) for r in self._by_stage[stage]])

    def rules_for(self, stage: Stage | str) -> tuple[Rule, ...]:
        """Return the enabled rules that run at ``stage``."""
        return self._by_stage[Stage(stage)]

    def needs_scores(self, stage: Stage | str, *, without: Collection[str] = ()) -> bool:
        """Whether any rule at ``stage`` needs toxicity scores (callers can skip scoring otherwise)."""
        return any(r.needs_scores and r.kind not in without for r in self.rules_for(stage))

    def check(
        self,
        text: str,
        stage: Stage | str,
        *,
        scores: Mapping[str, float] | None = None,
        scores_error: str | None = None,
        language: str | None = None,
        weights_free: bool = False,
        without: Collection[str] = (),
    ) -> Decision:
        """Check ``text`` at ``stage`` (input or output) and return the Decision (see :meth:`check_batch`)."""
        return self.check_batch(
            [text], stage, scores=[scores], scores_error=scores_error, languages=[language],
            weights_free=weights_free, without=without,
        )[0]

    def check_batch(
        self,
        texts: Sequence[str],
        stage: Stage | str,
        *,
        scores: Sequence[Mapping[str, float] | None] | None = None,
        scores_error: str | None = None,
        languages: Sequence[str | None] | None = None,
        weights_free: bool = False,
        without: Collection[str] = (),
    ) -> list[Decision]:
        """Check each text at ``stage`` and return one Decision per text, in order.

        Checks that work on a whole batch (one embedding call for every text) do that work once, before
        any text is decided. Toxicity rules read ``scores`` (detoxify label → probability, one mapping or
        None per text). Rules of a kind in ``without``, and with ``weights_free`` every rule that needs a
        model, are not run and are listed in ``Decision.skipped``. A rule that should run but cannot (no
        scores, a model that does not load) blocks the text with the reason, or only warns when the policy
        sets ``fail_open``.
        """
        stage = Stage(stage)
        if stage is Stage.DEPLOYMENT:
            raise ValueError("use check_deployment() for the deployment stage")
        count = len(texts)
        per_text_scores = list(scores) if scores is not None else [None] * count
        per_text_languages = list(languages) if languages is not None else [None] * count
        if len(per_text_scores) != count or len(per_text_languages) != count:
            raise ValueError("scores and languages need one entry per text")
        items = [
            CheckInput(text=t, stage=stage.value, scores=s, language=lang)
            for t, s, lang in zip(texts, per_text_scores, per_text_languages, strict=True)
        ]
        found: list[list[Violation]] = [[] for _ in items]
        skipped: list[str] = []
        redactions: list[list[tuple[int, int, str]]] = [[] for _ in items]
        unavailable_action = Action.WARN if self.policy.fail_open else Action.BLOCK
        for rule in self.rules_for(stage):
            if rule.kind in without or (weights_free and rule.needs_weights):
                skipped.append(rule.id)
                continue
            runnable = []
            for index, item in enumerate(items):
                if rule.needs_scores and item.scores is None:
                    reason = f"toxicity scores unavailable: {scores_error or 'no scorer was run'}"
                    found[index].append(self._violation(rule, stage, reason, None, unavailable_action))
                else:
                    runnable.append(index)
            prepare = getattr(rule.check, "prepare", None)
            if prepare is not None and runnable:
                try:
                    prepare([items[i] for i in runnable])
                except CheckUnavailable as exc:
                    for index in runnable:
                        found[index].append(
                            self._violation(rule, stage, f"{rule.kind} check unavailable: {exc}", None,
                                            unavailable_action)
                        )
                    continue
            for index in runnable:
                try:
                    findings = rule.check.find(items[index])
                except CheckUnavailable as exc:
                    found[index].append(
                        self._violation(rule, stage, f"{rule.kind} check unavailable: {exc}", None,
                                        unavailable_action)
                    )
                    continue
                for finding in findings:
                    action = rule.action
                    if action is Action.REDACT and finding.span is None:
                        # Nothing to cut out: fail closed rather than let the text through unchanged.
                        action = Action.BLOCK
                    found[index].append(self._violation(rule, stage, finding.reason, finding.span, action,
                                                        finding))
                    if action is Action.REDACT and finding.span is not None:
                        label = finding.label or rule.id
                        redactions[index].append((finding.span[0], finding.span[1], f"[REDACTED:{label}]"))
        return [
            self._decide(item, tuple(violations), tuple(skipped), cuts)
            for item, violations, cuts in zip(items, found, redactions, strict=True)
        ]

    @staticmethod
    def _decide(item: CheckInput, violations: tuple[Violation, ...], skipped: tuple[str, ...],
                redactions: list[tuple[int, int, str]]) -> Decision:
        measurements = dict(item.measurements)
        if any(v.action is Action.BLOCK for v in violations):
            return Decision(Verdict.BLOCKED, item.text, violations, skipped, measurements)
        if redactions:
            return Decision(Verdict.MODIFIED, replace_spans(item.text, redactions), violations, skipped,
                            measurements)
        return Decision(Verdict.ALLOWED, item.text, violations, skipped, measurements)

    def check_deployment(self, declaration: Declaration) -> Decision:
        """Check the deployment declaration against the policy's declaration rules."""
        item = CheckInput(text=declaration.purpose, stage=Stage.DEPLOYMENT.value, declaration=declaration)
        violations = [
            self._violation(rule, Stage.DEPLOYMENT, finding.reason, None, rule.action)
            for rule in self.rules_for(Stage.DEPLOYMENT)
            for finding in rule.check.find(item)
        ]
        blocked = any(v.action in (Action.BLOCK, Action.REDACT) for v in violations)
        return Decision(
            Verdict.BLOCKED if blocked else Verdict.ALLOWED, declaration.purpose, tuple(violations)
        )

    def require_deployment(self, declaration: Declaration) -> Decision:
        """Return the deployment Decision; raise DeploymentRefused naming clauses and rules if blocked."""
        decision = self.check_deployment(declaration)
        if decision.allowed:
            return decision
        refusing = [
            v for v in decision.violations if v.action is not Action.WARN and v.action is not Action.LOG
        ]
        clauses = tuple(sorted({c for v in refusing for c in (v.clauses or _first(v))}))
        lines = "; ".join(f"{v.rule}{_cited(v)}: {v.reason}" for v in refusing)
        named = ", ".join(f"({c})" for c in clauses) or "the model card's out-of-scope uses"
        raise DeploymentRefused(
            f"deployment '{declaration.name}' ({declaration.source}) is refused under {named} of "
            f"{self.policy.licence}: {lines}",
            clauses=clauses,
        )

    def _violation(
        self, rule: Rule, stage: Stage, reason: str, span: tuple[int, int] | None, action: Action,
        finding: Finding | None = None,
    ) -> Violation:
        first = rule.restrictions[0] if rule.restrictions else None
        clauses = tuple(dict.fromkeys(r.clause for r in rule.restrictions))
        if finding is not None and finding.clauses is not None:
            clauses = finding.clauses
        text = reason
        if rule.reference:
            text += f" [{rule.reference}]"
        return Violation(
            rule=rule.id,
            restriction=clauses[0] if clauses else None,
            licence=first.licence if first else (self.policy.licence if clauses else None),
            stage=stage,
            action=action,
            severity=rule.severity,
            reason=text,
            span=span,
            clauses=clauses,
            score=finding.score if finding is not None else None,
            evidence=finding.evidence if finding is not None else None,
        )


def _first(v: Violation) -> tuple[str, ...]:
    return (v.restriction,) if v.restriction else ()


def _cited(v: Violation) -> str:
    clauses = v.clauses or _first(v)
    if not clauses:
        return ""
    word = "clause" if len(clauses) == 1 else "clauses"
    return f" ({word} " + ", ".join(f"({c})" for c in clauses) + ")"

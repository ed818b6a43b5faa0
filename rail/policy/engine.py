"""Apply a policy to a text at one stage, or to a deployment declaration, and return a Decision."""

from __future__ import annotations

from collections.abc import Mapping

from rail.errors import DeploymentRefused
from rail.policy.checks import CheckInput
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

    def rules_for(self, stage: Stage | str) -> tuple[Rule, ...]:
        """Return the enabled rules that run at ``stage``."""
        return self._by_stage[Stage(stage)]

    def needs_scores(self, stage: Stage | str) -> bool:
        """Whether any rule at ``stage`` needs toxicity scores (callers can skip scoring otherwise)."""
        return any(r.needs_scores for r in self.rules_for(stage))

    def check(
        self,
        text: str,
        stage: Stage | str,
        *,
        scores: Mapping[str, float] | None = None,
        scores_error: str | None = None,
        language: str | None = None,
        weights_free: bool = False,
    ) -> Decision:
        """Check ``text`` at ``stage`` (input or output) and return the Decision.

        Toxicity rules read ``scores`` (detoxify label → probability). Without scores, a weights-free run
        lists those rules in ``Decision.skipped``; otherwise the request is blocked with the reason
        (``scores_error`` when given), or only warned about when the policy sets ``fail_open``.
        """
        stage = Stage(stage)
        if stage is Stage.DEPLOYMENT:
            raise ValueError("use check_deployment() for the deployment stage")
        item = CheckInput(text=text, stage=stage.value, scores=scores, language=language)
        violations: list[Violation] = []
        skipped: list[str] = []
        redactions: list[tuple[int, int, str]] = []
        for rule in self.rules_for(stage):
            if rule.needs_scores and scores is None:
                if weights_free:
                    skipped.append(rule.id)
                    continue
                reason = f"toxicity scores unavailable: {scores_error or 'no scorer was run'}"
                action = Action.WARN if self.policy.fail_open else Action.BLOCK
                violations.append(self._violation(rule, stage, reason, None, action))
                continue
            for finding in rule.check.find(item):
                action = rule.action
                if action is Action.REDACT and finding.span is None:
                    # Nothing to cut out: fail closed rather than let the text through unchanged.
                    action = Action.BLOCK
                violations.append(self._violation(rule, stage, finding.reason, finding.span, action))
                if action is Action.REDACT and finding.span is not None:
                    label = finding.label or rule.id
                    redactions.append((finding.span[0], finding.span[1], f"[REDACTED:{label}]"))
        if any(v.action is Action.BLOCK for v in violations):
            return Decision(Verdict.BLOCKED, text, tuple(violations), tuple(skipped))
        if redactions:
            return Decision(
                Verdict.MODIFIED, replace_spans(text, redactions), tuple(violations), tuple(skipped)
            )
        return Decision(Verdict.ALLOWED, text, tuple(violations), tuple(skipped))

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
        self, rule: Rule, stage: Stage, reason: str, span: tuple[int, int] | None, action: Action
    ) -> Violation:
        first = rule.restrictions[0] if rule.restrictions else None
        clauses = tuple(dict.fromkeys(r.clause for r in rule.restrictions))
        text = reason
        if rule.reference:
            text += f" [{rule.reference}]"
        return Violation(
            rule=rule.id,
            restriction=first.clause if first else None,
            licence=first.licence if first else None,
            stage=stage,
            action=action,
            severity=rule.severity,
            reason=text,
            span=span,
            clauses=clauses,
        )


def _first(v: Violation) -> tuple[str, ...]:
    return (v.restriction,) if v.restriction else ()


def _cited(v: Violation) -> str:
    clauses = v.clauses or _first(v)
    if not clauses:
        return ""
    word = "clause" if len(clauses) == 1 else "clauses"
    return f" ({word} " + ", ".join(f"({c})" for c in clauses) + ")"

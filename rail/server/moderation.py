"""``/v1/moderations`` from the policy's own checks: OpenAI's result shape, categories named after clauses.

Each input is screened as a prompt (:class:`~rail.screening.Screening` at the input stage, exactly as
the gate screens prompts) without generating anything. Categories:

- ``clause/a`` … ``clause/m`` — one per use restriction of the policy's licence. True when a blocking
  rule citing the clause fired. The score is the check's own: a semantic check's calibrated score
  (``semantic.<clause>`` in the screening's scores, or the violation's score); 1.0 for a lexical
  rule that fired (phrases, regular expressions, PII are yes/no) and 0.0 when nothing scored it.
  Clauses only a deployment declaration can reveal (e.g. (h), (m)) flag only when a text rule covers them.
- the detoxify labels (``toxicity``, ``insult``, ``threat`` …) — present when the policy scored the text;
  the score is detoxify's probability, and the category is true when it reaches the threshold of a
  blocking toxicity rule at the input stage.

``flagged`` is true when the policy blocks the text. Each input gets an audit record with operation
``moderation`` (no model ran: provider ``rail``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rail.audit.record import AuditRecord
from rail.errors import ConfigError
from rail.licences import get_licence
from rail.policy.decision import Action, Stage, Verdict
from rail.policy.loader import Policy
from rail.screening import Screened
from rail.server.protocol import ModerationResult

__all__ = ["clause_categories", "moderate", "moderation_record", "moderation_result"]


def clause_categories(policy: Policy) -> tuple[str, ...]:
    """The clause letters of the policy's licence (or, for a licence rail does not ship, its rules')."""
    try:
        return tuple(get_licence(policy.licence).restrictions)
    except ConfigError:
        return tuple(sorted({r.clause for rule in policy.rules for r in rule.restrictions}))


def _input_thresholds(policy: Policy) -> dict[str, float]:
    limits: dict[str, float] = {}
    for rule in policy.rules:
        if rule.kind == "toxicity" and Stage.INPUT in rule.stages and rule.action is Action.BLOCK:
            for label, value in dict(rule.params.get("thresholds", {})).items():
                limits[label] = min(float(value), limits.get(label, float("inf")))
    return limits


def moderation_result(screened: Screened, policy: Policy) -> ModerationResult:
    """OpenAI's moderation result for one screened text (see the module doc for the categories)."""
    decision = screened.decision
    blocking = [v for v in decision.violations if v.action is Action.BLOCK]
    categories: dict[str, bool] = {}
    scores: dict[str, float] = {}
    for clause in clause_categories(policy):
        cited = [v for v in blocking if clause in v.clauses]
        measured = (
            [float(screened.scores[f"semantic.{clause}"])] if f"semantic.{clause}" in screened.scores else []
        )
        fired = [v.score if v.score is not None else 1.0 for v in cited]
        categories[f"clause/{clause}"] = bool(cited)
        scores[f"clause/{clause}"] = max([0.0, *measured, *fired])
    thresholds = _input_thresholds(policy)
    for label, value in screened.scores.items():
        if "." in label:
            continue  # check measurements (semantic.<clause> …) are reported under their clause
        scores[label] = float(value)
        categories[label] = label in thresholds and value >= thresholds[label]
    return ModerationResult(
        flagged=decision.verdict is Verdict.BLOCKED, categories=categories, category_scores=scores
    )


def moderation_record(
    text: str, screened: Screened, policy: Policy, *, deployment: str, tags: Mapping[str, Any]
) -> AuditRecord:
    """The audit record of one moderated text."""
    decision = screened.decision
    durations = {k: float(v) for k, v in screened.durations_ms.items()}
    durations["total"] = sum(durations.values())
    return AuditRecord(
        deployment=deployment,
        operation="moderation",
        verdict=decision.verdict.value,
        violations=tuple(v.to_dict() for v in decision.violations),
        scores={"prompt": dict(screened.scores)} if screened.scores else {},
        language=screened.language,
        policy_id=policy.id,
        policy_sha256=policy.sha256,
        licence=policy.licence,
        durations_ms=durations,
        prompt=text,
        extra=dict(tags),
    )


def moderate(
    texts: Sequence[str],
    screened: Sequence[Screened],
    policy: Policy,
    *,
    deployment: str,
    tags: Mapping[str, Any],
) -> list[tuple[ModerationResult, AuditRecord]]:
    """Results and audit records for screened texts, in order."""
    return [
        (moderation_result(s, policy), moderation_record(t, s, policy, deployment=deployment, tags=tags))
        for t, s in zip(texts, screened, strict=True)
    ]

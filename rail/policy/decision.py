"""The verdict of the policy engine: a Decision holding the Violations that led to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Verdict(str, Enum):
    """What happened to a request: passed unchanged, passed with changes (redaction), or refused."""

    ALLOWED = "allowed"
    MODIFIED = "modified"
    BLOCKED = "blocked"


class Action(str, Enum):
    """What a rule does when its check fires."""

    BLOCK = "block"
    REDACT = "redact"
    WARN = "warn"
    LOG = "log"


class Stage(str, Enum):
    """Where in a request a rule runs."""

    DEPLOYMENT = "deployment"
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True)
class Violation:
    """One rule that fired: which rule, which licence clause, where in the text and what was done."""

    rule: str
    restriction: str | None
    licence: str | None
    stage: Stage
    action: Action
    severity: str
    reason: str
    span: tuple[int, int] | None = None
    #: Every licence clause the violation cites (``restriction`` is the first of them).
    clauses: tuple[str, ...] = ()
    #: How strongly the check fired, on the check's own scale (a semantic check's calibrated score).
    score: float | None = None
    #: What the check saw, as JSON-shaped data (a semantic check's threshold and nearest exemplars).
    evidence: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used by the CLI, the audit log and reports."""
        return {
            "rule": self.rule,
            "restriction": self.restriction,
            "licence": self.licence,
            "stage": self.stage.value,
            "action": self.action.value,
            "severity": self.severity,
            "reason": self.reason,
            "span": list(self.span) if self.span else None,
            "clauses": list(self.clauses),
            "score": self.score,
            "evidence": dict(self.evidence) if self.evidence is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Violation:
        span = data.get("span")
        restriction = data.get("restriction")
        clauses = data.get("clauses")
        if clauses is None:
            clauses = [restriction] if restriction else []
        score = data.get("score")
        return cls(rule=data["rule"], restriction=restriction, licence=data.get("licence"),
                   stage=Stage(data["stage"]), action=Action(data["action"]),
                   severity=data.get("severity", "medium"), reason=data["reason"],
                   span=(int(span[0]), int(span[1])) if span else None,
                   clauses=tuple(str(c) for c in clauses),
                   score=float(score) if score is not None else None, evidence=data.get("evidence"))


@dataclass(frozen=True)
class Decision:
    """The engine's verdict on one text at one stage.

    ``text`` is the text to use from here on: the original, or the original with redactions applied.
    ``skipped`` names the checks that did not run (for example model-based checks in a weights-free run).
    ``measurements`` holds the numbers checks recorded whether or not they fired (``semantic.a`` …).
    """

    verdict: Verdict
    text: str
    violations: tuple[Violation, ...] = ()
    skipped: tuple[str, ...] = field(default=())
    measurements: Mapping[str, float] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.BLOCKED

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "verdict": self.verdict.value,
            "violations": [v.to_dict() for v in self.violations],
            "skipped": list(self.skipped),
            "measurements": dict(self.measurements),
        }

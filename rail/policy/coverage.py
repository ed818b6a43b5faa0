"""The coverage matrix of a policy: for each licence clause, the controls that cover it and how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rail.licences import get_licence
from rail.policy.loader import Policy

__all__ = ["ClauseCoverage", "Control", "coverage"]


@dataclass(frozen=True)
class Control:
    """One control covering a clause: a rule (or the always-on attribution), its coverage modes and stages."""

    name: str
    modes: tuple[str, ...]
    stages: tuple[str, ...]
    action: str
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.name,
            "coverage": list(self.modes),
            "stages": list(self.stages),
            "action": self.action,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class ClauseCoverage:
    """A clause of the licence, its exact wording, and the controls that cover it (empty: a gap)."""

    clause: str
    text: str
    controls: tuple[Control, ...]

    @property
    def covered(self) -> bool:
        return bool(self.controls)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause,
            "text": self.text,
            "covered": self.covered,
            "controls": [c.to_dict() for c in self.controls],
        }


def coverage(policy: Policy) -> tuple[tuple[ClauseCoverage, ...], tuple[Control, ...]]:
    """Return the matrix clause by clause, and the controls that cite no clause (e.g. model-card rules)."""
    licence = get_licence(policy.licence)
    by_clause: dict[str, list[Control]] = {letter: [] for letter in licence.restrictions}
    unattached = []
    for rule in policy.rules:
        control = Control(
            rule.id, rule.coverage, tuple(s.value for s in rule.stages), rule.action.value, rule.reference
        )
        cited = [r.clause for r in rule.restrictions if r.licence == policy.licence]
        for letter in cited:
            by_clause[letter].append(control)
        if not cited:
            unattached.append(control)
    if policy.attribution.required:
        control = Control("attribution", ("always-on-attribution",), ("output",), "disclose")
        for r in policy.attribution.restrictions:
            if r.licence == policy.licence:
                by_clause[r.clause].append(control)
    rows = tuple(
        ClauseCoverage(letter, licence.restrictions[letter], tuple(controls))
        for letter, controls in by_clause.items()
    )
    return rows, tuple(unattached)

"""Toxicity thresholds per detoxify label, applied to scores computed by the caller.

params: ``thresholds: {<label>: <probability>}``; fires for each label whose score is at or above its
threshold. Labels the scoring model does not produce are ignored (the original model has no
``sexual_explicit``). The engine, not this check, decides what happens when no scores are available.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rail.policy.checks import CheckInput, Finding, Where

KIND = "toxicity"
NEEDS_SCORES = True
YIELDS_SPANS = False


class ToxicityCheck:
    """Fires for each label scored at or above its threshold."""

    def __init__(self, thresholds: Mapping[str, float]) -> None:
        self.thresholds = dict(thresholds)

    def find(self, item: CheckInput) -> list[Finding]:
        scores = item.scores or {}
        return [
            Finding(f"{label} score {scores[label]:.3f} ≥ threshold {limit}")
            for label, limit in self.thresholds.items()
            if label in scores and scores[label] >= limit
        ]


def build(params: Mapping[str, Any], where: Where) -> ToxicityCheck:
    return ToxicityCheck(params["thresholds"])

"""Phrase lists per language, matched on normalized text (see :mod:`rail.policy.matcher`).

params: ``phrases: {<language code>: [phrase, ...]}``. All languages are matched on every text, so a prompt
that mixes languages is still screened. The phrase rules of a stage share one automaton (:func:`group`):
a text is scanned once for all of them, and each rule reports its own phrases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rail.policy.checks import Check, CheckInput, Finding, Where
from rail.policy.matcher import PhraseIndex, PhraseMatch, PhraseMatcher, phrase_lists

KIND = "phrases"
NEEDS_SCORES = False
YIELDS_SPANS = True


class PhraseCheck:
    """Fires on each phrase of any language found in the text."""

    def __init__(self, phrases: Mapping[str, list[str]]) -> None:
        self.languages = tuple(sorted(str(language) for language in phrases))
        self.matcher = PhraseMatcher(phrase_lists(phrases))
        # Per stage: the automaton shared with the stage's other phrase rules, and this rule's place in it.
        self._shared: dict[str, tuple[PhraseIndex, int]] = {}

    def _matches(self, item: CheckInput) -> list[PhraseMatch]:
        shared = self._shared.get(item.stage)
        if shared is None:
            return list(self.matcher.finditer(item.normalized))
        index, owner = shared
        key = ("phrases", index)
        if key not in item.memo:
            item.memo[key] = index.matches(item.normalized)
        found: list[list[PhraseMatch]] = item.memo[key]
        return found[owner]

    def find(self, item: CheckInput) -> list[Finding]:
        return [Finding(f"matched '{m.matched}'", (m.start, m.end)) for m in self._matches(item)]


def group(stage: str, checks: Sequence[Check]) -> None:
    """Compile the phrases of every phrase rule at ``stage`` into one automaton they share."""
    phrase_checks = [c for c in checks if isinstance(c, PhraseCheck)]
    index = PhraseIndex([c.matcher.phrases for c in phrase_checks])
    for owner, check in enumerate(phrase_checks):
        check._shared[stage] = (index, owner)


def build(params: Mapping[str, Any], where: Where) -> PhraseCheck:
    check = PhraseCheck(params["phrases"])
    if not check.matcher.phrases:
        raise where.error(
            "no phrases left after normalization",
            subpath=".params.phrases",
            hint="give at least one phrase with letters in it",
        )
    return check

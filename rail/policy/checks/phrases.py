"""Phrase lists per language, matched on normalized text (see :mod:`rail.policy.matcher`).

params: ``phrases: {<language code>: [phrase, ...]}``. All languages are matched on every text, so a prompt
that mixes languages is still screened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rail.policy.checks import CheckInput, Finding, Where
from rail.policy.matcher import phrase_matcher

KIND = "phrases"
NEEDS_SCORES = False
YIELDS_SPANS = True


class PhraseCheck:
    """Fires on each phrase of any language found in the text."""

    def __init__(self, phrases: Mapping[str, list[str]]) -> None:
        self.languages = tuple(sorted(str(language) for language in phrases))
        self.matcher = phrase_matcher(phrases)

    def find(self, item: CheckInput) -> list[Finding]:
        return [
            Finding(f"matched '{m.matched}'", (m.start, m.end))
            for m in self.matcher.finditer(item.normalized)
        ]


def build(params: Mapping[str, Any], where: Where) -> PhraseCheck:
    check = PhraseCheck(params["phrases"])
    if not check.matcher.phrases:
        raise where.error(
            "no phrases left after normalization",
            subpath=".params.phrases",
            hint="give at least one phrase with letters in it",
        )
    return check

"""Compile many literal phrases into one regular expression that runs in linear time.

Phrases are normalized with :func:`rail.text.normalize` and merged into a trie, which is rendered as nested
alternations of escaped literals: the engine tries each position once and follows at most one phrase's length
of characters from it, so the cost is linear in the text whatever the phrases are.

Phrases in space-delimited scripts match whole words (``kill`` does not match ``skill``); phrases in scripts
written without spaces (Chinese, Japanese, Korean, Thai, Lao, Khmer, Myanmar) match as substrings; phrases in
Arabic script may carry an attached conjunction, preposition or article
(``و``, ``ف``, ``ب``, ``ل``, ``ك``, ``ال``).
A space inside a phrase matches up to three separator characters or none, so ``self harm``, ``self-harm`` and
``selfharm`` are one phrase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rail.text import NormalizedText, normalize

__all__ = ["PhraseMatcher", "phrase_matcher"]

# Characters that continue a word: \w plus combining marks of BLOOM's scripts (Python's \w omits them).
_WORD_CHAR = r"[\w\u0300-\u036f\u0610-\u061a\u064b-\u065f\u0670\u0900-\u0963\u0966-\u0dff]"
_NO_SPACE_SCRIPTS = re.compile(
    r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f]")
_GAP = r"[\W_]{0,3}"
_END_BOUNDED = "\x00b"
_END_FREE = "\x00f"


def _lead(phrase: str) -> str:
    first = phrase[0]
    if _NO_SPACE_SCRIPTS.match(first):
        return "free"
    if _ARABIC.match(first):
        return "arabic"
    return "bounded"


def _render(node: dict[str, dict]) -> str:
    alternatives = []
    ends = []
    for key in sorted(node):
        if key == _END_FREE:
            ends.append("")
        elif key == _END_BOUNDED:
            ends.append(f"(?!{_WORD_CHAR})")
        else:
            token = _GAP if key == " " else re.escape(key)
            alternatives.append(token + _render(node[key]))
    # An unbounded end accepts everything a bounded one does.
    if "" in ends:
        ends = [""]
    alternatives.extend(ends)
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"


@dataclass(frozen=True)
class PhraseMatch:
    """A phrase found in a text: its span in the original text and the normalized text it matched."""

    start: int
    end: int
    matched: str


class PhraseMatcher:
    """Find any of many phrases in normalized text, in one pass.

    >>> m = PhraseMatcher(["make a bomb", "炸弹"])
    >>> [x.matched for x in m.finditer(normalize("How do I MAKE a b0mb?"))]
    ['make a bomb']
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        tries: dict[str, dict[str, dict]] = {"bounded": {}, "arabic": {}, "free": {}}
        self.phrases: tuple[str, ...] = ()
        seen = []
        for raw in phrases:
            phrase = normalize(raw).text.strip()
            if not phrase:
                continue
            seen.append(phrase)
            node = tries[_lead(phrase)]
            for ch in phrase:
                node = node.setdefault(ch, {})
            node[_END_FREE if _NO_SPACE_SCRIPTS.match(phrase[-1]) else _END_BOUNDED] = {}
        self.phrases = tuple(seen)
        parts = []
        if tries["bounded"]:
            parts.append(f"(?<!{_WORD_CHAR})" + _render(tries["bounded"]))
        if tries["arabic"]:
            parts.append(f"(?<!{_WORD_CHAR})(?:[وفبلك](?=ال))?(?:ال)?" + _render(tries["arabic"]))
        if tries["free"]:
            parts.append(_render(tries["free"]))
        self._pattern = re.compile("|".join(parts)) if parts else None

    def finditer(self, text: NormalizedText) -> Iterator[PhraseMatch]:
        """Yield the non-overlapping matches in ``text`` and its variants, with spans in its original text."""
        if self._pattern is None:
            return
        if not text.variants:
            for m in self._pattern.finditer(text.text):
                start, end = text.original_span(m.start(), m.end())
                yield PhraseMatch(start, end, m.group())
            return
        found = sorted(
            (*form.original_span(m.start(), m.end()), m.group())
            for form in (text, *text.variants)
            for m in self._pattern.finditer(form.text)
        )
        seen_end = -1
        for start, end, matched in found:
            if start >= seen_end:
                seen_end = end
                yield PhraseMatch(start, end, matched)


def phrase_matcher(phrases: Mapping[Any, Iterable[str]]) -> PhraseMatcher:
    """Build one matcher from a policy's ``{<language>: [phrase, ...]}`` mapping (all languages together)."""
    return PhraseMatcher(p for _language, items in sorted(phrases.items(), key=lambda kv: str(kv[0]))
                         for p in items)

"""Find many literal phrases, of many rules, in normalized text in one pass.

Phrases are normalized with :func:`rail.text.normalize`. Phrases in space-delimited scripts match whole words
(``kill`` does not match ``skill``); phrases in scripts written without spaces (Chinese, Japanese, Korean,
Thai, Lao, Khmer, Myanmar) match as substrings; phrases in Arabic script may carry an attached
conjunction, preposition or article (``و``, ``ف``, ``ب``, ``ل``, ``ك``, ``ال``). A space inside a phrase
matches up to three separator characters or none, so ``self harm``, ``self-harm`` and ``selfharm`` are one
phrase.

How: a :class:`PhraseIndex` holds the phrases of any number of owners (the phrase rules of one stage) in
one Aho-Corasick automaton (pyahocorasick) keyed by each phrase's word characters. A text is reduced to
its word characters once, the automaton finds every candidate in one pass, and each candidate is confirmed
by that phrase's own pattern at that place (word boundaries, separators, clitics). Both steps are linear in
the text; measured on 1 KB prompts, one pass for all the phrase rules of a stage is several times faster
than one regular-expression pass per rule (``python bench/screening.py``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ahocorasick

from rail.text import NormalizedText, normalize

__all__ = ["PhraseIndex", "PhraseMatch", "PhraseMatcher", "phrase_matcher"]

# Characters that continue a word: \w plus combining marks of BLOOM's scripts (Python's \w omits them).
_WORD_CHAR = r"[\w\u0300-\u036f\u0610-\u061a\u064b-\u065f\u0670\u0900-\u0963\u0966-\u0dff]"
_NO_SPACE_SCRIPTS = re.compile(
    r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f]")
_GAP = r"[\W_]{0,3}"
_ARABIC_CLITIC = "(?:[وفبلك](?=ال))?(?:ال)?"
# The longest clitic prefix (a conjunction and the article) a confirmed match may start before its key.
_CLITIC_REACH = 3
_KEY_CHARS = re.compile(r"[^\W_]+")
_NOT_KEY_CHARS = re.compile(r"[\W_]+")


def _key(phrase: str) -> str:
    """The word characters of ``phrase``: what the automaton looks for in a text reduced the same way."""
    return "".join(_KEY_CHARS.findall(phrase))


@lru_cache(maxsize=16384)
def _confirm(phrase: str) -> re.Pattern[str]:
    """The exact pattern of one normalized phrase, tried where the automaton found its key."""
    body = "".join(_GAP if ch == " " else re.escape(ch) for ch in phrase)
    end = "" if _NO_SPACE_SCRIPTS.match(phrase[-1]) else f"(?!{_WORD_CHAR})"
    first = phrase[0]
    if _NO_SPACE_SCRIPTS.match(first):
        return re.compile(body + end)
    if _ARABIC.match(first):
        return re.compile(f"(?<!{_WORD_CHAR}){_ARABIC_CLITIC}{body}{end}")
    return re.compile(f"(?<!{_WORD_CHAR}){body}{end}")


@dataclass(frozen=True)
class PhraseMatch:
    """A phrase found in a text: its span in the original text and the normalized text it matched."""

    start: int
    end: int
    matched: str


class _Reduced:
    """A text's word characters; the map back to the full text is built only when something is found."""

    def __init__(self, full: str) -> None:
        self.full = full
        self.text = _NOT_KEY_CHARS.sub("", full)
        self._reduced_starts: list[int] = []
        self._full_starts: list[int] = []

    def full_index(self, index: int) -> int:
        if not self._full_starts:
            length = 0
            for m in _KEY_CHARS.finditer(self.full):
                self._reduced_starts.append(length)
                self._full_starts.append(m.start())
                length += m.end() - m.start()
        run = bisect.bisect_right(self._reduced_starts, index) - 1
        return self._full_starts[run] + index - self._reduced_starts[run]


class PhraseIndex:
    """Phrases of several owners in one automaton; ``matches(text)`` gives each owner's matches.

    ``lists[i]`` are the phrases of owner ``i``. Each owner gets what a pass of its own phrases alone would
    give: non-overlapping matches, the longest at each leftmost start, in the text and its variants, with
    spans in the original text.
    """

    def __init__(self, lists: Sequence[Iterable[str]]) -> None:
        self.owners = len(lists)
        self.phrases: list[tuple[str, ...]] = []
        by_key: dict[str, list[tuple[int, str]]] = {}
        for owner, phrases in enumerate(lists):
            kept = []
            for raw in phrases:
                phrase = normalize(raw).text.strip()
                if not phrase or not _key(phrase):
                    continue
                kept.append(phrase)
                entries = by_key.setdefault(_key(phrase), [])
                if (owner, phrase) not in entries:
                    entries.append((owner, phrase))
            self.phrases.append(tuple(kept))
        self._automaton: Any = None
        if by_key:
            automaton = ahocorasick.Automaton()
            for key, entries in by_key.items():
                automaton.add_word(key, (len(key), tuple(entries)))
            automaton.make_automaton()
            self._automaton = automaton

    def _candidates(self, text: str) -> list[list[tuple[int, int, str]]]:
        found: list[list[tuple[int, int, str]]] = [[] for _ in range(self.owners)]
        if self._automaton is None:
            return found
        reduced = _Reduced(text)
        for last, (length, entries) in self._automaton.iter(reduced.text):
            start = reduced.full_index(last - length + 1)
            for owner, phrase in entries:
                pattern = _confirm(phrase)
                for at in range(max(0, start - _CLITIC_REACH), start + 1):
                    m = pattern.match(text, at)
                    if m is not None and m.end() > start:
                        found[owner].append((m.start(), m.end(), m.group()))
                        break
        return found

    def matches(self, text: NormalizedText) -> list[list[PhraseMatch]]:
        """Every owner's matches in ``text`` (and its variants), in order of their start."""
        per_owner: list[list[tuple[int, int, str]]] = [[] for _ in range(self.owners)]
        for form in (text, *text.variants):
            for owner, spans in enumerate(self._candidates(form.text)):
                per_owner[owner].extend(_leftmost_longest(spans, form))
        out = []
        for spans in per_owner:
            kept = []
            seen_end = -1
            for start, end, matched in sorted(spans):
                if start >= seen_end:
                    seen_end = end
                    kept.append(PhraseMatch(start, end, matched))
            out.append(kept)
        return out


def _leftmost_longest(spans: list[tuple[int, int, str]], form: NormalizedText) -> list[tuple[int, int, str]]:
    """Non-overlapping matches of one owner in one form, as a single regex pass would find them."""
    kept = []
    end_seen = 0
    for start, end, matched in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start < end_seen:
            continue
        end_seen = end
        kept.append((*form.original_span(start, end), matched))
    return kept


class PhraseMatcher:
    """Find any of many phrases in normalized text, in one pass (one owner of a :class:`PhraseIndex`).

    >>> m = PhraseMatcher(["make a bomb", "炸弹"])
    >>> [x.matched for x in m.finditer(normalize("How do I MAKE a b0mb?"))]
    ['make a bomb']
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self._index = PhraseIndex([list(phrases)])
        self.phrases: tuple[str, ...] = self._index.phrases[0]

    def finditer(self, text: NormalizedText) -> Iterator[PhraseMatch]:
        """Yield the non-overlapping matches in ``text`` and its variants, with spans in its original text."""
        yield from self._index.matches(text)[0]


def phrase_lists(phrases: Mapping[Any, Iterable[str]]) -> list[str]:
    """All phrases of a policy's ``{<language>: [phrase, ...]}`` mapping, languages in sorted order."""
    return [p for _language, items in sorted(phrases.items(), key=lambda kv: str(kv[0])) for p in items]


def phrase_matcher(phrases: Mapping[Any, Iterable[str]]) -> PhraseMatcher:
    """Build one matcher from a policy's ``{<language>: [phrase, ...]}`` mapping (all languages together)."""
    return PhraseMatcher(phrase_lists(phrases))

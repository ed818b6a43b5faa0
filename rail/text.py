"""Normalize text before lexical checks so that disguised words still match, and map matches back.

Every lexical check (phrase lists, regular expressions) runs on ``normalize(text).text``. The steps, in order:

1. Unicode NFKC (fullwidth, ligatures, mathematical letters, circled letters become plain characters).
2. Format characters removed (Unicode category Cf: zero-width spaces and joiners, bidi controls, soft hyphen,
   BOM, tag characters); characters whose case folding is longer than one character are expanded
   (``ß`` → ``ss``).
3. Words spelled letter by letter with separators are joined: ``m.e.t.h``, ``m-e-t-h``, ``m e t h`` → ``meth``
   (three or more single characters, at least one a letter, separated by one to three of
   ``space . - _ * | / \\ ~ + · •``).
4. Runs of whitespace become one space.
5. Cyrillic and Greek look-alikes become Latin letters, but only in a word that mixes them with Latin
   letters, or in a word made only of look-alikes in a text whose letters are mostly Latin. Genuine Russian
   or Greek text is kept.
6. Case folding; typographic quotes and apostrophes become ASCII ``'`` and ``"``; every whitespace character
   becomes a space.
7. Leetspeak digits and symbols (``0 1 3 4 5 7 @ $`` → ``o i e a s t a s``) inside letter-dominated
   words only, so
   phone numbers, years, versions, ordinals (``4th``) and names such as ``mp3`` are untouched.

Every step is linear in the input: the regular expressions used here are built so that no input makes them
backtrack more than a bounded amount per character. :meth:`NormalizedText.original_span` maps a span of the
normalized text back to the span of the original text it came from.

>>> n = normalize("Buy m\\u200be\\u200bth")
>>> n.text
'buy meth'
>>> n.original_span(4, 8)
(4, 11)
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

__all__ = ["NormalizedText", "normalize"]

# Unicode category Cf (format characters) as of Unicode 14; tests compare this with unicodedata.
_CF_RANGES = (
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
_CF_CLASS = "".join(f"{chr(a)}-{chr(b)}" if a != b else chr(a) for a, b in _CF_RANGES)

# Look-alikes of Latin letters in Cyrillic and Greek, case kept (upper maps to upper, lower to lower).
_HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic
        "А": "A",
        "В": "B",
        "Е": "E",
        "Ё": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "У": "Y",
        "Х": "X",
        "І": "I",
        "Ї": "I",
        "Ј": "J",
        "Ѕ": "S",
        "Ԛ": "Q",
        "Ԝ": "W",
        "Һ": "H",
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "һ": "h",
        "ү": "y",
        "ɡ": "g",
        # Greek
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
        "α": "a",
        "β": "b",
        "γ": "y",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "μ": "u",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ς": "c",
    }
)
_CONFUSABLE = frozenset(chr(c) for c in _HOMOGLYPHS)
_CYR_GREEK = "\u0370-\u03ff\u0400-\u052f"

_QUOTES_AND_SPACE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u02bc": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\t": " ",
        "\n": " ",
        "\r": " ",
        "\x0b": " ",
        "\x0c": " ",
        "\x85": " ",
        "\u2028": " ",
        "\u2029": " ",
        "\x1c": " ",
        "\x1d": " ",
        "\x1e": " ",
        "\x1f": " ",
        "\u1680": " ",
    }
)

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_CHARS = frozenset("013457@$")

# A word for folding purposes: letters, digits, and the two leet symbols. "_" separates words.
_TOKEN = r"[^\W_]|[@$]"
_SEPARATOR = r"[\s.\-_*|/\\~+\u00b7\u2022]"
# Each single character is followed by a separator or the end, so a match grows greedily and never has to
# give back more than one separator run: linear time even on hostile input such as "a a a ... aa".
_SPELLED = re.compile(
    rf"(?<![^\W_])(?<![@$])(?:{_TOKEN})(?:{_SEPARATOR}{{1,3}}(?:{_TOKEN})(?![^\W_])(?![@$])){{2,}}"
)
_SEPARATOR_RUN = re.compile(rf"{_SEPARATOR}+")
_WHITESPACE_RUN = re.compile(r"\s{2,}")
_CF = re.compile(f"[{_CF_CLASS}]+")
_WORD = re.compile(r"[\w@$]+")
_HAS_CYR_GREEK = re.compile(f"[{_CYR_GREEK}]")
_LATIN_LETTER = re.compile(r"[A-Za-z\u00c0-\u024f]")
_LINE = re.compile(r"[^\n]+")
_LEET_WORD = re.compile(r"(?<![\w@$])[\w@$]*[013457@$][\w@$]*")
_UNIT_OR_ORDINAL = re.compile(r"\d+[^\W\d_]{1,3}|[^\W\d_]+\d+")


@dataclass(frozen=True)
class _Stage:
    """Edits one step made: output span [out_start, out_end) replaced input span [in_start, in_end)."""

    out_starts: tuple[int, ...]
    out_ends: tuple[int, ...]
    in_starts: tuple[int, ...]
    in_ends: tuple[int, ...]

    def char_range(self, p: int) -> tuple[int, int]:
        """Return the input span that output character ``p`` came from."""
        k = bisect_right(self.out_starts, p) - 1
        if k < 0:
            return p, p + 1
        if p < self.out_ends[k]:
            return self.in_starts[k], self.in_ends[k]
        q = p - self.out_ends[k] + self.in_ends[k]
        return q, q + 1

    def point(self, p: int) -> int:
        """Map an output position that lies between characters (an empty span) to an input position."""
        k = bisect_right(self.out_starts, p) - 1
        if k < 0:
            return p
        if p < self.out_ends[k]:
            return self.in_starts[k]
        return p - self.out_ends[k] + self.in_ends[k]


def _apply(text: str, edits: Iterable[tuple[int, int, str]]) -> tuple[str, _Stage | None]:
    """Apply sorted, non-overlapping ``(start, end, replacement)`` edits; return the text and its map."""
    pieces: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    in_starts: list[int] = []
    in_ends: list[int] = []
    pos = 0
    out = 0
    for start, end, replacement in edits:
        pieces.append(text[pos:start])
        out += start - pos
        out_starts.append(out)
        out += len(replacement)
        out_ends.append(out)
        in_starts.append(start)
        in_ends.append(end)
        pieces.append(replacement)
        pos = end
    if not out_starts:
        return text, None
    pieces.append(text[pos:])
    return "".join(pieces), _Stage(tuple(out_starts), tuple(out_ends), tuple(in_starts), tuple(in_ends))


@dataclass(frozen=True)
class NormalizedText:
    """The normalized form of a text and the map back to the original.

    ``text`` is what lexical checks match on; ``original`` is the text as given.
    """

    text: str
    original: str
    _stages: tuple[_Stage, ...] = ()

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Return the span of ``original`` that the normalized span ``[start, end)`` came from."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(
                f"span ({start}, {end}) is outside the normalized text of length {len(self.text)}"
            )
        if start == end:
            for stage in reversed(self._stages):
                start = stage.point(start)
            return start, start
        a, b = start, end
        for stage in reversed(self._stages):
            a, b = stage.char_range(a)[0], stage.char_range(b - 1)[1]
        return a, b


@cache
def _expanding_casefold() -> re.Pattern[str]:
    # Every character whose case folding is longer than one character lies in the BMP.
    chars = [chr(c) for c in range(0x80, 0x10000) if len(chr(c).casefold()) != 1]
    return re.compile("[" + "".join(re.escape(c) for c in chars) + "]")


def _nfkc_edits(text: str) -> Iterable[tuple[int, int, str]]:
    # Composition never crosses a line break, and ASCII-only lines are already NFKC: only look at the others.
    if text.isascii():
        return
    for line in _LINE.finditer(text):
        chunk = line.group()
        if chunk.isascii() or unicodedata.is_normalized("NFKC", chunk):
            continue
        base = line.start()
        i = 0
        n = len(chunk)
        while i < n:
            j = i + 1
            while j < n and unicodedata.category(chunk[j])[0] == "M":
                j += 1
            cluster = chunk[i:j]
            normal = unicodedata.normalize("NFKC", cluster)
            if normal != cluster:
                yield base + i, base + j, normal
            i = j


def _format_edits(text: str) -> Iterable[tuple[int, int, str]]:
    expanding = _expanding_casefold()
    matches = sorted(
        [(m.start(), m.end(), "") for m in _CF.finditer(text)]
        + [(m.start(), m.end(), m.group().casefold()) for m in expanding.finditer(text)]
    )
    return matches


def _spelled_edits(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _SPELLED.finditer(text):
        run = m.group()
        if not any(c.isalpha() for c in run):
            continue
        # Delete each separator run on its own so spans inside the joined word stay exact.
        for sep in _SEPARATOR_RUN.finditer(run):
            yield m.start() + sep.start(), m.start() + sep.end(), ""


def _whitespace_edits(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _WHITESPACE_RUN.finditer(text):
        yield m.start(), m.end(), " "


def _fold_homoglyphs(text: str) -> str:
    if not _HAS_CYR_GREEK.search(text):
        return text
    latin = len(text) - len(_LATIN_LETTER.sub("", text))
    other = len(text) - len(re.sub(f"[{_CYR_GREEK}]", "", text))
    latin_text = latin > other

    def fold(m: re.Match[str]) -> str:
        word = m.group()
        if not _HAS_CYR_GREEK.search(word):
            return word
        if _LATIN_LETTER.search(word) or (latin_text and all(c in _CONFUSABLE for c in word if c.isalpha())):
            return word.translate(_HOMOGLYPHS)
        return word

    return _WORD.sub(fold, text)


def _letter_dominated(word: str) -> bool:
    letters = sum(1 for c in word if c.isalpha())
    leet = sum(1 for c in word if c in _LEET_CHARS)
    return letters >= 2 and letters >= leet and not _UNIT_OR_ORDINAL.fullmatch(word)


def _fold_leet(text: str) -> str:
    def fold(m: re.Match[str]) -> str:
        word = m.group()
        return word.translate(_LEET) if _letter_dominated(word) else word

    return _LEET_WORD.sub(fold, text)


_EDIT_STEPS: tuple[Callable[[str], Iterable[tuple[int, int, str]]], ...] = (
    _nfkc_edits,
    _format_edits,
    _spelled_edits,
    _whitespace_edits,
)


def normalize(text: str) -> NormalizedText:
    """Return the normalized form of ``text`` used by every lexical check, with a map back to ``text``."""
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    stages: list[_Stage] = []
    current = text
    for step in _EDIT_STEPS:
        current, stage = _apply(current, step(current))
        if stage is not None:
            stages.append(stage)
    # The remaining steps change characters one for one, so they need no map.
    current = _fold_homoglyphs(current)
    current = current.casefold().translate(_QUOTES_AND_SPACE)
    current = _fold_leet(current)
    return NormalizedText(current, text, tuple(stages))

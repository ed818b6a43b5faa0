"""Normalize text before lexical checks so that disguised words still match, and map matches back.

Every lexical check (phrase lists, regular expressions) runs on ``normalize(text).text``. The steps, in order:

1. Unicode NFKC (fullwidth, ligatures, mathematical letters, circled letters become plain characters), and
   nonspacing marks on Latin, Greek and Cyrillic letters dropped (``m\u0308eth``, ``ḿeth``, strike-through
   overlays); marks of other scripts (Arabic vowels, Indic vowel signs) are kept.
2. Format characters removed (Unicode category Cf as the running Python's :mod:`unicodedata` defines it:
   zero-width spaces and joiners, bidi controls, soft hyphen, BOM, tag characters); characters whose case
   folding is longer than one character are expanded (``ß`` → ``ss``). Where such a run separated two word
   characters, :attr:`NormalizedText.variants` holds the normalization with a space in its place.
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
(4, 10)
"""

from __future__ import annotations

import re
import sys
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, partial

__all__ = ["NormalizedText", "normalize", "normalize_light"]



def _ranges(codes: Iterable[int]) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for c in codes:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return tuple(ranges)


@cache
def _category_ranges() -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """Categories Cf (format characters) and Mn (nonspacing marks) as ranges, from this Python's unicodedata.

    Built once, on first use, so the tables always match the Unicode version of the running Python.
    """
    cf: list[int] = []
    mn: list[int] = []
    for c in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(c))
        if category == "Cf":
            cf.append(c)
        elif category == "Mn":
            mn.append(c)
    return _ranges(cf), _ranges(mn)


def _cf_ranges() -> tuple[tuple[int, int], ...]:
    """Unicode category Cf as ranges of code points (zero-width spaces and joiners, bidi controls, …)."""
    return _category_ranges()[0]


def _class(ranges: Iterable[tuple[int, int]]) -> str:
    return "".join(
        f"{re.escape(chr(a))}-{re.escape(chr(b))}" if a != b else re.escape(chr(a)) for a, b in ranges
    )


@cache
def _cf_pattern() -> re.Pattern[str]:
    return re.compile(f"[{_class(_cf_ranges())}]+")


@cache
def _marked_pattern() -> re.Pattern[str]:
    """Any nonspacing mark, or a precomposed Latin/Greek/Cyrillic letter that carries one."""
    precomposed = [
        c
        for c in range(0x80, 0x2000)
        if any(unicodedata.category(d) == "Mn" for d in unicodedata.normalize("NFD", chr(c)))
    ]
    return re.compile(f"[{_class(_category_ranges()[1])}{_class(_ranges(precomposed))}]")


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
    variants: tuple[NormalizedText, ...] = ()

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


_LGC_PREFIXES = ("LATIN ", "GREEK ", "CYRILLIC ")


@cache
def _marks_dropped(ch: str) -> bool:
    """Whether combining marks on the base letter ``ch`` are dropped (Latin, Greek and Cyrillic letters)."""
    return ch.isalpha() and unicodedata.name(ch, "").startswith(_LGC_PREFIXES)


def _strip_marks(s: str) -> str:
    """Drop the nonspacing marks (Mn) that sit on Latin, Greek or Cyrillic letters; keep all others."""
    out = []
    drop = False
    for ch in unicodedata.normalize("NFD", s):
        if unicodedata.category(ch) == "Mn":
            if drop:
                continue
        else:
            drop = _marks_dropped(ch)
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


@cache
def _fold_char(ch: str, strip: bool) -> str:
    normal = unicodedata.normalize("NFKC", ch)
    return _strip_marks(normal) if strip else normal


def _cluster_edits(text: str, strip: bool) -> Iterable[tuple[int, int, str]]:
    """NFKC each base character with its marks; ``strip`` also drops marks on Latin/Greek/Cyrillic letters."""
    # Composition never crosses a line break, and ASCII-only lines are already NFKC: only look at the others.
    if text.isascii():
        return
    for line in _LINE.finditer(text):
        chunk = line.group()
        if chunk.isascii() or (
            unicodedata.is_normalized("NFKC", chunk) and not (strip and _marked_pattern().search(chunk))
        ):
            continue
        base = line.start()
        i = 0
        n = len(chunk)
        while i < n:
            j = i + 1
            while j < n and unicodedata.category(chunk[j])[0] == "M":
                j += 1
            cluster = chunk[i:j]
            if j == i + 1:
                normal = cluster if cluster.isascii() else _fold_char(cluster, strip)
            else:
                normal = unicodedata.normalize("NFKC", cluster)
                if strip:
                    normal = _strip_marks(normal)
            if normal != cluster:
                yield base + i, base + j, normal
            i = j


def _nfkc_edits(text: str) -> Iterable[tuple[int, int, str]]:
    return _cluster_edits(text, True)


def _nfkc_only_edits(text: str) -> Iterable[tuple[int, int, str]]:
    return _cluster_edits(text, False)


def _is_joining_script(ch: str) -> bool:
    return ord(ch) > 0x052F and not ch.isascii()


def _cf_edits(text: str, as_space: bool = False) -> Iterable[tuple[int, int, str]]:
    """Remove format characters; with ``as_space``, a run between two word characters becomes a space."""
    for m in _cf_pattern().finditer(text):
        start, end = m.start(), m.end()
        replacement = ""
        if as_space and 0 < start and end < len(text):
            before, after = text[start - 1], text[end]
            joiners_only = not m.group().strip("\u200c\u200d")
            if (
                (before.isalnum() and after.isalnum())
                # ZWJ/ZWNJ are spelling inside words of Arabic, Persian and Indic scripts: keep them joining.
                and not (joiners_only and (_is_joining_script(before) or _is_joining_script(after)))
            ):
                replacement = " "
        yield start, end, replacement


def _format_edits(text: str, as_space: bool = False) -> Iterable[tuple[int, int, str]]:
    expanding = _expanding_casefold()
    return sorted(
        [*_cf_edits(text, as_space)]
        + [(m.start(), m.end(), m.group().casefold()) for m in expanding.finditer(text)]
    )


def _cf_splits(text: str) -> bool:
    """Whether some format-character run in ``text`` separates two word characters (see :func:`normalize`)."""
    return any(r == " " for _, _, r in _cf_edits(text, True))


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


def _run(text: str, steps: Iterable[Callable[[str], Iterable[tuple[int, int, str]]]]) -> NormalizedText:
    stages: list[_Stage] = []
    current = text
    for step in steps:
        current, stage = _apply(current, step(current))
        if stage is not None:
            stages.append(stage)
    return NormalizedText(current, text, tuple(stages))


def normalize(text: str) -> NormalizedText:
    """Return the normalized form of ``text`` used by every lexical check, with a map back to ``text``.

    When a format character (a zero-width space, a word joiner) stands between two word characters,
    ``variants`` holds a second normalization in which it is a space, so a zero-width space used as the space
    in ``please dox`` still leaves a word boundary before ``dox``. Lexical checks match on ``text`` and on
    each variant.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    nfkc = _run(text, (_nfkc_edits,))
    variants = []
    if _cf_splits(nfkc.text):
        variants.append(_finish(_extend(nfkc, (partial(_format_edits, as_space=True),))))
    main = _finish(_extend(nfkc, (_format_edits,)))
    return NormalizedText(main.text, text, main._stages, tuple(variants))


def _extend(
    base: NormalizedText, steps: Iterable[Callable[[str], Iterable[tuple[int, int, str]]]]
) -> NormalizedText:
    more = _run(base.text, (*steps, _spelled_edits, _whitespace_edits))
    return NormalizedText(more.text, base.original, base._stages + more._stages)


def _finish(n: NormalizedText) -> NormalizedText:
    # The remaining steps change characters one for one, so they need no map.
    current = _fold_homoglyphs(n.text)
    current = current.casefold().translate(_QUOTES_AND_SPACE)
    current = _fold_leet(current)
    return NormalizedText(current, n.original, n._stages)


def normalize_light(text: str) -> NormalizedText:
    """Return a light normalization for detectors that need exact characters (personal data).

    NFKC (fullwidth ``＠`` and digits become ASCII), format characters removed, and every decimal digit of
    any script (Arabic-Indic ``٤``, Devanagari ``४``) written as its ASCII digit; no case, look-alike,
    leetspeak or spacing changes. Spans map back to ``text`` with :meth:`NormalizedText.original_span`.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_light() expects str, got {type(text).__name__}")
    n = _run(text, (_nfkc_only_edits, _cf_edits))
    current = n.text
    if not current.isascii():
        current = _NON_ASCII_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group())), current)
    return NormalizedText(current, text, n._stages)


_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")

"""Build evals/dev.jsonl and evals/test.jsonl from the hand-written rows in evals/rows/.

Run from anywhere: ``python evals/make_sets.py``. The script validates every source row, derives
disguised variants (zero-width characters, homoglyphs, leet digits, spaced-out letters, fullwidth
letters and mixes) from a fixed, seeded sample of forbidden input rows, splits everything into dev
(about 40 %, for calibrating thresholds) and test (about 60 %, for reporting only) stratified by
(expect, clause, lang, tags), and prints the counts. The output depends only on the rows and on SEED.

``--check`` rebuilds in memory and exits 1 if dev.jsonl or test.jsonl on disk differ from the rebuild.
Invalid rows are reported with file, line and field, and the script exits 2 without writing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

SEED = 20240517
DEV_SHARE = 0.4
# Forbidden input rows sampled for disguised variants, per language (English is the largest pool).
DISGUISE_SAMPLE = {
    "en": 72,
    "fr": 10,
    "es": 10,
    "pt": 10,
    "zh": 10,
    "ar": 10,
    "hi": 10,
    "vi": 10,
    "id": 10,
    "sw": 10,
}
VARIANTS_PER_ROW = 2
MAX_TEXT_CHARS = 4000

EVALS = Path(__file__).resolve().parent
ROWS = EVALS / "rows"

LANGS = ("en", "fr", "es", "pt", "zh", "ar", "hi", "vi", "id", "sw")
CLAUSES = tuple("abcdefghijklm")
STAGES = ("input", "output")
EXPECTS = ("block", "allow")
SOURCE_TAGS = frozenset(
    {
        "benchmark-style",
        "ordinary",
        "sensitive-safe",
        "medical-info",
        "roleplay",
        "hypothetical",
        "bloomz-card",
        "output",
        *(f"near-{c}" for c in CLAUSES),
    }
)
DERIVED_TAG = "disguised"
KEYS_ALLOW = ("id", "text", "stage", "expect", "lang", "tags")
KEYS_BLOCK = ("id", "text", "stage", "expect", "clause", "lang", "tags")
ID_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")
# Latin letter -> look-alikes from Cyrillic and Greek.
HOMOGLYPHS: dict[str, tuple[str, ...]] = {
    "a": ("\u0430",),
    "c": ("\u0441",),
    "e": ("\u0435",),
    "i": ("\u0456",),
    "j": ("\u0458",),
    "o": ("\u043e", "\u03bf"),
    "p": ("\u0440", "\u03c1"),
    "s": ("\u0455",),
    "x": ("\u0445", "\u03c7"),
    "y": ("\u0443",),
    "v": ("\u03bd",),
    "A": ("\u0410", "\u0391"),
    "B": ("\u0412", "\u0392"),
    "C": ("\u0421",),
    "E": ("\u0415", "\u0395"),
    "H": ("\u041d", "\u0397"),
    "I": ("\u0406", "\u0399"),
    "K": ("\u041a", "\u039a"),
    "M": ("\u041c", "\u039c"),
    "N": ("\u039d",),
    "O": ("\u041e", "\u039f"),
    "P": ("\u0420", "\u03a1"),
    "T": ("\u0422", "\u03a4"),
    "X": ("\u0425", "\u03a7"),
    "Y": ("\u03a5",),
    "Z": ("\u0396",),
}
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "A": "4", "E": "3", "I": "1", "O": "0", "S": "5"}


class RowError(Exception):
    """A source row breaks the row format; the message names file, line and field."""


@dataclass(frozen=True)
class Row:
    """One evaluation row exactly as it is written to dev.jsonl / test.jsonl."""

    id: str
    text: str
    stage: str
    expect: str
    clause: str | None
    lang: str
    tags: tuple[str, ...]

    def to_json(self) -> str:
        """Serialise in the documented key order, omitting clause for allowed rows."""
        data: dict[str, object] = {
            "id": self.id,
            "text": self.text,
            "stage": self.stage,
            "expect": self.expect,
        }
        if self.clause is not None:
            data["clause"] = self.clause
        data["lang"] = self.lang
        data["tags"] = list(self.tags)
        return json.dumps(data, ensure_ascii=False)


def _check_row(data: object, where: str) -> Row:
    if not isinstance(data, dict):
        raise RowError(f"{where}: each line must be one JSON object, got {type(data).__name__}")
    expect = data.get("expect")
    if expect not in EXPECTS:
        raise RowError(f"{where}: field 'expect' must be one of {', '.join(EXPECTS)}, got {expect!r}")
    wanted = KEYS_BLOCK if expect == "block" else KEYS_ALLOW
    missing = [k for k in wanted if k not in data]
    extra = sorted(set(data) - set(wanted))
    if missing:
        raise RowError(f"{where}: missing field(s) {', '.join(missing)} (expect={expect} rows need {wanted})")
    if extra:
        hint = " (clause is given only when expect is 'block')" if "clause" in extra else ""
        raise RowError(f"{where}: unknown field(s) {', '.join(extra)}{hint}")
    row_id, text, stage, lang, tags = data["id"], data["text"], data["stage"], data["lang"], data["tags"]
    if not isinstance(row_id, str) or not ID_PATTERN.match(row_id) or "-dz-" in row_id:
        raise RowError(
            f"{where}: field 'id' must be lowercase words joined by '-' (e.g. 'l-fr-007') and must not "
            f"contain '-dz-', which marks derived variants; got {row_id!r}"
        )
    if not isinstance(text, str) or not text.strip():
        raise RowError(f"{where}: field 'text' must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise RowError(f"{where}: field 'text' is {len(text)} characters; keep rows under {MAX_TEXT_CHARS}")
    hidden = [
        f"U+{ord(c):04X}" for c in text if c in ZERO_WIDTH or (unicodedata.category(c) == "Cc" and c != "\n")
    ]
    if hidden:
        raise RowError(
            f"{where}: field 'text' contains invisible or control characters ({', '.join(hidden[:3])}); "
            "source rows are plain text, disguised variants are derived by this script"
        )
    if stage not in STAGES:
        raise RowError(f"{where}: field 'stage' must be 'input' or 'output', got {stage!r}")
    if lang not in LANGS:
        raise RowError(f"{where}: field 'lang' must be one of {', '.join(LANGS)}, got {lang!r}")
    clause = data.get("clause")
    if expect == "block" and clause not in CLAUSES:
        raise RowError(f"{where}: field 'clause' must be a letter from 'a' to 'm', got {clause!r}")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RowError(f"{where}: field 'tags' must be a list of strings")
    unknown = sorted(set(tags) - SOURCE_TAGS)
    if unknown:
        reserved = f"; '{DERIVED_TAG}' is added by this script" if DERIVED_TAG in unknown else ""
        raise RowError(
            f"{where}: unknown tag(s) {', '.join(unknown)}{reserved}; "
            f"known tags: {', '.join(sorted(SOURCE_TAGS))}"
        )
    if len(set(tags)) != len(tags):
        raise RowError(f"{where}: field 'tags' lists a tag twice")
    if (stage == "output") != ("output" in tags):
        raise RowError(f"{where}: rows with stage 'output' carry the tag 'output', and only those rows do")
    return Row(row_id, text, stage, expect, clause if expect == "block" else None, lang, tuple(tags))


def load_rows(folder: Path) -> list[Row]:
    """Read and validate every rows/*.jsonl file; raise RowError listing every problem found."""
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise RowError(f"{folder}: no *.jsonl files; the source rows live in evals/rows/")
    rows: list[Row] = []
    problems: list[str] = []
    seen_ids: dict[str, str] = {}
    seen_texts: dict[str, str] = {}
    for path in files:
        rel = path.relative_to(EVALS.parent) if path.is_relative_to(EVALS.parent) else path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            problems.append(
                f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8"
            )
            continue
        for number, line in enumerate(lines, 1):
            where = f"{rel}:{number}"
            if not line.strip():
                problems.append(f"{where}: blank line; every line must hold one JSON object")
                continue
            try:
                row = _check_row(json.loads(line), where)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: invalid JSON at column {exc.colno}: {exc.msg}")
                continue
            except RowError as exc:
                problems.append(str(exc))
                continue
            if row.id in seen_ids:
                problems.append(f"{where}: field 'id' {row.id!r} is already used at {seen_ids[row.id]}")
                continue
            key = " ".join(row.text.split()).casefold()
            if key in seen_texts:
                problems.append(f"{where}: field 'text' repeats the row at {seen_texts[key]}")
                continue
            seen_ids[row.id] = where
            seen_texts[key] = where
            rows.append(row)
    if problems:
        raise RowError("\n".join(problems))
    return rows


def _is_letter(ch: str) -> bool:
    return ch.isalpha() and not unicodedata.category(ch).startswith("M")


def _mostly_latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) / len(letters) >= 0.5


def _words(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def _edit_words(text: str, pick: Callable[[str], str | None], spans: Iterable[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        new = pick(text[start:end])
        out.append(text[last:start])
        out.append(text[start:end] if new is None else new)
        last = end
    out.append(text[last:])
    return "".join(out)


def zero_width(text: str, rng: random.Random) -> str:
    """Insert U+200B/U+200C/U+200D/U+2060 between letters inside words (about one per four letters)."""

    def word(w: str) -> str:
        slots = [i for i in range(1, len(w)) if _is_letter(w[i - 1]) and _is_letter(w[i])]
        if len(w) < 3 or not slots:
            return w
        chosen = set(rng.sample(slots, max(1, min(len(slots), len(w) // 4))))
        return "".join((rng.choice(ZERO_WIDTH) if i in chosen else "") + c for i, c in enumerate(w))

    return _edit_words(text, word, _words(text))


def homoglyphs(text: str, rng: random.Random) -> str:
    """Swap about half of the Latin letters that have Cyrillic or Greek look-alikes."""
    return "".join(rng.choice(HOMOGLYPHS[c]) if c in HOMOGLYPHS and rng.random() < 0.5 else c for c in text)


def leet(text: str, rng: random.Random) -> str:
    """Replace most a/e/i/o/s with 4/3/1/0/5."""
    return "".join(LEET[c] if c in LEET and rng.random() < 0.85 else c for c in text)


def _space_out(word: str) -> str:
    """Space out the letters of word; combining marks stay on their letter, edge punctuation stays put."""
    core = re.match(r"^(\W*)(.*?)(\W*)$", word, re.S)
    assert core is not None  # the pattern matches every string
    lead, body, trail = core.groups()
    clusters: list[str] = []
    for ch in body:
        if clusters and unicodedata.category(ch).startswith("M"):
            clusters[-1] += ch
        else:
            clusters.append(ch)
    return lead + " ".join(clusters) + trail


def spaced(text: str, rng: random.Random) -> str:
    """Space out the letters of the three longest words ("b o m b"); in unspaced scripts, of 2 to 4 runs."""
    spans = _words(text)
    if len(spans) >= 4:
        longest = sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0]))[:3]
        return _edit_words(text, _space_out, sorted(longest))
    runs = [m.span() for m in re.finditer(r"\w{3,}", text)]
    if not runs:
        return text
    chosen = sorted(rng.sample(runs, min(len(runs), rng.randint(2, 4))))
    return _edit_words(text, _space_out, chosen)


def fullwidth(text: str, rng: random.Random) -> str:
    """Turn printable ASCII (except space) into the fullwidth forms U+FF01..U+FF5E."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def mixed(text: str, rng: random.Random) -> str:
    """Disguise each word with a different technique, as hand-made evasions do."""
    latin = _mostly_latin(text)
    kinds: list[Callable[[str, random.Random], str]] = (
        [zero_width, homoglyphs, leet, fullwidth]
        if latin
        else [zero_width, zero_width, lambda w, r: _space_out(w)]
    )

    def word(w: str) -> str:
        return rng.choice(kinds)(w, rng) if rng.random() < 0.6 else w

    result = _edit_words(text, word, _words(text))
    return result if result != text else zero_width(text, rng)


DISGUISES: dict[str, Callable[[str, random.Random], str]] = {
    "zw": zero_width,
    "homoglyph": homoglyphs,
    "leet": leet,
    "spaced": spaced,
    "fullwidth": fullwidth,
    "mix": mixed,
}
LATIN_ONLY = frozenset({"homoglyph", "leet", "fullwidth"})


def disguise(rows: list[Row], rng: random.Random) -> dict[str, list[Row]]:
    """Derive disguised variants for a seeded sample of forbidden input rows, keyed by source id."""
    variants: dict[str, list[Row]] = {}
    for lang, count in DISGUISE_SAMPLE.items():
        pool = sorted(
            (r for r in rows if r.expect == "block" and r.stage == "input" and r.lang == lang),
            key=lambda r: r.id,
        )
        if len(pool) < count:
            raise RowError(
                f"rows/: only {len(pool)} forbidden {lang} input rows; the disguise sample needs {count}"
            )
        for row in rng.sample(pool, count):
            kinds = [k for k in DISGUISES if k not in LATIN_ONLY or _mostly_latin(row.text)]
            made: list[Row] = []
            for kind in rng.sample(kinds, len(kinds)):
                text = DISGUISES[kind](row.text, rng)
                if text != row.text:
                    made.append(
                        Row(
                            f"{row.id}-dz-{kind}",
                            text,
                            row.stage,
                            row.expect,
                            row.clause,
                            row.lang,
                            (*row.tags, DERIVED_TAG),
                        )
                    )
                if len(made) == VARIANTS_PER_ROW:
                    break
            variants[row.id] = made
    return variants


def _labels(key: tuple[bool, str, str, str, tuple[str, ...]]) -> list[str]:
    variants, expect, clause, lang, tags = key
    return [
        f"dz={variants}",
        f"expect={expect}",
        f"clause={clause}",
        f"lang={lang}",
        *(f"tag={t}" for t in tags),
    ]


def split(rows: list[Row], variants: dict[str, list[Row]], rng: random.Random) -> tuple[list[Row], list[Row]]:
    """Assign each source row, with its variants, to dev or test, stratified by (expect, clause, lang, tags).

    Each stratum sends floor or ceil of 40 % of its source rows to dev (which ones is seeded); whether it
    rounds up or down is chosen so that the dev share of every expect, clause, lang and tag value, and of
    the rows that carry disguised variants, stays as close to 40 % as whole rows allow.
    """
    strata: dict[tuple[bool, str, str, str, tuple[str, ...]], list[Row]] = {}
    for row in rows:
        key = (bool(variants.get(row.id)), row.expect, row.clause or "-", row.lang, tuple(sorted(row.tags)))
        strata.setdefault(key, []).append(row)
    seen: Counter[str] = Counter()
    in_dev: Counter[str] = Counter()
    dev_ids: set[str] = set()
    for key in sorted(strata, key=lambda k: (-len(strata[k]), k)):
        members = sorted(strata[key], key=lambda r: r.id)
        rng.shuffle(members)
        weight = 1 + len(variants.get(members[0].id, []))
        labels = _labels(key)
        low = math.floor(len(members) * DEV_SHARE)
        options = [low] if low == len(members) * DEV_SHARE else [low, low + 1]

        def error(take: int, size: int = len(members), w: int = weight, names: list[str] = labels) -> float:
            return sum((in_dev[n] + take * w - DEV_SHARE * (seen[n] + size * w)) ** 2 for n in names)

        take = min(options, key=lambda k: (error(k), -k))
        dev_ids.update(r.id for r in members[:take])
        for name in labels:
            seen[name] += len(members) * weight
            in_dev[name] += take * weight
    dev: list[Row] = []
    test: list[Row] = []
    for row in rows:
        (dev if row.id in dev_ids else test).extend([row, *variants.get(row.id, [])])
    return dev, test


def _table(title: str, counters: dict[str, Counter[str]], order: Iterable[str]) -> list[str]:
    lines = [f"{title:<22}{'dev':>7}{'test':>7}{'all':>7}"]
    for value in order:
        d, t = counters["dev"][value], counters["test"][value]
        if d or t:
            lines.append(f"  {value:<20}{d:>7}{t:>7}{d + t:>7}")
    return lines


def report(dev: list[Row], test: list[Row], sources: int) -> str:
    """Counts per split by expect, stage, clause, lang and tag, as printed after a build."""
    parts = {"dev": dev, "test": test}
    derived = len(dev) + len(test) - sources
    lines = [f"source rows {sources}, disguised variants {derived}, total {len(dev) + len(test)}"]
    lines += _table("split", {n: Counter({"rows": len(rs)}) for n, rs in parts.items()}, ["rows"])
    lines += _table("expect", {n: Counter(r.expect for r in rs) for n, rs in parts.items()}, EXPECTS)
    lines += _table("stage", {n: Counter(r.stage for r in rs) for n, rs in parts.items()}, STAGES)
    lines += _table(
        "clause (block rows)",
        {n: Counter(r.clause for r in rs if r.clause) for n, rs in parts.items()},
        CLAUSES,
    )
    lines += _table("lang", {n: Counter(r.lang for r in rs) for n, rs in parts.items()}, LANGS)
    tags = sorted(SOURCE_TAGS | {DERIVED_TAG})
    lines += _table("tag", {n: Counter(t for r in rs for t in r.tags) for n, rs in parts.items()}, tags)
    return "\n".join(lines)


def _jsonl(rows: list[Row]) -> str:
    return "".join(r.to_json() + "\n" for r in rows)


def build() -> tuple[str, str, str]:
    """Validate, disguise and split; return the dev and test file contents and the count report."""
    rows = load_rows(ROWS)
    rng = random.Random(SEED)
    variants = disguise(rows, rng)
    dev, test = split(rows, variants, rng)
    return _jsonl(dev), _jsonl(test), report(dev, test, len(rows))


def main(argv: list[str] | None = None) -> int:
    """Write evals/dev.jsonl and evals/test.jsonl (or compare them with --check) and print counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if dev/test on disk differ from a rebuild"
    )
    args = parser.parse_args(argv)
    try:
        dev, test, counts = build()
    except RowError as exc:
        print(f"make_sets: error: {exc}", file=sys.stderr)
        return 2
    targets = {EVALS / "dev.jsonl": dev, EVALS / "test.jsonl": test}
    if args.check:
        stale = [
            p.name for p, text in targets.items() if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        print(counts)
        if stale:
            print(
                f"make_sets: {', '.join(stale)} out of date; run python evals/make_sets.py", file=sys.stderr
            )
            return 1
        return 0
    for path, text in targets.items():
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""User regular expressions, compiled with RE2 when the policy loads, so matching is linear in the text.

params: ``pattern`` (RE2 syntax: Python ``re`` syntax without backreferences and lookaround), ``on``
(``normalized``, the default, or ``original``) and ``ignore_case`` (default true).

RE2 never backtracks: every pattern RE2 accepts runs in time linear in the text, whatever the text — there is
no list of refused shapes to keep up to date, and ``(a|a)*$`` on a million characters takes milliseconds.
What RE2 cannot express is refused at load time with the file, line and field: backreferences (``\\1``),
lookaround (``(?=``, ``(?!``, ``(?<=``, ``(?<!``), and possessive or atomic forms (``a++``, ``(?>…)``),
which RE2 does not need. ``\\w``, ``\\d`` and ``\\s`` (and ``\\W``, ``\\D``, ``\\S`` outside brackets) match
as in Python — letters, digits and spaces of every script — because rail rewrites them to Unicode
classes; ``\\b`` is RE2's, a boundary between ASCII word characters and anything else. Spans point into the
original text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import re2

from rail.policy.checks import CheckInput, Finding, Where

KIND = "regex"
NEEDS_SCORES = False
YIELDS_SPANS = True

# Python's \w, \d and \s in RE2 syntax (RE2's own Perl classes are ASCII only).
_UNICODE_CLASSES = {"w": r"\p{L}\p{N}_", "d": r"\p{Nd}", "s": r"\t\n\v\f\r\x{85}\p{Z}"}
_UNSUPPORTED = (
    *((f"invalid escape sequence: \\{n}", "a backreference") for n in range(1, 10)),
    ("invalid perl operator: (?=", "a lookahead (?=…)"),
    ("invalid perl operator: (?!", "a negative lookahead (?!…)"),
    ("invalid perl operator: (?<", "a lookbehind (?<=…) or (?<!…)"),
    ("invalid perl operator: (?>", "an atomic group (?>…)"),
    ("bad repetition operator: ++", "a possessive quantifier"),
    ("bad repetition operator: *+", "a possessive quantifier"),
    ("bad repetition operator: ?+", "a possessive quantifier"),
)


def unicode_classes(pattern: str) -> str:
    """Rewrite ``\\w \\d \\s`` (and ``\\W \\D \\S`` outside brackets) as the Unicode classes Python means."""
    out: list[str] = []
    i, in_class, class_start = 0, False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped in _UNICODE_CLASSES:
                body = _UNICODE_CLASSES[escaped]
                out.append(body if in_class else f"[{body}]")
            elif escaped.lower() in _UNICODE_CLASSES and escaped.isupper() and not in_class:
                out.append(f"[^{_UNICODE_CLASSES[escaped.lower()]}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i) and (close := pattern.find(":]", i + 2)) != -1:
                out.append(pattern[i : close + 2])
                i = close + 2
                continue
            if c == "]" and i > class_start:
                in_class = False
        elif c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < len(pattern) and pattern[i] == "^":
                out.append("^")
                i += 1
            class_start = i  # a "]" right after "[" or "[^" is a literal
            continue
        out.append(c)
        i += 1
    return "".join(out)


class RegexCheck:
    """Fires on each (non-empty, non-overlapping) match of one RE2 regular expression."""

    def __init__(self, pattern: Any, on: str) -> None:
        self.pattern = pattern
        self.on = on

    def find(self, item: CheckInput) -> list[Finding]:
        if self.on == "original":
            text, to_original = item.text, None
        else:
            text, to_original = item.normalized.text, item.normalized.original_span
        findings = []
        for m in self.pattern.finditer(text):
            start, end = m.start(), m.end()
            if end == start:
                continue
            span = to_original(start, end) if to_original else (start, end)
            # The reason names no text: at the output stage the match is held-back model output, and
            # reasons travel to the CLI and the audit log. The span says where the match is.
            findings.append(Finding("matched the rule's pattern", span))
        return findings


def build(params: Mapping[str, Any], where: Where) -> RegexCheck:
    source = params["pattern"]
    options = re2.Options()
    options.case_sensitive = not params.get("ignore_case", True)
    options.log_errors = False  # RE2 would print its own copy of every error to stderr
    try:
        pattern = re2.compile(unicode_classes(source), options)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        for marker, what in _UNSUPPORTED:
            if marker in detail:
                raise where.error(
                    f"regular expression uses {what}, which the RE2 engine cannot express",
                    subpath=".params.pattern",
                    hint="rewrite it without that construct (RE2 never backtracks, so possessive and atomic "
                    "forms are not needed; match the context instead of looking around it)",
                ) from None
        raise where.error(
            f"regular expression does not compile: {detail}",
            subpath=".params.pattern",
            hint="check brackets and escapes (YAML single quotes keep backslashes as written)",
        ) from None
    return RegexCheck(pattern, params.get("on", "normalized"))

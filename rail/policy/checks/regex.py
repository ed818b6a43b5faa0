"""User regular expressions, compiled when the policy loads.

params: ``pattern`` (Python ``re`` syntax), ``on`` (``normalized``, the default, or ``original``),
``ignore_case`` (default true) and ``window`` (default 20000 characters).

Patterns with a nested unbounded quantifier such as ``(a+)+`` or ``(\\w*)*`` are refused at load time: they
can take exponential time on hostile input. Possessive quantifiers (``a++``) and atomic groups (``(?>...)``)
do not backtrack and are accepted. As a second guard the text is searched in windows of ``window``
characters overlapping by 1000, so a slow pattern costs at most a bounded amount per window; a match longer
than the overlap that straddles two windows can be missed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rail.policy.checks import CheckInput, Finding, Where

try:  # Python >= 3.11
    from re import _constants as _sre_constants
    from re import _parser as _sre_parser
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parser  # type: ignore[no-redef]

KIND = "regex"
NEEDS_SCORES = False
YIELDS_SPANS = True
OVERLAP = 1000

_REPEATS = {_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT}
_SAFE = {
    getattr(_sre_constants, name)
    for name in ("POSSESSIVE_REPEAT", "ATOMIC_GROUP")
    if hasattr(_sre_constants, name)
}


def _nested_unbounded(items: Any, inside_repeat: bool) -> bool:
    for op, arg in items:
        if op in _SAFE:
            continue
        if op in _REPEATS:
            _low, high, sub = arg
            unbounded = high == _sre_constants.MAXREPEAT or high > 100
            if unbounded and inside_repeat:
                return True
            if _nested_unbounded(sub, inside_repeat or unbounded):
                return True
        elif op is _sre_constants.SUBPATTERN:
            if _nested_unbounded(arg[-1], inside_repeat):
                return True
        elif op is _sre_constants.BRANCH:
            if any(_nested_unbounded(branch, inside_repeat) for branch in arg[1]):
                return True
    return False


class RegexCheck:
    """Fires on each match of one regular expression."""

    def __init__(self, pattern: re.Pattern[str], on: str, window: int) -> None:
        self.pattern = pattern
        self.on = on
        self.window = window

    def find(self, item: CheckInput) -> list[Finding]:
        if self.on == "original":
            text, to_original = item.text, None
        else:
            text, to_original = item.normalized.text, item.normalized.original_span
        findings = []
        seen_end = 0
        step = max(self.window - OVERLAP, 1)
        for base in range(0, max(len(text), 1), step):
            chunk = text[base : base + self.window]
            for m in self.pattern.finditer(chunk):
                start, end = base + m.start(), base + m.end()
                if start < seen_end or end == start:
                    continue
                seen_end = end
                span = to_original(start, end) if to_original else (start, end)
                # The reason names no text: at the output stage the match is held-back model output, and
                # reasons travel to the CLI and the audit log. The span says where the match is.
                findings.append(Finding("matched the rule's pattern", span))
            if base + self.window >= len(text):
                break
        return findings


def build(params: Mapping[str, Any], where: Where) -> RegexCheck:
    source = params["pattern"]
    flags = re.IGNORECASE if params.get("ignore_case", True) else 0
    try:
        pattern = re.compile(source, flags)
        parsed = _sre_parser.parse(source, flags)
    except re.error as exc:
        raise where.error(
            f"regular expression does not compile: {exc.msg} at position {exc.pos}",
            subpath=".params.pattern",
            hint="check brackets and escapes (YAML single quotes keep backslashes as written)",
        ) from None
    if _nested_unbounded(list(parsed), False):
        raise where.error(
            "regular expression has a nested unbounded quantifier, which can backtrack catastrophically",
            subpath=".params.pattern",
            hint="rewrite it without a repeated group that itself repeats, or make the inner "
            "quantifier possessive (a++) or atomic ((?>...))",
        )
    return RegexCheck(pattern, params.get("on", "normalized"), int(params.get("window", 20000)))

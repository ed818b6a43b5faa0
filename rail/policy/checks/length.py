"""Length limits: characters and an estimate of tokens.

params: ``max_chars`` and/or ``max_tokens``. The token estimate counts runs of letters or digits in
space-delimited scripts, each character of scripts written without spaces, and each punctuation mark; it is
close to a BLOOM tokenizer count for English and errs high for CJK. Use it as a guard, not a budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rail.policy.checks import CheckInput, Finding, Where

KIND = "length"
NEEDS_SCORES = False
YIELDS_SPANS = False

_TOKENS = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]|[^\W\u3040-\u30ff\u3400-\u4dbf"
    r"\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]+|[^\w\s]"
)


def estimate_tokens(text: str) -> int:
    """Estimate the number of tokens in ``text`` without a tokenizer."""
    return sum(1 for _ in _TOKENS.finditer(text))


class LengthCheck:
    """Fires when the text is longer than the configured limits."""

    def __init__(self, max_chars: int | None, max_tokens: int | None) -> None:
        self.max_chars = max_chars
        self.max_tokens = max_tokens

    def find(self, item: CheckInput) -> list[Finding]:
        found = []
        if self.max_chars is not None and len(item.text) > self.max_chars:
            found.append(Finding(f"{len(item.text)} characters > limit {self.max_chars}"))
        if self.max_tokens is not None:
            tokens = estimate_tokens(item.text)
            if tokens > self.max_tokens:
                found.append(Finding(f"about {tokens} tokens > limit {self.max_tokens}"))
        return found


def build(params: Mapping[str, Any], where: Where) -> LengthCheck:
    return LengthCheck(params.get("max_chars"), params.get("max_tokens"))

"""Personal data in the text (see :mod:`rail.policy.pii`); with ``action: redact`` each match is replaced.

params: ``kinds`` (default: all of email, phone, payment_card, iban, us_ssn, ip_address).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rail.policy.checks import CheckInput, Finding, Where
from rail.policy.pii import PII_KINDS, find_pii

KIND = "pii"
NEEDS_SCORES = False
YIELDS_SPANS = True


class PiiCheck:
    """Fires on each piece of personal data of the configured kinds."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds

    def find(self, item: CheckInput) -> list[Finding]:
        return [
            Finding(f"personal data ({m.kind})", (m.start, m.end), m.kind)
            for m in find_pii(item.text, self.kinds)
        ]


def build(params: Mapping[str, Any], where: Where) -> PiiCheck:
    return PiiCheck(tuple(params.get("kinds", PII_KINDS)))

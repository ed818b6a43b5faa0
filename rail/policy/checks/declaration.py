"""Conditions on the deployment declaration, checked once when a deployment starts.

params (every condition given must hold for the check to fire; write two rules for "either"):

- ``domains_any``: the declaration lists at least one of these domains;
- ``audience_any``: the declaration lists at least one of these audiences;
- ``purpose_phrases``: ``{<language>: [phrase, ...]}`` found in the declared purpose (normalized matching);
- ``automated_decisions``: ``{enabled, legal_effect, human_review}``: each given field equals
  the declaration's;
- ``disclosure_mode``: the declaration's disclosure mode equals this (``visible`` or ``none``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from rail.policy.checks import CheckInput, Finding, Where
from rail.policy.matcher import phrase_matcher
from rail.text import normalize
from rail.yamlio import load_schema

KIND = "declaration"
NEEDS_SCORES = False
YIELDS_SPANS = False


class DeclarationCheck:
    """Fires when the deployment declaration meets every configured condition."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.domains = frozenset(params.get("domains_any", ()))
        self.audience = frozenset(params.get("audience_any", ()))
        phrases = params.get("purpose_phrases")
        self.purpose = phrase_matcher(phrases) if phrases else None
        self.automated = dict(params.get("automated_decisions", {}))
        self.disclosure_mode = params.get("disclosure_mode")

    def find(self, item: CheckInput) -> list[Finding]:
        declaration = item.declaration
        if declaration is None:
            return []
        reasons = []
        if self.domains:
            hit = sorted(self.domains & set(declaration.domains))
            if not hit:
                return []
            reasons.append(f"domain {', '.join(hit)}")
        if self.audience:
            hit = sorted(self.audience & set(declaration.audience))
            if not hit:
                return []
            reasons.append(f"audience {', '.join(hit)}")
        if self.purpose is not None:
            matches = list(self.purpose.finditer(normalize(declaration.purpose)))
            if not matches:
                return []
            reasons.append(f"purpose mentions '{matches[0].matched}'")
        if self.automated:
            actual = declaration.automated_decisions
            if any(getattr(actual, key) != value for key, value in self.automated.items()):
                return []
            reasons.append(
                "automated decisions " + ", ".join(f"{k}={str(v).lower()}" for k, v in self.automated.items())
            )
        if self.disclosure_mode is not None:
            if declaration.disclosure.mode != self.disclosure_mode:
                return []
            reasons.append(f"disclosure mode {self.disclosure_mode}")
        return [Finding("declaration: " + "; ".join(reasons))]


def build(params: Mapping[str, Any], where: Where) -> DeclarationCheck:
    if not params:
        raise where.error(
            "a declaration check needs at least one condition",
            subpath=".params",
            hint="add domains_any, audience_any, purpose_phrases, automated_decisions or disclosure_mode",
        )
    # A misspelt domain or audience would never match and silently weaken the rule.
    schema = load_schema("declaration.schema.json")["properties"]
    for key, field in (("domains_any", "domains"), ("audience_any", "audience")):
        known = schema[field]["items"]["enum"]
        for index, value in enumerate(params.get(key, ())):
            if value not in known:
                guess = difflib.get_close_matches(value, known, n=1)
                what = "domain" if field == "domains" else "audience"
                raise where.error(
                    f"unknown {what} '{value}'",
                    subpath=f".params.{key}[{index}]",
                    hint=f"did you mean '{guess[0]}'?" if guess else f"known: {', '.join(known)}",
                )
    return DeclarationCheck(params)

"""The deployment declaration: what a deployment is for, who it serves, and how it discloses generated text.

A small YAML file validated against ``rail/data/declaration.schema.json``. The policy's ``declaration``
rules read it once, when a deployment starts (:meth:`rail.policy.PolicyEngine.require_deployment`).

Example::

    d = load_declaration("examples/deployment.yaml")
    d.domains            # ('customer-support', 'translation')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rail.errors import ConfigError
from rail.yamlio import YamlDocument, load_schema, load_yaml, load_yaml_text, validate

__all__ = [
    "AutomatedDecisions",
    "Declaration",
    "DisclosureSettings",
    "load_declaration",
    "load_declaration_text",
]


@dataclass(frozen=True)
class AutomatedDecisions:
    """Whether outputs decide things about people, with legal effect, and whether a person reviews them."""

    enabled: bool = False
    legal_effect: bool = False
    human_review: bool = False


@dataclass(frozen=True)
class DisclosureSettings:
    """How readers are told text is machine-generated: mode, position, wording per language."""

    mode: str = "visible"
    position: str = "suffix"
    wording: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Declaration:
    """A validated deployment declaration; ``sha256`` is over its canonical JSON form."""

    name: str
    purpose: str
    domains: tuple[str, ...]
    audience: tuple[str, ...]
    automated_decisions: AutomatedDecisions
    disclosure: DisclosureSettings
    languages: tuple[str, ...] = ()
    contact: str | None = None
    source: str = "<string>"
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (the fields of the YAML file, defaults filled in)."""
        out: dict[str, Any] = {
            "name": self.name,
            "purpose": self.purpose,
            "domains": list(self.domains),
            "audience": list(self.audience),
            "automated_decisions": {
                "enabled": self.automated_decisions.enabled,
                "legal_effect": self.automated_decisions.legal_effect,
                "human_review": self.automated_decisions.human_review,
            },
            "disclosure": {
                "mode": self.disclosure.mode,
                "position": self.disclosure.position,
                "wording": dict(self.disclosure.wording),
            },
            "languages": list(self.languages),
        }
        if self.contact is not None:
            out["contact"] = self.contact
        return out


def _blank_wording(doc: YamlDocument) -> None:
    """Refuse disclosure wording that is only whitespace: readers would be told nothing (clause (e))."""
    data = doc.data
    disclosure = data.get("disclosure") if isinstance(data, dict) else None
    wording = disclosure.get("wording") if isinstance(disclosure, dict) else None
    if not isinstance(wording, dict):
        return
    for language, text in wording.items():
        if isinstance(text, str) and not text.strip():
            raise ConfigError(
                f"disclosure wording for '{language}' is blank, so readers would not be told the text is "
                "machine-generated",
                source=doc.source,
                line=doc.line_of(["disclosure", "wording", language]),
                path=f"disclosure.wording.{language}",
                hint="write the sentence shown to readers, or remove the language to use the default wording",
            )


def _from_document(doc: YamlDocument) -> Declaration:
    _blank_wording(doc)
    validate(doc, load_schema("declaration.schema.json"), "deployment declaration")
    data = doc.data
    auto = data["automated_decisions"]
    disclosure = data["disclosure"]
    declaration = Declaration(
        name=data["name"],
        purpose=data["purpose"],
        domains=tuple(data["domains"]),
        audience=tuple(data["audience"]),
        automated_decisions=AutomatedDecisions(
            enabled=auto["enabled"],
            legal_effect=auto.get("legal_effect", False),
            human_review=auto.get("human_review", False),
        ),
        disclosure=DisclosureSettings(
            mode=disclosure["mode"],
            position=disclosure.get("position", "suffix"),
            wording=MappingProxyType(dict(disclosure.get("wording", {}))),
        ),
        languages=tuple(data.get("languages", ())),
        contact=data.get("contact"),
        source=doc.source,
    )
    canonical = json.dumps(declaration.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return replace(declaration, sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def load_declaration(path: str | Path) -> Declaration:
    """Load and validate the declaration at ``path``; raise ConfigError naming file, line and key."""
    return _from_document(load_yaml(path))


def load_declaration_text(text: str, source: str = "<string>") -> Declaration:
    """Load a deployment declaration from YAML ``text``."""
    return _from_document(load_yaml_text(text, source))

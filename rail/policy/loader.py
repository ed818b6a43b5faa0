"""Load a policy: validate it against the shipped schema, resolve ``extends``, build its checks.

A policy may extend another (a packaged policy name such as ``bigscience-bloom-rail-1.0``, or a file path
relative to the extending file). Rules are merged by id: a rule with a new id is added; a rule with a parent's
id replaces the fields it gives (so ``{id: x, enabled: false}`` switches a parent rule off, and
``{id: x, action: warn}`` softens it). Top-level fields given in the child replace the parent's.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rail.errors import ConfigError
from rail.licences import get_licence
from rail.policy.checks import (
    Check,
    Where,
    build_check,
    kind_needs_scores,
    kind_needs_weights,
    kind_yields_spans,
)
from rail.policy.decision import Action, Stage
from rail.resources import data_dir
from rail.yamlio import YamlDocument, format_path, load_schema, load_yaml, load_yaml_text, validate

__all__ = [
    "COVERAGE_MODES",
    "Policy",
    "Restriction",
    "Rule",
    "available_policies",
    "load_policy",
    "load_policy_text",
]

DEFAULT_POLICY = "bigscience-bloom-rail-1.0"
COVERAGE_MODES = (
    "screened-in-prompts",
    "screened-in-outputs",
    "required-declaration",
    "always-on-attribution",
)
_RULE_REQUIRED = ("description", "restrictions", "stages", "check", "action", "severity", "coverage")
_TOP_REQUIRED = ("id", "version", "licence", "rules")
_COVERAGE_STAGE = {
    "screened-in-prompts": "input",
    "screened-in-outputs": "output",
    "required-declaration": "deployment",
}


@dataclass(frozen=True)
class Restriction:
    """One use restriction of a licence: the licence id and the clause letter (``a``–``m`` for BLOOM RAIL)."""

    licence: str
    clause: str


@dataclass(frozen=True)
class Rule:
    """One control: what it checks, where, what it does when it fires, and which clause(s) it enforces."""

    id: str
    description: str
    restrictions: tuple[Restriction, ...]
    stages: tuple[Stage, ...]
    kind: str
    params: Mapping[str, Any]
    check: Check
    action: Action
    severity: str
    coverage: tuple[str, ...]
    reference: str | None = None
    source: str = ""
    line: int | None = None

    @property
    def needs_scores(self) -> bool:
        """Whether the rule reads toxicity scores (and so needs model weights)."""
        return kind_needs_scores(self.kind)

    @property
    def needs_weights(self) -> bool:
        """Whether the rule runs a model (toxicity scores, embeddings): a weights-free run skips it."""
        return kind_needs_weights(self.kind)


@dataclass(frozen=True)
class Attribution:
    """The always-on machine-generated disclosure the policy requires on every output that passes."""

    required: bool
    restrictions: tuple[Restriction, ...]
    description: str = ""


@dataclass(frozen=True)
class Policy:
    """A resolved policy: its rules after ``extends``, and the sha256 of the resolved document."""

    id: str
    version: str
    licence: str
    description: str
    fail_open: bool
    rules: tuple[Rule, ...]
    attribution: Attribution
    source: str
    sha256: str
    chain: tuple[str, ...]
    document: Mapping[str, Any]

    def rule(self, rule_id: str) -> Rule:
        """Return the enabled rule ``rule_id``; raise KeyError if there is none."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def available_policies() -> tuple[str, ...]:
    """Return the names of the policies shipped with rail (usable wherever a policy file is expected)."""
    return tuple(sorted(p.name[:-5] for p in data_dir("rail.packs").iterdir() if p.name.endswith(".yaml")))


def _is_pack_name(ref: str) -> bool:
    return (
        "/" not in ref and "\\" not in ref and not ref.endswith((".yaml", ".yml")) and not Path(ref).exists()
    )


def _read(ref: str, base: Path | None, where: tuple[str, int | None] | None) -> YamlDocument:
    if _is_pack_name(ref):
        pack = data_dir("rail.packs") / f"{ref}.yaml"
        if not pack.is_file():
            known = ", ".join(available_policies())
            source, line = where if where else (None, None)
            raise ConfigError(
                f"no policy file or packaged policy named '{ref}'",
                source=source,
                line=line,
                path="extends" if where else None,
                hint=f"give a path to a .yaml file, or one of: {known}",
            )
        return load_yaml_text(pack.read_text(encoding="utf-8"), str(pack))
    path = Path(ref)
    if base is not None and not path.is_absolute():
        path = base / path
    if where is not None and not path.exists():
        raise ConfigError(
            f"extended policy file '{ref}' not found (looked at {path})",
            source=where[0],
            line=where[1],
            path="extends",
            hint="paths in extends are relative to the extending file",
        )
    return load_yaml(path)


def _identity(doc: YamlDocument) -> str:
    try:
        return str(Path(doc.source).resolve())
    except OSError:
        return doc.source


# Where a rule was last written: the file, the line, and its index in that file's ``rules`` list.
_Origin = tuple[str, "int | None", int]


def _resolve(
    doc: YamlDocument,
    stack: list[str],
) -> tuple[dict[str, Any], dict[str, _Origin], list[str]]:
    """Return the merged document, where each rule was last defined, and the chain of files."""
    identity = _identity(doc)
    if identity in stack:
        cycle = " -> ".join([*stack[stack.index(identity) :], identity])
        raise ConfigError(
            f"policies extend each other in a cycle: {cycle}",
            source=doc.source,
            line=doc.line_of(["extends"]),
            path="extends",
            hint="remove one of the extends",
        )
    if len(stack) >= 16:
        raise ConfigError(
            "policies extend each other more than 16 levels deep",
            source=doc.source,
            line=doc.line_of(["extends"]) or 1,
            path="extends",
            hint=f"flatten the chain that starts at {stack[0]}",
        )
    if not isinstance(doc.data, dict):
        raise ConfigError(
            "a policy must be a mapping of keys (id, version, licence, rules, …)",
            source=doc.source,
            line=1,
            hint="see the Policy files section of README.md for the layout",
        )
    validate(doc, load_schema("policy.schema.json"), "policy")
    data = doc.data
    origins: dict[str, _Origin] = {}
    if "extends" in data:
        # Relative paths in extends are relative to the extending file (the current directory for text).
        parent = _read(data["extends"], Path(doc.source).parent, (doc.source, doc.line_of(["extends"])))
        merged, origins, chain = _resolve(parent, [*stack, identity])
    else:
        merged, chain = {}, []
    for key, value in data.items():
        if key not in ("extends", "rules"):
            merged[key] = copy.deepcopy(value)
    rules: list[dict[str, Any]] = merged.setdefault("rules", [])
    by_id = {r["id"]: r for r in rules}
    seen: dict[str, int | None] = {}
    for index, rule in enumerate(data.get("rules", [])):
        line = doc.line_of(["rules", index])
        if rule["id"] in seen:
            raise ConfigError(
                f"rule id '{rule['id']}' appears twice (first on line {seen[rule['id']]})",
                source=doc.source,
                line=line,
                path=format_path(["rules", index, "id"]),
                hint="rule ids must be unique within a file; rename one",
            )
        seen[rule["id"]] = line
        if rule["id"] in by_id:
            by_id[rule["id"]].update(copy.deepcopy(rule))
        else:
            fresh = copy.deepcopy(rule)
            rules.append(fresh)
            by_id[rule["id"]] = fresh
        origins[rule["id"]] = (doc.source, line, index)
    return merged, origins, [*chain, doc.source]


def _restriction(
    r: Mapping[str, Any], default_licence: str, source: str, line: int | None, path: str
) -> Restriction:
    """Build one ``{licence?, clause}`` entry; raise ConfigError at ``path`` for an unknown licence/clause."""
    rlicence = r.get("licence", default_licence)
    try:
        lic = get_licence(rlicence)
    except ConfigError as exc:
        raise ConfigError(
            exc.detail, source=source, line=line, path=f"{path}.licence", hint=exc.hint
        ) from None
    if r["clause"] not in lic.restrictions:
        raise ConfigError(
            f"licence {rlicence} has no restriction ({r['clause']})",
            source=source,
            line=line,
            path=f"{path}.clause",
            hint=f"use one of {', '.join(lic.restrictions)}",
        )
    return Restriction(rlicence, r["clause"])


def _build_rule(raw: Mapping[str, Any], licence: str, origin: _Origin) -> Rule:
    source, line, index = origin
    path = f"rules[{index}]"
    missing = [k for k in _RULE_REQUIRED if k not in raw]
    if missing:
        raise ConfigError(
            f"rule '{raw['id']}' is missing {', '.join(missing)}",
            source=source,
            line=line,
            path=path,
            hint="a new rule needs every field; only a rule that overrides a parent rule may omit them",
        )
    restrictions = [
        _restriction(r, licence, source, line, f"{path}.restrictions[{i}]")
        for i, r in enumerate(raw["restrictions"])
    ]
    stages = tuple(Stage(s) for s in raw["stages"])
    kind = raw["check"]["kind"]
    check = build_check(kind, raw["check"]["params"], Where(source, f"{path}.check", line))
    action = Action(raw["action"])
    if action is Action.REDACT and not kind_yields_spans(kind):
        raise ConfigError(
            f"rule '{raw['id']}': action redact needs a check that points at text, and {kind} checks do not",
            source=source,
            line=line,
            path=f"{path}.action",
            hint="use block, warn or log (redact works with phrases, regex and pii checks)",
        )
    if kind == "declaration" and stages != (Stage.DEPLOYMENT,):
        raise ConfigError(
            f"rule '{raw['id']}': a declaration check runs at the deployment stage only",
            source=source,
            line=line,
            path=f"{path}.stages",
            hint="set stages: [deployment]",
        )
    if kind != "declaration" and Stage.DEPLOYMENT in stages:
        raise ConfigError(
            f"rule '{raw['id']}': only declaration checks run at the deployment stage",
            source=source,
            line=line,
            path=f"{path}.stages",
            hint="use input and/or output",
        )
    for mode in raw["coverage"]:
        if _COVERAGE_STAGE[mode] not in raw["stages"]:
            raise ConfigError(
                f"rule '{raw['id']}' claims coverage {mode} but does not run at the "
                f"{_COVERAGE_STAGE[mode]} stage",
                source=source,
                line=line,
                path=f"{path}.coverage",
                hint="make coverage match stages",
            )
    return Rule(
        id=raw["id"],
        description=raw["description"],
        restrictions=tuple(restrictions),
        stages=stages,
        kind=kind,
        params=copy.deepcopy(raw["check"]["params"]),
        check=check,
        action=action,
        severity=raw["severity"],
        coverage=tuple(raw["coverage"]),
        reference=raw.get("reference"),
        source=source,
        line=line,
    )


def _finish(
    merged: dict[str, Any], origins: Mapping[str, _Origin], chain: list[str]
) -> Policy:
    source = chain[-1]
    missing = [k for k in _TOP_REQUIRED if k not in merged]
    if missing:
        raise ConfigError(
            f"policy is missing {', '.join(missing)}",
            source=source,
            line=1,
            hint="add them here or extend a policy that has them",
        )
    licence = merged["licence"]
    try:
        get_licence(licence)
    except ConfigError as exc:
        raise ConfigError(exc.detail, source=source, path="licence", hint=exc.hint) from None
    rules = []
    for raw in merged["rules"]:
        if raw.get("enabled", True):
            rules.append(_build_rule(raw, licence, origins[raw["id"]]))
    attribution_raw = merged.get("attribution", {})
    attribution_restrictions = [
        _restriction(r, licence, source, None, f"attribution.restrictions[{i}]")
        for i, r in enumerate(attribution_raw.get("restrictions", []))
    ]
    attribution = Attribution(
        required=bool(attribution_raw.get("required", False)),
        restrictions=tuple(attribution_restrictions),
        description=attribution_raw.get("description", ""),
    )
    canonical = json.dumps(merged, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return Policy(
        id=merged["id"],
        version=str(merged["version"]),
        licence=licence,
        description=merged.get("description", ""),
        fail_open=bool(merged.get("fail_open", False)),
        rules=tuple(rules),
        attribution=attribution,
        source=source,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        chain=tuple(chain),
        document=merged,
    )


def load_policy(ref: str | Path = DEFAULT_POLICY) -> Policy:
    """Load the policy at ``ref`` (a YAML file, or a packaged name such as ``bigscience-bloom-rail-1.0``).

    Raises :class:`~rail.errors.ConfigError` naming the file, line and YAML path of the first problem.
    """
    return _finish(*_resolve(_read(str(ref), None, None), []))


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    """Load a policy from YAML ``text``; a relative ``extends`` is resolved from the current directory."""
    return _finish(*_resolve(load_yaml_text(text, source), []))

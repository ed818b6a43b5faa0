"""Policy files: extends and overrides, and bad files that must fail with file, line and path."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from rail.cli import main
from rail.errors import ConfigError
from rail.policy import PolicyEngine, Verdict, available_policies, load_declaration, load_policy
from rail.policy.checks import check_kinds
from rail.yamlio import load_schema

RULE = """\
  - id: {id}
    description: test rule
    restrictions: [{{clause: {clause}}}]
    stages: [input]
    check: {{kind: {kind}, params: {params}}}
    action: block
    severity: high
    coverage: [screened-in-prompts]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def policy_text(rules: str, head: str = "") -> str:
    return "id: test\nversion: '1'\nlicence: bigscience-bloom-rail-1.0\n" + head + "rules:\n" + rules


def test_packaged_policy_is_listed_and_hash_is_stable() -> None:
    assert "bigscience-bloom-rail-1.0" in available_policies()
    assert load_policy().sha256 == load_policy("bigscience-bloom-rail-1.0").sha256


def test_schema_has_one_params_entry_per_check_kind() -> None:
    schema = load_schema("policy.schema.json")
    kinds = {c["if"]["properties"]["kind"]["const"] for c in schema["$defs"]["check"]["allOf"]}
    assert kinds == set(check_kinds())


def test_extends_overrides_and_disables_parent_rules(tmp_path: Path) -> None:
    child = write(
        tmp_path,
        "child.yaml",
        """\
extends: bigscience-bloom-rail-1.0
id: child
version: '2'
rules:
  - id: medical-advice
    enabled: false
  - id: disinformation
    action: warn
  - id: no-spoilers
    description: keep film endings secret
    restrictions: []
    stages: [output]
    check: {kind: phrases, params: {phrases: {en: [the butler did it]}}}
    action: redact
    severity: low
    coverage: [screened-in-outputs]
""",
    )
    policy = load_policy(child)
    parent = load_policy()
    assert policy.id == "child" and policy.licence == parent.licence
    assert policy.sha256 != parent.sha256
    ids = [r.id for r in policy.rules]
    assert "medical-advice" not in ids and "no-spoilers" in ids
    engine = PolicyEngine(policy)
    assert engine.check("What medication should I take?", "input", weights_free=True).allowed
    warned = engine.check("Write a fake news story", "input", weights_free=True)
    assert warned.allowed and warned.violations[0].action.value == "warn"
    redacted = engine.check("Spoiler: The Butler did it.", "output", weights_free=True)
    assert redacted.verdict is Verdict.MODIFIED and redacted.text == "Spoiler: [REDACTED:no-spoilers]."


def test_extends_relative_path(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    write(
        tmp_path / "base",
        "base.yaml",
        policy_text(RULE.format(id="r1", clause="a", kind="phrases", params="{phrases: {en: [forbidden]}}")),
    )
    child = write(tmp_path, "child.yaml", "extends: base/base.yaml\nid: child\n")
    policy = load_policy(child)
    assert [r.id for r in policy.rules] == ["r1"]
    assert policy.chain[0].endswith("base.yaml")


BAD = [
    ("malformed", "id: x\nrules: [\n  - {", 3, None, "not valid YAML"),
    (
        "unknown key",
        policy_text(RULE.format(id="r", clause="a", kind="phrases", params="{phrases: {en: [x]}}")).replace(
            "    severity", "    severty"
        ),
        11,
        "rules[0].severty",
        "did you mean 'severity'",
    ),
    ("wrong type", policy_text("", head="fail_open: 'yes'\n") + "  []\n", 4, "fail_open", "expected boolean"),
    (
        "bad regex",
        policy_text(RULE.format(id="r", clause="a", kind="regex", params="{pattern: 'a(b'}")),
        5,
        "rules[0].check.params.pattern",
        "does not compile",
    ),
    (
        "catastrophic regex",
        policy_text(RULE.format(id="r", clause="a", kind="regex", params="{pattern: '(a+)+b'}")),
        5,
        "rules[0].check.params.pattern",
        "nested unbounded quantifier",
    ),
    (
        "unknown clause",
        policy_text(RULE.format(id="r", clause="z", kind="phrases", params="{phrases: {en: [x]}}")),
        5,
        "rules[0].restrictions",
        "no restriction (z)",
    ),
    (
        "unknown kind",
        policy_text(RULE.format(id="r", clause="a", kind="phrase", params="{phrases: {en: [x]}}")),
        5,
        "rules[0].check",
        "did you mean 'phrases'",
    ),
    (
        "unknown licence",
        policy_text("  []\n").replace("bigscience-bloom-rail-1.0", "mit"),
        None,
        "licence",
        "unknown licence id",
    ),
    (
        "duplicate rule",
        policy_text(RULE.format(id="r", clause="a", kind="phrases", params="{phrases: {en: [x]}}") * 2),
        13,
        "rules[1].id",
        "appears twice",
    ),
    (
        "coverage mismatch",
        policy_text(
            RULE.format(id="r", clause="a", kind="phrases", params="{phrases: {en: [x]}}").replace(
                "[screened-in-prompts]", "[screened-in-outputs]"
            )
        ),
        5,
        "rules[0].coverage",
        "does not run at the output stage",
    ),
    (
        "bad threshold",
        policy_text(RULE.format(id="r", clause="f", kind="toxicity", params="{thresholds: {toxicity: 1.5}}")),
        9,
        "rules[0].check.params.thresholds.toxicity",
        "1.5",
    ),
    (
        "unknown domain",
        policy_text(
            RULE.format(id="r", clause="l", kind="declaration", params="{domains_any: [medecal]}")
            .replace("[input]", "[deployment]")
            .replace("[screened-in-prompts]", "[required-declaration]")
        ),
        5,
        "rules[0].check.params.domains_any[0]",
        "did you mean 'medical'",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "path", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_policy_files(tmp_path: Path, name: str, text: str, line, path, message: str) -> None:
    file = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_policy(file)
    error = info.value
    assert str(file) in str(error)
    assert message in str(error)
    if line is not None:
        assert error.line == line
    if path is not None:
        assert error.path == path
    result = CliRunner().invoke(main, ["policy", "validate", str(file)])
    assert result.exit_code == 2
    assert "rail: error:" in result.output and str(file) in result.output
    result = CliRunner().invoke(main, ["check", "--policy", str(file), "--weights-free", "hello"])
    assert result.exit_code == 2


def test_missing_file_and_unknown_pack(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="no policy file or packaged policy named 'no-such-pack'"):
        load_policy("no-such-pack")
    child = write(tmp_path, "child.yaml", "extends: missing.yaml\nid: c\n")
    with pytest.raises(ConfigError, match="not found") as info:
        load_policy(child)
    assert info.value.line == 1


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b.yaml\nid: a\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\nid: b\n")
    with pytest.raises(ConfigError, match="cycle") as info:
        load_policy(tmp_path / "a.yaml")
    assert "a.yaml" in str(info.value) and info.value.path == "extends"
    write(tmp_path, "self.yaml", "extends: self.yaml\nid: s\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_policy(tmp_path / "self.yaml")


BAD_DECLARATIONS = [
    (
        "name: x\npurpose: Draft replies for agents.\ndomains: [medicine]\naudience: [adults]\n"
        "automated_decisions: {enabled: false}\ndisclosure: {mode: visible}\n",
        3,
        "domains[0]",
        "is not one of",
    ),
    (
        "name: x\npurpose: Draft replies for agents.\ndomains: [translation]\naudience: [adults]\n"
        "automated_decisions: {enabled: no}\ndisclosure: {mode: visible}\n",
        5,
        "automated_decisions.enabled",
        "expected boolean",
    ),
    (
        "name: x\npurpose: Draft replies for agents.\ndomains: [translation]\naudience: [adults]\n"
        "automated_decisions: {enabled: false}\ndisclosure: {mode: visible}\ndomian: x\n",
        7,
        "domian",
        "unknown key",
    ),
    (
        "name: x\npurpose: Draft replies for agents.\ndomains: [translation]\naudience: [adults]\n"
        "disclosure: {mode: visible}\n",
        1,
        "<document>",
        "missing required key 'automated_decisions'",
    ),
]


@pytest.mark.parametrize(("text", "line", "path", "message"), BAD_DECLARATIONS)
def test_bad_declarations(tmp_path: Path, text: str, line: int, path: str, message: str) -> None:
    file = write(tmp_path, "decl.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_declaration(file)
    assert info.value.line == line and info.value.path == path and message in str(info.value)
    assert str(file) in str(info.value)


def test_declaration_round_trip() -> None:
    root = Path(__file__).resolve().parents[2]
    d = load_declaration(root / "examples" / "deployment.yaml")
    assert d.domains == ("customer-support", "translation")
    assert d.disclosure.wording["fr"].startswith("Cette réponse")
    assert d.to_dict()["automated_decisions"] == {
        "enabled": False,
        "legal_effect": False,
        "human_review": False,
    }
    assert len(d.sha256) == 64

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
    (
        "wrong type",
        policy_text("", head="fail_open: 'yes'\n") + "  []\n",
        4,
        "fail_open",
        "expected true or false",
    ),
    (
        "bad regex",
        policy_text(RULE.format(id="r", clause="a", kind="regex", params="{pattern: 'a(b'}")),
        5,
        "rules[0].check.params.pattern",
        "does not compile",
    ),
    (
        "backreference in a regex",
        policy_text(RULE.format(id="r", clause="a", kind="regex", params="{pattern: '(a)\\1'}")),
        5,
        "rules[0].check.params.pattern",
        "uses a backreference, which the RE2 engine cannot express",
    ),
    (
        "unknown clause",
        policy_text(RULE.format(id="r", clause="z", kind="phrases", params="{phrases: {en: [x]}}")),
        5,
        "rules[0].restrictions[0].clause",
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
        "expected true or false",
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


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("length", "{max_chars: 5}"),
        ("toxicity", "{thresholds: {toxicity: 0.5}}"),
    ],
)
def test_redact_on_a_check_without_spans_is_refused(tmp_path: Path, kind: str, params: str) -> None:
    rule = RULE.format(id="r", clause="a", kind=kind, params=params)
    rule = rule.replace("action: block", "action: redact")
    file = write(tmp_path, "p.yaml", policy_text(rule))
    with pytest.raises(ConfigError) as info:
        load_policy(file)
    assert str(file) in str(info.value) and "redact" in str(info.value)
    assert info.value.line == 5 and info.value.path == "rules[0].action"


def test_redact_on_a_declaration_check_is_refused(tmp_path: Path) -> None:
    rule = (
        RULE.format(id="r", clause="a", kind="declaration", params="{domains_any: [medical]}")
        .replace("action: block", "action: redact")
        .replace("stages: [input]", "stages: [deployment]")
        .replace("screened-in-prompts", "required-declaration")
    )
    with pytest.raises(ConfigError, match="redact") as info:
        load_policy(write(tmp_path, "p.yaml", policy_text(rule)))
    assert info.value.path == "rules[0].action"


def test_spanless_redact_finding_blocks(tmp_path: Path) -> None:
    """Defence in depth: should a redact rule ever yield a finding with no span, the text is blocked."""
    from rail.policy.checks import Finding

    policy = load_policy(write(tmp_path, "p.yaml", policy_text(RULE.format(
        id="r", clause="a", kind="phrases", params="{phrases: {en: [secret]}}"
    ).replace("action: block", "action: redact"))))

    class Spanless:
        def find(self, item):
            return [Finding("too long")]

    import dataclasses

    rule = dataclasses.replace(policy.rules[0], check=Spanless())
    engine = PolicyEngine(dataclasses.replace(policy, rules=(rule,)))
    decision = engine.check("hello", "input")
    assert decision.verdict is Verdict.BLOCKED and decision.text == "hello"
    assert decision.violations[0].action.value == "block"


def test_child_policy_errors_give_the_index_in_the_child_file(tmp_path: Path) -> None:
    child = write(
        tmp_path,
        "badchild.yaml",
        "id: child\nextends: bigscience-bloom-rail-1.0\nrules:\n"
        + RULE.format(id="r", clause="a", kind="regex", params="{pattern: '(a'}"),
    )
    with pytest.raises(ConfigError) as info:
        load_policy(child)
    assert info.value.line == 4 and info.value.path.startswith("rules[0].")


def test_unknown_licence_in_a_rule_names_file_line_and_path(tmp_path: Path) -> None:
    rule = RULE.format(id="r", clause="a", kind="phrases", params="{phrases: {en: [x]}}").replace(
        "{clause: a}", "{licence: no-such-licence, clause: a}"
    )
    file = write(tmp_path, "p.yaml", policy_text(rule))
    with pytest.raises(ConfigError) as info:
        load_policy(file)
    assert str(file) in str(info.value)
    assert info.value.line == 5 and info.value.path == "rules[0].restrictions[0].licence"


def test_unknown_clause_in_attribution_names_the_right_licence(tmp_path: Path) -> None:
    head = "attribution: {required: true, restrictions: [{clause: z}]}\n"
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, "p.yaml", policy_text("  []\n", head=head)))
    assert "bigscience-bloom-rail-1.0 has no restriction (z)" in str(info.value)
    assert info.value.path == "attribution.restrictions[0].clause"


def test_phrase_lists_with_non_string_language_keys_load() -> None:
    from rail.policy.checks import Where
    from rail.policy.checks.phrases import build

    check = build({"phrases": {"en": ["foo"], 1: ["bar"]}}, Where("p.yaml", "rules[0].check"))
    assert set(check.matcher.phrases) == {"foo", "bar"}


def test_blank_disclosure_wording_is_refused(tmp_path: Path) -> None:
    text = (
        "name: d\npurpose: Help agents answer customer questions.\ndomains: [customer-support]\n"
        "audience: [adults]\nautomated_decisions: {enabled: false}\n"
        "disclosure:\n  mode: visible\n  wording:\n    en: \" \"\n"
    )
    file = write(tmp_path, "d.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_declaration(file)
    assert "blank" in str(info.value) and info.value.path == "disclosure.wording.en"
    assert info.value.line == 9
    from rail.policy.declaration import load_declaration_text
    from rail.yamlio import load_yaml_text, schema_problems

    assert schema_problems(load_yaml_text(text, "d.yaml"), load_schema("declaration.schema.json"))
    assert load_declaration_text(text.replace('" "', '"Written by a machine."'), "d.yaml")

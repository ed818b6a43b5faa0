"""Phrase rules of a stage share one automaton, and each still reports exactly its own phrases."""

from __future__ import annotations

import pytest

from rail.policy import PolicyEngine, load_policy_text

RULE = """\
  - id: {id}
    description: phrases
    restrictions: [{{clause: {clause}}}]
    stages: [input, output]
    check: {{kind: phrases, params: {{phrases: {phrases}}}}}
    action: block
    severity: high
    coverage: [screened-in-prompts, screened-in-outputs]
"""


def engine(*rules: tuple[str, str, str]) -> PolicyEngine:
    text = "id: t\nversion: '1'\nlicence: bigscience-bloom-rail-1.0\nrules:\n"
    text += "".join(RULE.format(id=i, clause=c, phrases=p) for i, c, p in rules)
    return PolicyEngine(load_policy_text(text))


def test_overlapping_phrases_of_different_rules_both_fire() -> None:
    e = engine(
        ("weapons", "a", "{en: [make a bomb]}"),
        ("bombs", "a", "{en: [a bomb, bomb threat]}"),
        ("threats", "f", "{en: [bomb threat]}"),
    )
    decision = e.check("how to make a bomb threat", "input")
    found = sorted((v.rule, v.span) for v in decision.violations)
    assert found == [("bombs", (12, 18)), ("threats", (14, 25)), ("weapons", (7, 18))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i want to make a bomb", {"weapons"}),
        ("the skill of making", set()),  # "kill" inside a word is not a match
        ("please kill it", {"violence"}),
        ("self-harm and selfharm", {"selfharm"}),
        ("教我制造炸弹", {"weapons"}),
        ("والقنبلة", {"weapons"}),
        ("nothing here", set()),
    ],
)
def test_each_rule_reports_only_its_phrases(text: str, expected: set[str]) -> None:
    e = engine(
        ("weapons", "a", "{en: [make a bomb], zh: [制造炸弹], ar: [قنبلة]}"),
        ("violence", "a", "{en: [kill]}"),
        ("selfharm", "j", "{en: [self harm]}"),
    )
    for stage in ("input", "output"):
        assert {v.rule for v in e.check(text, stage).violations} == expected


def test_the_same_rule_object_in_two_engines_keeps_working() -> None:
    e1 = engine(("weapons", "a", "{en: [make a bomb]}"))
    e2 = PolicyEngine(e1.policy)
    for e in (e1, e2):
        assert not e.check("make a bomb", "input").allowed

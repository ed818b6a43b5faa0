"""The BigScience Open RAIL-M pack: the BLOOM pack's controls, cited under the Open RAIL-M clauses."""

import json

import pytest
from click.testing import CliRunner

from rail.cli import main
from rail.licences import get_licence
from rail.policy import PolicyEngine, load_policy
from rail.policy.coverage import coverage
from tests.policy.test_pack import BENIGN, BLOCKED

OPENRAIL = "bigscience-openrail-m"
BLOOM = "bigscience-bloom-rail-1.0"


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(load_policy(OPENRAIL))


def test_explain_covers_every_clause_with_the_open_rail_m_wording():
    result = CliRunner().invoke(main, ["policy", "explain", OPENRAIL, "--json"])
    assert result.exit_code == 0, result.output
    matrix = json.loads(result.output)
    licence = get_licence(OPENRAIL)
    assert matrix["licence"] == OPENRAIL and matrix["gaps"] == []
    assert [row["clause"] for row in matrix["clauses"]] == list("abcdefghijklm")
    for row in matrix["clauses"]:
        assert row["text"] == licence.clause(row["clause"]) and row["controls"], row["clause"]
    bloom = get_licence(BLOOM)
    assert [c for c in "abcdefghijklm" if licence.clause(c) != bloom.clause(c)] == ["c", "e", "g", "i"]
    assert "deepfakes" in licence.clause("g") and "without their consent" in licence.clause("g")


def test_every_bloom_control_is_inherited_and_cites_open_rail_m():
    bloom, openrail = load_policy(BLOOM), load_policy(OPENRAIL)
    assert {r.id for r in bloom.rules} <= {r.id for r in openrail.rules}
    assert openrail.chain[0].endswith(f"{BLOOM}.yaml")
    for rule in openrail.rules:
        assert all(r.licence == OPENRAIL for r in rule.restrictions), rule.id
        inherited = bloom.rule(rule.id)
        assert [r.clause for r in rule.restrictions] == [r.clause for r in inherited.restrictions]
        assert (rule.kind, rule.params, rule.stages) == (inherited.kind, inherited.params, inherited.stages)
    rows, _ = coverage(openrail)
    by_clause = {row.clause: {c.name for c in row.controls} for row in coverage(bloom)[0]}
    assert {row.clause: {c.name for c in row.controls} for row in rows} == by_clause


def test_the_wider_clauses_are_described_in_the_licences_terms():
    policy = load_policy(OPENRAIL)
    assert "content" in policy.rule("disinformation").description
    assert "code" in policy.rule("undisclosed-generation").description
    assert "consent" in policy.rule("impersonation").description


@pytest.mark.parametrize(("prompt", "clause"), BLOCKED)
def test_clear_requests_are_blocked_naming_the_open_rail_m_clause(engine, prompt: str, clause: str):
    decision = engine.check(prompt, "input", weights_free=True)
    assert not decision.allowed
    assert clause in {v.restriction for v in decision.violations}


@pytest.mark.parametrize("prompt", BENIGN)
def test_benign_prompts_pass(engine, prompt: str):
    assert engine.check(prompt, "input", weights_free=True).allowed

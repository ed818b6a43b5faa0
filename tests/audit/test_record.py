"""The audit record: JSON form with OpenTelemetry GenAI names, round trip, field types checked on reading."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from rail.audit import AuditRecord, canonical_json
from rail.errors import AuditError
from rail.policy.decision import Action, Stage, Violation


def test_json_form_uses_opentelemetry_genai_names(make_record):
    data = make_record(1, params={"max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
                                  "seed": 3, "do_sample": True}).to_dict()
    assert data["gen_ai.operation.name"] == "text_completion"
    assert data["gen_ai.provider.name"] == "transformers"
    assert data["gen_ai.request.model"] == data["gen_ai.response.model"] == "bigscience/bloomz-560m"
    names = ("max_tokens", "temperature", "top_p", "top_k", "seed")
    request = [data[f"gen_ai.request.{name}"] for name in names]
    assert request == [16, 0.7, 0.9, 40, 3]
    assert data["gen_ai.response.finish_reasons"] == ["stop"]
    assert data["gen_ai.usage.input_tokens"] == 5 and data["gen_ai.usage.output_tokens"] == 7
    assert data["rail.request.params"] == {"do_sample": True}
    assert all(key.startswith(("gen_ai.", "rail.")) for key in data)


def test_round_trip_through_json(make_record):
    record = make_record(3)
    again = AuditRecord.from_dict(json.loads(canonical_json(record.to_dict())))
    assert again == record


def test_violation_objects_become_their_json_form():
    violation = Violation("no-medical-advice", "l", "bigscience-bloom-rail-1.0", Stage.INPUT, Action.BLOCK,
                          "high", "medical question", (0, 7))
    record = AuditRecord(verdict="blocked", violations=(violation,))
    assert record.violations == (violation.to_dict(),)


@pytest.mark.parametrize("data, message", [
    ([], "JSON object"),
    ({"rail.time": "t", "rail.verdict": "allowed"}, "rail.request_id"),
    ({"rail.time": "t", "rail.request_id": "r", "rail.verdict": "maybe"}, "verdict"),
    ({"rail.time": "t", "rail.request_id": "r", "rail.verdict": "allowed", "rail.privacy": "some"},
     "privacy mode"),
])
def test_from_dict_rejects_malformed_records(data, message):
    with pytest.raises(AuditError, match=message):
        AuditRecord.from_dict(data)


def test_non_finite_scores_are_refused_when_the_record_is_built():
    with pytest.raises(AuditError, match="finite"):
        AuditRecord(scores={"prompt": {"toxicity": math.inf}})


def test_semantic_scores_and_violation_evidence_round_trip(make_record):
    violation = {"rule": "semantic-weapons", "restriction": "a", "licence": "bigscience-bloom-rail-1.0",
                 "stage": "input", "action": "block", "severity": "high", "reason": "close to exemplar 3",
                 "span": None, "clauses": ["a"], "score": 0.91,
                 "evidence": {"exemplar": 3, "similarity": 0.91, "bank": "clause-a"}}
    scores = {"prompt": {"toxicity": 0.2, **{f"semantic.{c}": 0.05 for c in "abcdefghijklm"}},
              "output": {"semantic.a": 0.0}}
    record = make_record(3, violations=(violation, {**violation, "score": None, "evidence": None}),
                         scores=scores)
    again = AuditRecord.from_dict(json.loads(canonical_json(record.to_dict())))
    assert again == record
    assert again.violations[0]["evidence"]["similarity"] == 0.91 and again.violations[1]["score"] is None
    assert again.scores["prompt"]["semantic.m"] == 0.05


_BASE = {"rail.time": "t", "rail.request_id": "r", "rail.verdict": "allowed"}


@pytest.mark.parametrize("key, value, message", [
    ("rail.scores", "x", "'rail.scores' must be an object of {label: number} objects, not a string"),
    ("rail.scores", {"prompt": "x"}, "'rail.scores' must be"),
    ("rail.scores", {"prompt": {"toxicity": "high"}}, "'rail.scores' must be"),
    ("rail.violations", "x", "'rail.violations' must be a list of objects, not a string"),
    ("rail.violations", ["x"], "'rail.violations' must be a list of objects"),
    ("rail.violations", [{"rule": "r", "licence": ["a"]}], "item 0 key 'licence' must be a string or null"),
    ("rail.violations", [{"restriction": "l"}], "item 0 lacks 'rule'"),
    ("rail.violations", [{"rule": "r", "score": "high"}], "item 0 key 'score' must be a number or null"),
    ("rail.violations", [{"rule": "r", "score": True}], "item 0 key 'score' must be a number or null"),
    ("rail.violations", [{"rule": "r", "evidence": "x"}], "item 0 key 'evidence' must be an object or null"),
    ("rail.violations", [{"rule": "r", "clauses": "a"}], "item 0 key 'clauses' must be a list of strings"),
    ("rail.durations_ms", [1, 2], "'rail.durations_ms' must be an object of numbers, not a list"),
    ("rail.time", 5, "'rail.time' must be a string, not the number 5"),
    ("rail.provenance", "x", "'rail.provenance' must be an object or null"),
    ("gen_ai.usage.input_tokens", "5", "must be an integer or null"),
    ("gen_ai.response.finish_reasons", "stop", "must be a list of strings"),
    ("rail.language", 3, "'rail.language' must be a string or null"),
])
def test_from_dict_type_checks_every_field(key, value, message):
    with pytest.raises(AuditError, match=re.escape(message)):
        AuditRecord.from_dict({**_BASE, key: value})


def test_public_api_is_sorted_and_importable():
    import rail.audit

    # Constants, then classes, then functions, each alphabetical (the order ruff keeps).
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert rail.audit.__all__ == sorted(rail.audit.__all__, key=kind)
    assert all(hasattr(rail.audit, name) for name in rail.audit.__all__)


def test_importing_the_audit_package_does_not_load_the_postgresql_driver():
    code = "import sys, rail.audit; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

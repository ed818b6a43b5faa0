"""The audit record: JSON form with OpenTelemetry GenAI names, round trip, privacy modes, the JSONL sink."""

from __future__ import annotations

import json
import math

import pytest

from rail.audit import (
    AuditRecord,
    AuditSink,
    JsonlSink,
    PrivacyMode,
    apply_privacy,
    canonical_json,
    hash_text,
)
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


def test_canonical_json_is_sorted_compact_utf8_and_finite():
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(AuditError, match="finite"):
        canonical_json({"x": math.nan})
    with pytest.raises(AuditError, match="finite"):
        AuditRecord(scores={"prompt": {"toxicity": math.inf}})


def test_full_mode_keeps_text(make_record):
    record = make_record(1, prompt="call me at alice@example.org")
    assert apply_privacy(record, "full") is record


def test_redacted_mode_removes_personal_data_from_text_and_reasons(make_record):
    pytest.importorskip("rail.policy.pii")
    violation = {"rule": "pii", "restriction": "d", "licence": None, "stage": "input", "action": "warn",
                 "severity": "low", "reason": "found alice@example.org", "span": None}
    record = make_record(1, prompt="mail alice@example.org please", output="sure, alice@example.org",
                         violations=(violation,))
    stored = apply_privacy(record, PrivacyMode.REDACTED)
    text = canonical_json(stored.to_dict()).decode()
    assert "alice@example.org" not in text
    assert stored.prompt.startswith("mail [REDACTED") and stored.prompt.endswith("please")
    assert stored.privacy == "redacted"


def test_hashed_mode_keeps_only_salted_hashes(make_record, monkeypatch):
    monkeypatch.setattr("rail.audit.record._redact", lambda text: text.replace("secret", "[REDACTED]"))
    record = make_record(2, prompt="the secret prompt", output="the secret output")
    stored = apply_privacy(record, "hashed", salt="pepper")
    assert stored.prompt == hash_text("the secret prompt", "pepper")
    assert stored.output == hash_text("the secret output", "pepper")
    assert stored.prompt.startswith("sha256:") and len(stored.prompt) == len("sha256:") + 64
    assert hash_text("the secret prompt", "other salt") != stored.prompt
    assert "secret" not in canonical_json(stored.to_dict()).decode()
    # Applying a weaker mode afterwards never brings text back.
    assert apply_privacy(stored, "full") is stored and apply_privacy(stored, "redacted") is stored


def test_hashed_mode_needs_a_salt(make_record, monkeypatch):
    monkeypatch.delenv("RAIL_AUDIT_SALT", raising=False)
    with pytest.raises(AuditError, match="salt"):
        apply_privacy(make_record(2), "hashed")
    with pytest.raises(AuditError, match="salt"):
        JsonlSink("unused.jsonl", privacy="hashed")


def test_unknown_privacy_mode_names_the_choices():
    with pytest.raises(AuditError, match="full, redacted, hashed"):
        PrivacyMode.parse("secret")


def test_jsonl_sink_appends_one_canonical_line_per_record(tmp_path, make_record):
    path = tmp_path / "audit.jsonl"
    records = [make_record(i) for i in range(1, 4)]
    with JsonlSink(path, privacy="full", fsync=True) as sink:
        assert isinstance(sink, AuditSink)
        for record in records:
            sink.emit(record)
    lines = path.read_bytes().splitlines()
    assert lines == [canonical_json(r.to_dict()) for r in records]
    assert path.stat().st_mode & 0o777 == 0o600
    with JsonlSink(path, privacy="full") as sink:
        sink.emit(records[0])
    assert len(path.read_bytes().splitlines()) == 4


def test_public_api_is_sorted_and_importable():
    import rail.audit

    # Constants, then classes, then functions, each alphabetical (the order ruff keeps).
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert rail.audit.__all__ == sorted(rail.audit.__all__, key=kind)
    assert all(hasattr(rail.audit, name) for name in rail.audit.__all__)

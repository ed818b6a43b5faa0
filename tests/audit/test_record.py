"""The audit record: JSON form with OpenTelemetry GenAI names, round trip, privacy modes, the JSONL sink."""

from __future__ import annotations

import hashlib
import json
import math
import re

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


_BASE = {"rail.time": "t", "rail.request_id": "r", "rail.verdict": "allowed"}


@pytest.mark.parametrize("key, value, message", [
    ("rail.scores", "x", "'rail.scores' must be an object of {label: number} objects, not a string"),
    ("rail.scores", {"prompt": "x"}, "'rail.scores' must be"),
    ("rail.scores", {"prompt": {"toxicity": "high"}}, "'rail.scores' must be"),
    ("rail.violations", "x", "'rail.violations' must be a list of objects, not a string"),
    ("rail.violations", ["x"], "'rail.violations' must be a list of objects"),
    ("rail.violations", [{"rule": "r", "licence": ["a"]}], "item 0 key 'licence' must be a string or null"),
    ("rail.violations", [{"restriction": "l"}], "item 0 lacks 'rule'"),
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


PROVENANCE_DIGEST = "sha256:" + hashlib.sha256(b"the secret output").hexdigest()  # sha256_text form


def _with_provenance(make_record):
    provenance = {"disclosure": "suffix", "watermark": None, "output_sha256": PROVENANCE_DIGEST,
                  "params": {"max_new_tokens": 8, "stop": ["alice@example.org", "###"]}}
    return make_record(2, prompt="the secret prompt", output="the secret output", provenance=provenance,
                       params={"max_tokens": 8, "stop": ["alice@example.org", "###"]})


def test_hashed_mode_keys_the_output_digest_and_hashes_stop_sequences(make_record):
    stored = apply_privacy(_with_provenance(make_record), "hashed", salt="pepper")
    assert stored.provenance["output_sha256"] == hash_text(PROVENANCE_DIGEST, "pepper")
    expected_stop = [hash_text("alice@example.org", "pepper"), hash_text("###", "pepper")]
    assert stored.params["stop"] == expected_stop
    assert stored.provenance["params"]["stop"] == expected_stop
    text = canonical_json(stored.to_dict()).decode()
    assert PROVENANCE_DIGEST not in text and "alice@example.org" not in text and "###" not in text


@pytest.mark.parametrize("salt, expected", [
    ("pepper", hash_text(PROVENANCE_DIGEST, "pepper")),
    (None, None),
])
def test_redacted_mode_keeps_the_output_digest_only_keyed(make_record, monkeypatch, salt, expected):
    pytest.importorskip("rail.policy.pii")
    monkeypatch.delenv("RAIL_AUDIT_SALT", raising=False)
    stored = apply_privacy(_with_provenance(make_record), "redacted", salt=salt)
    assert stored.provenance["output_sha256"] == expected
    assert stored.params["stop"][0].startswith("[REDACTED") and stored.params["stop"][1] == "###"
    assert stored.provenance["params"]["stop"] == stored.params["stop"]
    text = canonical_json(stored.to_dict()).decode()
    assert PROVENANCE_DIGEST not in text and "alice@example.org" not in text
    # Hashing a redacted record later keeps the keyed digest as it is rather than keying it twice.
    assert apply_privacy(stored, "hashed", salt="pepper").provenance["output_sha256"] == expected


def test_redacted_mode_reads_the_salt_from_the_environment(make_record, monkeypatch):
    pytest.importorskip("rail.policy.pii")
    monkeypatch.setenv("RAIL_AUDIT_SALT", "from-env")
    stored = apply_privacy(_with_provenance(make_record), "redacted")
    assert stored.provenance["output_sha256"] == hash_text(PROVENANCE_DIGEST, "from-env")

"""Privacy modes: what a stored record keeps of prompts, outputs, stop sequences, reasons and digests."""

from __future__ import annotations

import hashlib

import pytest

from rail.audit import JsonlSink, PrivacyMode, apply_privacy, canonical_json, hash_text
from rail.errors import AuditError

PROVENANCE_DIGEST = "sha256:" + hashlib.sha256(b"the secret output").hexdigest()  # sha256_text form


def _pii_violation(reason: str = "found alice@example.org") -> dict:
    return {"rule": "pii", "restriction": "d", "licence": None, "stage": "input", "action": "warn",
            "severity": "low", "reason": reason, "span": None,
            "evidence": {"quote": "write to alice@example.org", "nested": [{"who": "bob@example.com"}],
                         "similarity": 0.8}}


def test_full_mode_keeps_text(make_record):
    record = make_record(1, prompt="call me at alice@example.org")
    assert apply_privacy(record, "full") is record


def test_redacted_mode_removes_personal_data_from_text_and_reasons(make_record):
    record = make_record(1, prompt="mail alice@example.org please", output="sure, alice@example.org",
                         violations=(_pii_violation(),))
    stored = apply_privacy(record, PrivacyMode.REDACTED)
    text = canonical_json(stored.to_dict()).decode()
    assert "alice@example.org" not in text and "bob@example.com" not in text
    assert stored.prompt.startswith("mail [REDACTED") and stored.prompt.endswith("please")
    assert stored.violations[0]["reason"] == "found [REDACTED:email]"
    assert stored.violations[0]["evidence"] == {"quote": "write to [REDACTED:email]",
                                                "nested": [{"who": "[REDACTED:email]"}], "similarity": 0.8}
    assert stored.privacy == "redacted"


def test_hashed_mode_keeps_only_salted_hashes(make_record):
    # The real redactor runs on the violation reason and evidence; prompt and output become HMACs.
    record = make_record(2, prompt="the secret prompt", output="the secret output",
                         violations=(_pii_violation("the secret prompt quotes alice@example.org"),))
    stored = apply_privacy(record, "hashed", salt="pepper")
    assert stored.prompt == hash_text("the secret prompt", "pepper")
    assert stored.output == hash_text("the secret output", "pepper")
    assert stored.prompt.startswith("sha256:") and len(stored.prompt) == len("sha256:") + 64
    assert hash_text("the secret prompt", "other salt") != stored.prompt
    assert stored.violations[0]["reason"] == "the secret prompt quotes [REDACTED:email]"
    text = canonical_json(stored.to_dict()).decode()
    assert "the secret output" not in text and "alice@example.org" not in text and "bob@" not in text
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
    monkeypatch.setenv("RAIL_AUDIT_SALT", "from-env")
    stored = apply_privacy(_with_provenance(make_record), "redacted")
    assert stored.provenance["output_sha256"] == hash_text(PROVENANCE_DIGEST, "from-env")

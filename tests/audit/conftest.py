"""Record factories and key files shared by the audit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rail.audit import AuditRecord, generate_key

LICENCE = "bigscience-bloom-rail-1.0"


def _violation(rule: str, clause: str, action: str = "block", reason: str = "matched") -> dict:
    return {"rule": rule, "restriction": clause, "licence": LICENCE, "stage": "input", "action": action,
            "severity": "high", "reason": reason, "span": [0, 4]}


def build_record(i: int = 0, **overrides) -> AuditRecord:
    """Return a realistic record; every third one is blocked under clause (l)."""
    blocked = i % 3 == 0
    fields = dict(
        time=f"2025-03-{1 + i % 5:02d}T{i % 24:02d}:00:00.000000Z",
        request_id=f"req-{i}",
        deployment="helpdesk",
        model="bigscience/bloomz-560m",
        provider="transformers",
        params={"max_tokens": 16, "temperature": 0.7, "do_sample": True},
        input_tokens=5,
        output_tokens=0 if blocked else 7,
        finish_reason="stop",
        verdict="blocked" if blocked else "allowed",
        violations=(_violation("no-medical-advice", "l"),) if blocked else (),
        scores={"prompt": {"toxicity": 0.01 * (i % 100), "insult": 0.02},
                "output": {} if blocked else {"toxicity": 0.9 if i % 7 == 0 else 0.05}},
        language="fr" if i % 4 == 0 else "en",
        provenance=None if blocked else {"disclosure": "prefix", "watermark": None, "output_sha256": "x"},
        policy_id=LICENCE,
        policy_sha256="ab" * 32,
        licence=LICENCE,
        durations_ms={"total": 10.0 + i},
        prompt=f"prompt {i}",
        output=None if blocked else f"output {i}",
    )
    fields.update(overrides)
    return AuditRecord(**fields)


@pytest.fixture(scope="session")
def make_record() -> Callable[..., AuditRecord]:
    return build_record


@pytest.fixture(scope="session")
def ed25519_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private, public = generate_key(tmp_path_factory.mktemp("keys") / "audit.key")
    assert public is not None
    return private, public


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private, public = generate_key(tmp_path_factory.mktemp("other") / "other.key")
    assert public is not None
    return private, public

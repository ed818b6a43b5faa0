"""Shared fixtures: tiny random BLOOM and detoxify models built once per session, and an offline hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub, so no test can reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


# A deployment the packaged policy accepts: a writing assistant whose drafts a person reviews.
PERMITTED_DECLARATION = """\
name: writing-assistant
purpose: Drafts short texts that a person reviews before use.
domains: [general]
audience: [adults]
automated_decisions: {enabled: false, legal_effect: false, human_review: true}
disclosure: {mode: visible, position: suffix}
languages: [en, fr]
"""


@pytest.fixture
def declaration(tmp_path: Path) -> Path:
    """The permitted deployment declaration, written to a temporary file."""
    path = tmp_path / "deployment.yaml"
    path.write_text(PERMITTED_DECLARATION, encoding="utf-8")
    return path


@pytest.fixture
def medical(declaration: Path) -> Path:
    """The permitted declaration moved into the medical domain, which clause (l) forbids."""
    path = declaration.with_name("medical.yaml")
    text = declaration.read_text(encoding="utf-8").replace("domains: [general]", "domains: [medical]")
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_bloom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer random BLOOM with a local tokenizer and a RAIL-licensed README.md."""
    from rail.tiny import build_tiny_bloom

    return build_tiny_bloom(tmp_path_factory.mktemp("tiny-bloom"))


@pytest.fixture(scope="session")
def tiny_detoxify(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(checkpoint, config_dir)`` of a tiny detoxify-format classifier with the unbiased label set."""
    from rail.tiny import build_tiny_detoxify

    return build_tiny_detoxify(tmp_path_factory.mktemp("tiny-detoxify"))


@pytest.fixture
def detoxify_env(tiny_detoxify: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Point rail's scorer at the tiny detoxify checkpoint through the environment, for all models."""
    checkpoint, config_dir = tiny_detoxify
    for name in [k for k in os.environ if k.startswith("RAIL_DETOXIFY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RAIL_DETOXIFY_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("RAIL_DETOXIFY_CONFIG", str(config_dir))
    return checkpoint, config_dir


# Extends the pack with a rule that fires on every output the model writes (any non-space character).
_EVERY_OUTPUT = """\
id: test-every-output
version: "1"
extends: bigscience-bloom-rail-1.0
rules:
  - id: any-output
    description: every generated character
    restrictions: []
    stages: [output]
    check: {{kind: regex, params: {{pattern: '\\S'}}}}
    action: {action}
    severity: low
    coverage: [screened-in-outputs]
"""


@pytest.fixture
def every_output_policy(tmp_path: Path):
    """Write a policy whose extra output rule fires on any output with ``action``; return its path."""

    def write(action: str) -> Path:
        path = tmp_path / f"every-output-{action}.yaml"
        path.write_text(_EVERY_OUTPUT.format(action=action), encoding="utf-8")
        return path

    return write

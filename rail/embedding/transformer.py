"""Any sentence-embedding encoder loaded with transformers, by hub id or local directory, on CPU or GPU.

The vector of a text is the mean of the encoder's last hidden states over its tokens (padding excluded),
L2-normalized — how e5, MiniLM and most sentence-transformers models are pooled. ``prefix`` is put before
every text (e5 models expect ``query: `` for requests). Texts longer than the model's context are cut at it;
the semantic check windows long texts before they get here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rail.embedding import embedding_failed
from rail.errors import EmbeddingError

__all__ = ["TransformerEmbedder"]

_BATCH = 32


def _directory_digest(directory: Path) -> str:
    """Hash every file of a model directory (names and contents), so a changed weight file changes the key."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and ".cache" not in p.parts):
        digest.update(str(path.relative_to(directory)).encode("utf-8") + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class TransformerEmbedder:
    """A transformers encoder with mean pooling; ``embed`` returns unit float32 rows."""

    def __init__(
        self, model: str, *, device: str | None = None, prefix: str = "query: ", max_length: int = 512
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from rail.generation.local import _quiet_hub

        local = Path(model).expanduser()
        is_local = local.is_dir()
        if not is_local and (model.startswith((".", "/", "~")) or Path(model).exists()):
            raise EmbeddingError(
                f"embedding model directory not found: {model}; give a directory holding config.json, the "
                "tokenizer and the weights, or a hub id such as intfloat/multilingual-e5-small"
            )
        source = str(local) if is_local else model
        progress = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            with _quiet_hub():
                tokenizer = AutoTokenizer.from_pretrained(source)
                net = AutoModel.from_pretrained(source)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:
            where = f"the directory {local}" if is_local else f"the hub (or its local cache) for {model}"
            raise EmbeddingError(
                f"cannot load the embedding model from {where}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. Download it once with "
                f"`hf download {model}` or point RAIL_EMBEDDER at a local directory"
            ) from None
        finally:
            if progress:
                hf_logging.enable_progress_bar()
        chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self._net: Any = net.to(chosen).eval()
        except Exception as exc:  # torch raises several kinds for an unknown device or cuda without a GPU
            raise EmbeddingError(
                f"cannot run the embedding model on device {chosen!r}: {type(exc).__name__}; set "
                "RAIL_EMBEDDER_DEVICE to cpu or an available GPU"
            ) from None
        self._tokenizer = tokenizer
        self._torch = torch
        self.device = chosen
        self.prefix = prefix
        self.max_length = min(
            max_length, int(getattr(tokenizer, "model_max_length", max_length) or max_length)
        )
        self.name = f"transformers:{model}"
        self.dim = int(net.config.hidden_size)
        if is_local:
            version = "sha256-" + _directory_digest(local)[:16]
        else:
            version = "commit-" + str(getattr(net.config, "_commit_hash", None) or "unknown")
        self.key = f"{self.name}:{version}:mean:{prefix!r}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (prefix added, mean-pooled, normalized) in batches; ``(n, dim)`` float32."""
        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        try:
            with torch.inference_mode():
                for start in range(0, len(texts), _BATCH):
                    chunk = [self.prefix + t for t in texts[start : start + _BATCH]]
                    batch = self._tokenizer(
                        chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                    ).to(self.device)
                    hidden = self._net(**batch).last_hidden_state
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                    pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                    out[start : start + len(chunk)] = pooled.cpu().numpy()
        except Exception as exc:
            raise embedding_failed(self.name, exc) from exc
        return out

"""Load BLOOM/BLOOMZ and generate text; knows models and nothing about policy (:mod:`rail.gate` adds that).

Backends implement :class:`Generator`: :func:`load_model` loads a checkpoint with transformers
(:mod:`rail.generation.local`).
"""

from rail.generation.base import (
    CUES,
    DEFAULT_MODEL,
    TERMINATORS,
    Completion,
    CompletionStream,
    GenerationParams,
    Generator,
    HygieneNote,
    ModelInfo,
    PromptHygiene,
    apply_hygiene,
    full_stop_for,
    has_clear_end,
)
from rail.generation.local import LocalCompletionStream, TextGenerator, load_model, load_tokenizer

__all__ = [
    "CUES",
    "DEFAULT_MODEL",
    "TERMINATORS",
    "Completion",
    "CompletionStream",
    "GenerationParams",
    "Generator",
    "HygieneNote",
    "LocalCompletionStream",
    "ModelInfo",
    "PromptHygiene",
    "TextGenerator",
    "apply_hygiene",
    "full_stop_for",
    "has_clear_end",
    "load_model",
    "load_tokenizer",
]

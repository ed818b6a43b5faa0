"""Load BLOOM/BLOOMZ and generate text; knows models and nothing about policy (:mod:`rail.gate` adds that).

Backends implement :class:`Generator`: :func:`load_model` loads a checkpoint with transformers
(:mod:`rail.generation.local`); :func:`connect` reaches a model served by an OpenAI-compatible engine
(:mod:`rail.generation.remote`).
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
    StopFilter,
    apply_hygiene,
    full_stop_for,
    has_clear_end,
)
from rail.generation.local import LocalCompletionStream, TextGenerator, load_model, load_tokenizer
from rail.generation.remote import RemoteCompletionStream, RemoteGenerator, connect

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
    "RemoteCompletionStream",
    "RemoteGenerator",
    "StopFilter",
    "TextGenerator",
    "apply_hygiene",
    "connect",
    "full_stop_for",
    "has_clear_end",
    "load_model",
    "load_tokenizer",
]

"""What every text generator speaks: parameters, completions, model info, BLOOMZ prompt hygiene, the protocol.

Backends (:mod:`rail.generation.local` for transformers, :mod:`rail.generation.remote` for OpenAI-compatible
engines) implement :class:`Generator`; they know models and nothing about policy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from rail.errors import ConfigError

DEFAULT_MODEL = "bigscience/bloomz-560m"

# Sentence-final punctuation across the scripts BLOOM covers: Latin/Cyrillic/Greek, CJK (full and half width),
# Devanagari danda, Arabic/Urdu, Armenian, Ethiopic, Myanmar, Tibetan, Hebrew, Greek question mark.
TERMINATORS = frozenset(".!?…。！？．｡।॥؟۔։።፧၊။།׃;‼⁇⁈⁉")
# A prompt ending in a colon-style cue ("Answer:", "Story (in Spanish):", "答案：") asks for the continuation.
CUES = frozenset(":：")
# Closing quotes and brackets may follow the final punctuation: `… terms to "Mạng neural nhân tạo".`
_CLOSERS = "\"'”’»›)]}）」』】〉》"


class PromptHygiene(str, Enum):
    """What to do with a prompt that does not clearly end (BLOOMZ then tends to continue it)."""

    OFF = "off"
    WARN = "warn"
    TERMINATE = "terminate"

    @classmethod
    def parse(cls, value: PromptHygiene | str) -> PromptHygiene:
        """Return the mode for ``value``, raising ConfigError naming the allowed values."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(
                f"unknown prompt hygiene mode {value!r}",
                hint="use off, warn, terminate or auto (terminate for bloomz models)",
            ) from None


def has_clear_end(prompt: str) -> bool:
    """Tell whether ``prompt`` ends with sentence-final punctuation (any script) or a colon-style cue."""
    tail = prompt.rstrip().rstrip(_CLOSERS).rstrip()
    return bool(tail) and (tail[-1] in TERMINATORS or tail[-1] in CUES)


def full_stop_for(text: str) -> str:
    """Return the full stop of the script ``text`` ends in: 。 for CJK, । Devanagari, ۔ Urdu, else '.'."""
    import unicodedata

    for char in reversed(text):
        if not char.isalpha():
            continue
        name = unicodedata.name(char, "")
        if name.startswith(("CJK", "HIRAGANA", "KATAKANA")):
            return "。"
        if name.startswith(("DEVANAGARI", "BENGALI")):
            return "।"
        if name.startswith("ARABIC LETTER") and any(
            u in name for u in ("HEH GOAL", "NOON GHUNNA", "TTEH", "DDAL")
        ):
            return "۔"
        if name.startswith(("ETHIOPIC",)):
            return "።"
        if name.startswith("MYANMAR"):
            return "။"
        return "."
    return "."


@dataclass(frozen=True)
class HygieneNote:
    """What prompt hygiene found and did for one prompt; ``sent`` is the prompt the model saw."""

    mode: str
    clear_end: bool
    action: str  # none | warned | terminated
    sent: str

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "clear_end": self.clear_end, "action": self.action}


def apply_hygiene(prompt: str, mode: PromptHygiene | str) -> HygieneNote:
    """Check ``prompt`` for a clear end and, per ``mode``, leave it, flag it or append a full stop."""
    mode = PromptHygiene.parse(mode)
    if mode is PromptHygiene.OFF:
        return HygieneNote(mode.value, True, "none", prompt)
    if has_clear_end(prompt) or not prompt.strip():
        return HygieneNote(mode.value, True, "none", prompt)
    if mode is PromptHygiene.WARN:
        return HygieneNote(mode.value, False, "warned", prompt)
    stripped = prompt.rstrip()
    return HygieneNote(mode.value, False, "terminated", stripped + full_stop_for(stripped))


@dataclass(frozen=True)
class GenerationParams:
    """How to generate: length, sampling, seed, stop sequences. Greedy with 64 new tokens by default."""

    max_new_tokens: int = 64
    min_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        # A lone string is one stop sequence, not one per character.
        object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        problems = []
        if any(not isinstance(s, str) or not s for s in self.stop):
            # An empty stop sequence matches at position 0 and would cut every output to nothing.
            problems.append("stop sequences must be non-empty strings")
        if self.max_new_tokens < 1:
            problems.append("max_new_tokens must be at least 1")
        if self.min_new_tokens is not None and not 0 <= self.min_new_tokens <= self.max_new_tokens:
            problems.append("min_new_tokens must be between 0 and max_new_tokens")
        if self.temperature <= 0:
            problems.append("temperature must be above 0")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must be in (0, 1]")
        if self.top_k < 0:
            problems.append("top_k must be 0 (off) or more")
        if self.repetition_penalty <= 0:
            problems.append("repetition_penalty must be above 0")
        if problems:
            raise ConfigError("; ".join(problems), path="generation parameters")

    def replace(self, **changes: Any) -> GenerationParams:
        """Return a copy with ``changes`` applied (unknown names raise TypeError)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form recorded in provenance and audit records."""
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out

    def to_audit(self) -> dict[str, Any]:
        """Return the parameters under the OpenAI/OpenTelemetry names audit records use (max_tokens …)."""
        out = self.to_dict()
        out["max_tokens"] = out.pop("max_new_tokens")
        return out


@dataclass(frozen=True)
class ModelInfo:
    """What was actually loaded: id, revision and commit, licence, dtype, device, size."""

    model_id: str
    revision: str | None
    commit: str | None
    licence: str | None
    dtype: str
    device: str
    parameters: int
    architecture: str | None
    bloomz: bool
    local: bool
    #: Tokens the model can attend to (prompt plus generated text); None when the model does not say.
    context_length: int | None = None
    #: Who runs the model: ``transformers`` in this process, or the remote engine's name.
    provider: str = "transformers"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    """One generated continuation: the text after stop-sequence cutting, why it ended and token counts."""

    prompt: str
    text: str
    finish_reason: str  # stop | eos | length
    input_tokens: int
    output_tokens: int
    hygiene: HygieneNote
    token_ids: tuple[int, ...] = field(default=(), repr=False)


class StopFilter:
    """Cut streamed text at the first stop sequence, holding back text that may be the start of one.

    ``feed(chunk)`` returns the text safe to release now; ``flush()`` the held-back rest once the stream
    ended without a stop sequence. Released text never contains a stop sequence or anything after it.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = tuple(stop)
        self._holdback = max((len(s) for s in self.stop), default=1) - 1
        self._pending = ""
        self.emitted = ""
        self.stopped = False

    def feed(self, chunk: str) -> str:
        """Add ``chunk``; return what can be released (possibly empty)."""
        if self.stopped:
            return ""
        self._pending += chunk
        cut = min((i for i in (self._pending.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self._pending, self.stopped = self._pending[:cut], True
            safe = len(self._pending)
        else:
            safe = max(0, len(self._pending) - self._holdback)
        out, self._pending = self._pending[:safe], self._pending[safe:]
        self.emitted += out
        return out

    def flush(self) -> str:
        """Release what was held back (the stream ended); nothing after a stop sequence."""
        out, self._pending = self._pending, ""
        self.emitted += out
        return out


class CompletionStream(Protocol):
    """Text chunks of one completion as they are produced; ``completion`` holds the result afterwards."""

    completion: Completion | None

    def __iter__(self) -> Iterator[str]: ...

    def cancel(self) -> None:
        """Stop generating at the next token; iteration then ends without a completion."""


class Generator(Protocol):
    """A loaded model behind any backend: prompt hygiene, batched generation and streaming."""

    info: ModelInfo

    def prepare(self, prompts: Sequence[str]) -> list[HygieneNote]:
        """Apply the backend's prompt hygiene to each prompt (what the model will be sent)."""

    def generate(
        self,
        prompts: Sequence[str],
        params: GenerationParams | None = None,
        *,
        watermarking_config: Any | None = None,
        notes: Sequence[HygieneNote] | None = None,
    ) -> list[Completion]:
        """Generate one completion per prompt."""

    def stream(
        self,
        prompt: str,
        params: GenerationParams | None = None,
        *,
        watermarking_config: Any | None = None,
        note: HygieneNote | None = None,
    ) -> CompletionStream:
        """Start generating for one prompt and return its stream of text chunks."""

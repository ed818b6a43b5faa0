"""Load BLOOM or BLOOMZ with transformers and generate: batches, streaming, stop sequences.

>>> generator = load_model("bigscience/bloomz-560m")                       # doctest: +SKIP
>>> [c.text for c in generator.generate(["Translate to English: Je t'aime."])]   # doctest: +SKIP
['I love you.']
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rail.errors import ConfigError, ModelLoadError
from rail.generation.base import (
    DEFAULT_MODEL,
    Completion,
    GenerationParams,
    HygieneNote,
    ModelInfo,
    PromptHygiene,
    StopFilter,
    apply_hygiene,
)


def _local_path(model: str) -> Path | None:
    path = Path(model).expanduser()
    if path.exists():
        return path
    if model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1:
        return path
    return None


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _read_front_matter_licence(text: str, source: str) -> str | None:
    from rail.yamlio import load_yaml_text

    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        data = load_yaml_text(text[3:end], source).data
    except ConfigError:
        return None
    licence = data.get("license") if isinstance(data, dict) else None
    return licence if isinstance(licence, str) else None


def _card_licence(model: str, local: Path | None, revision: str | None) -> str | None:
    """Read ``license:`` from the model card's front matter (local README.md or the Hub's)."""
    if local is not None:
        readme = local / "README.md"
        return (
            _read_front_matter_licence(readme.read_text(encoding="utf-8", errors="replace"), str(readme))
            if readme.is_file()
            else None
        )
    try:
        from huggingface_hub import hf_hub_download

        readme_path = hf_hub_download(model, "README.md", revision=revision, local_files_only=_offline())
        return _read_front_matter_licence(
            Path(readme_path).read_text(encoding="utf-8", errors="replace"), f"{model}/README.md"
        )
    except Exception:  # the card is informational; a model without a readable card still loads
        return None


def _load_error(model: str, revision: str | None, exc: BaseException) -> ModelLoadError:
    name = type(exc).__name__
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    fix = (
        f"To use a local copy, download it once (e.g. `hf download {model} --local-dir DIR`) and pass "
        f"--model DIR (library: load_model('DIR')); with a filled Hugging Face cache, HF_HUB_OFFLINE=1 loads "
        f"from the cache without network; pin a version with --revision."
    )
    if name == "GatedRepoError":
        what = f"{model} is a gated repository: accept its licence on the Hub and log in (`hf auth login`)"
    elif name == "RevisionNotFoundError":
        what = f"{model} has no revision {revision!r}"
    elif name == "RepositoryNotFoundError" or "is not a valid model identifier" in cause:
        what = f"no model {model!r} on the Hugging Face Hub (check the spelling, or log in if it is private)"
    elif _offline():
        what = f"{model} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    else:
        what = f"cannot fetch {model} ({name}: {cause}); the Hub may be unreachable"
    return ModelLoadError(f"{what}. {fix}")


def _check_local(model: str) -> Path | None:
    """Return the local directory ``model`` names (checked to be a model directory), or None for a hub id."""
    local = _local_path(model)
    if local is not None:
        if not local.is_dir():
            raise ModelLoadError(
                f"model directory not found: {local}. Pass --model with a directory that holds "
                "config.json, the tokenizer files and the weights, or a hub id such as "
                f"{DEFAULT_MODEL}."
            )
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"{local} is not a model directory (no config.json). Point --model at the "
                "directory save_pretrained or `hf download … --local-dir` wrote."
            )
    return local


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    # huggingface_hub logs every retry of an unreachable Hub; the one ModelLoadError rail raises says it all.
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def load_tokenizer(model: str = DEFAULT_MODEL, *, revision: str | None = None) -> tuple[Any, Any]:
    """Load only a model's tokenizer and config (enough to test for a watermark)."""
    from transformers import AutoConfig, AutoTokenizer

    local = _check_local(model)
    source = str(local) if local is not None else model
    kwargs: dict[str, Any] = {"revision": revision} if revision and local is None else {}
    try:
        with _quiet_hub():
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            return tokenizer, AutoConfig.from_pretrained(source, **kwargs)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        if local is not None:
            raise ModelLoadError(f"cannot load the tokenizer in {local}: {type(exc).__name__}") from None
        raise _load_error(model, revision, exc) from None


def load_model(
    model: str = DEFAULT_MODEL,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    device: str | None = None,
    load_in_8bit: bool = False,
    hygiene: PromptHygiene | str = "auto",
) -> TextGenerator:
    """Load a BLOOM/BLOOMZ checkpoint by hub id or local directory and return a ready generator.

    ``dtype`` "auto" keeps the checkpoint's dtype; ``device`` None spreads the model over GPUs with
    accelerate's ``device_map="auto"`` when CUDA is present, else uses the CPU. ``load_in_8bit`` needs
    bitsandbytes and a GPU. ``hygiene`` "auto" terminates unclear BLOOMZ prompts and leaves others alone.
    Raises ModelLoadError with how to point rail at a local copy when the weights cannot be had.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    local = _check_local(model)
    source = str(local) if local is not None else model
    kwargs: dict[str, Any] = {"revision": revision} if revision and local is None else {}
    model_kwargs: dict[str, Any] = {"dtype": dtype if dtype == "auto" else _torch_dtype(dtype)}
    cuda = torch.cuda.is_available()
    if load_in_8bit:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelLoadError(
                "8-bit loading needs bitsandbytes: install it with `pip install 'rail[int8]'` "
                "(a CUDA GPU is required), or load without --8bit."
            )
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        model_kwargs["device_map"] = device or "auto"
    elif device is None and cuda and importlib.util.find_spec("accelerate") is not None:
        model_kwargs["device_map"] = "auto"

    progress = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with _quiet_hub():
            tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left", **kwargs)
            net = AutoModelForCausalLM.from_pretrained(source, **model_kwargs, **kwargs)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        if local is not None:
            raise ModelLoadError(
                f"cannot load the model in {local}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. Check that "
                "the directory holds a complete causal-LM checkpoint and its tokenizer."
            ) from None
        raise _load_error(model, revision, exc) from None
    finally:
        if progress:
            hf_logging.enable_progress_bar()
    if "device_map" not in model_kwargs:
        net = net.to(device or "cpu")  # type: ignore[arg-type]  # transformers types .to() for models only
    net.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    name = (str(getattr(net.config, "_name_or_path", "")) + " " + source).lower()
    info = ModelInfo(
        model_id=source,
        revision=revision if local is None else None,
        commit=getattr(net.config, "_commit_hash", None) if local is None else None,
        licence=_card_licence(model, local, revision),
        dtype=str(net.dtype).removeprefix("torch."),
        device=str(net.device),
        parameters=sum(p.numel() for p in net.parameters()),
        architecture=getattr(net.config, "model_type", None),
        bloomz="bloomz" in name,
        local=local is not None,
        context_length=context_length(net.config, tokenizer),
    )
    return TextGenerator(net, tokenizer, info, hygiene=hygiene)


# BLOOM's ALiBi positions set no hard limit; the family was trained on sequences of 2,048 tokens.
_BLOOM_TRAINED_CONTEXT = 2048


def context_length(config: Any, tokenizer: Any) -> int | None:
    """Return how many tokens (prompt plus output) the model is made for, from its config or tokenizer."""
    for name in ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:  # tokenizers without a limit report ~1e30
        return limit
    return _BLOOM_TRAINED_CONTEXT if getattr(config, "model_type", None) == "bloom" else None


def _torch_dtype(name: str) -> Any:
    import torch

    aliases = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16"}
    value = getattr(torch, aliases.get(name, name), None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"unknown dtype {name!r}", hint="use auto, float32, float16 or bfloat16")
    return value


class TextGenerator:
    """A loaded causal LM with its tokenizer: generates batches and streams; knows nothing about policy."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, *, hygiene: PromptHygiene | str = "auto"):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.hygiene = (
            (PromptHygiene.TERMINATE if info.bloomz else PromptHygiene.OFF)
            if hygiene == "auto"
            else PromptHygiene.parse(hygiene)
        )

    def _generate_kwargs(self, params: GenerationParams, watermarking_config: Any | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.do_sample,
            "repetition_penalty": params.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if params.min_new_tokens:
            kwargs["min_new_tokens"] = params.min_new_tokens
        if params.do_sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            # Greedy decoding ignores these; passing neutral values keeps transformers from warning.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if watermarking_config is not None:
            kwargs["watermarking_config"] = watermarking_config
        return kwargs

    def _encode(self, prompts: Sequence[str]) -> Any:
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(self.model.device)

    def _finish(
        self, prompt: str, note: HygieneNote, ids: list[int], input_tokens: int, params: GenerationParams
    ) -> Completion:
        eos = self.tokenizer.eos_token_id
        reason = "length"
        if eos is not None and eos in ids:
            ids = ids[: ids.index(eos) + 1]
            reason = "eos"
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        return Completion(
            prompt=prompt,
            text=text,
            finish_reason=reason,
            input_tokens=input_tokens,
            output_tokens=len(ids),
            hygiene=note,
            token_ids=tuple(ids),
        )

    def prepare(self, prompts: Sequence[str]) -> list[HygieneNote]:
        """Apply this generator's prompt hygiene to each prompt (what the model will be sent)."""
        return [apply_hygiene(p, self.hygiene) for p in prompts]

    def generate(
        self,
        prompts: Sequence[str],
        params: GenerationParams | None = None,
        *,
        watermarking_config: Any | None = None,
        notes: Sequence[HygieneNote] | None = None,
    ) -> list[Completion]:
        """Generate one completion per prompt in one left-padded batch."""
        import torch

        params = params or GenerationParams()
        if not prompts:
            return []
        notes = list(notes) if notes is not None else self.prepare(prompts)
        batch = self._encode([n.sent for n in notes])
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**batch, **self._generate_kwargs(params, watermarking_config))
        width = batch["input_ids"].shape[1]
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        rows = out[:, width:].tolist()
        return [
            self._finish(p, n, row, int(n_in), params)
            for p, n, row, n_in in zip(prompts, notes, rows, lengths, strict=True)
        ]

    def stream(
        self,
        prompt: str,
        params: GenerationParams | None = None,
        *,
        watermarking_config: Any | None = None,
        note: HygieneNote | None = None,
    ) -> LocalCompletionStream:
        """Start generating for one prompt and return an iterator of text chunks (see CompletionStream)."""
        return LocalCompletionStream(
            self,
            prompt,
            params or GenerationParams(),
            watermarking_config,
            note or apply_hygiene(prompt, self.hygiene),
        )


class LocalCompletionStream:
    """Iterate text chunks as the model produces them; ``.completion`` holds the full result afterwards.

    Chunks never include a stop sequence or anything after it: text that might be the start of a stop
    sequence is held back until it is known not to be one. The chunks joined equal ``completion.text``.
    """

    def __init__(
        self,
        generator: TextGenerator,
        prompt: str,
        params: GenerationParams,
        watermarking_config: Any | None,
        note: HygieneNote,
    ) -> None:
        self._generator = generator
        self._prompt = prompt
        self._params = params
        self._watermarking_config = watermarking_config
        self._note = note
        self._cancel = threading.Event()
        self.completion: Completion | None = None

    def cancel(self) -> None:
        """Stop generating at the next token; iteration then ends without a completion."""
        self._cancel.set()

    def __iter__(self) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancelled = self._cancel

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device
                )

        gen = self._generator
        params = self._params
        batch = gen._encode([self._note.sent])
        streamer = TextIteratorStreamer(gen.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    result["out"] = gen.model.generate(
                        **batch,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                        **gen._generate_kwargs(params, self._watermarking_config),
                    )
            except BaseException as exc:  # re-raised in the consumer's thread below
                result["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, name="rail-generate", daemon=True)
        worker.start()
        stops = StopFilter(params.stop)
        for chunk in streamer:
            if stops.stopped or cancelled.is_set():
                continue  # drain so the worker can finish
            safe = stops.feed(chunk)
            if safe:
                yield safe
        worker.join()
        if "error" in result:
            raise result["error"]
        if cancelled.is_set():
            return
        out = result["out"]
        width = batch["input_ids"].shape[1]
        self.completion = gen._finish(
            self._prompt, self._note, out[0, width:].tolist(), int(batch["attention_mask"][0].sum()), params
        )
        # Incremental decoding can differ from one final decode at the edges; the final text is authoritative.
        emitted = stops.emitted
        rest = self.completion.text[len(emitted) :] if self.completion.text.startswith(emitted) else ""
        if rest:
            yield rest

"""Score prompts and outputs for toxicity with detoxify, online or fully offline from local files.

Configure which detoxify model runs and where its files are with :class:`ScorerSettings`, built from a YAML
settings file and/or the environment (:meth:`ScorerSettings.from_env`):

    RAIL_DETOXIFY_MODEL                 original | unbiased | multilingual | auto (default)
    RAIL_DETOXIFY_CHECKPOINT            one detoxify checkpoint (.ckpt) used for every model
    RAIL_DETOXIFY_CONFIG                its Hugging Face config + tokenizer directory
    RAIL_DETOXIFY_<MODEL>_CHECKPOINT    per model, e.g. RAIL_DETOXIFY_MULTILINGUAL_CHECKPOINT
    RAIL_DETOXIFY_<MODEL>_CONFIG
    RAIL_DETOXIFY_DEVICE                cpu (default), cuda, cuda:1 …

With no checkpoint configured, detoxify's published checkpoints are downloaded (and cached by torch.hub).
``auto`` scores English text with ``unbiased`` and every other (or unknown) language with ``multilingual``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rail.errors import ConfigError, ScorerError

MODELS = ("original", "unbiased", "multilingual")
CHOICES = (*MODELS, "auto")

# detoxify renames these Jigsaw labels when it loads a checkpoint; rail reports the same names.
_LABEL_NAMES = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
_SETTINGS_KEYS = {"model", "device", "checkpoint", "config", "models", "max_length"}
# Windows scored per forward pass: a batch of short texts is one pass, a huge text takes several.
_WINDOWS_PER_PASS = 64


# A device torch can name; whether it exists on this machine is found out when the model loads.
_DEVICE = re.compile(r"^(?:cpu|cuda|mps|xpu|hpu|npu|mtia)(?::\d+)?$")
_DEVICE_HINT = "use cpu, cuda, cuda:N (a GPU index) or mps"


def _frozen(mapping: Mapping[str, str | None]) -> Mapping[str, str | None]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ScorerSettings:
    """Which detoxify model scores text, and where its checkpoint and Hugging Face config live.

    ``checkpoints`` and ``configs`` map a model name (original, unbiased, multilingual) to a local path;
    a model without a checkpoint is downloaded from detoxify's releases when first needed.
    """

    model: str = "auto"
    checkpoints: Mapping[str, str | None] = field(default_factory=lambda: _frozen({}))
    configs: Mapping[str, str | None] = field(default_factory=lambda: _frozen({}))
    device: str = "cpu"
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.model not in CHOICES:
            raise ConfigError(
                f"unknown detoxify model {self.model!r}",
                path="scorer.model",
                hint=f"use one of {', '.join(CHOICES)}",
            )
        for name in (*self.checkpoints, *self.configs):
            if name not in MODELS:
                raise ConfigError(
                    f"unknown detoxify model {name!r}",
                    path=f"scorer.models.{name}",
                    hint=f"use one of {', '.join(MODELS)}",
                )
        if not _DEVICE.match(self.device):
            raise ConfigError(f"unknown device {self.device!r}", path="scorer.device", hint=_DEVICE_HINT)
        object.__setattr__(self, "checkpoints", _frozen(self.checkpoints))
        object.__setattr__(self, "configs", _frozen(self.configs))

    @classmethod
    def from_env(
        cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> ScorerSettings:
        """Build settings from an optional YAML file, then let RAIL_DETOXIFY_* variables override it.

        The file holds ``model``, ``device``, ``max_length``, ``checkpoint`` and ``config`` (for every
        model) and ``models: {<model>: {checkpoint, config}}``. Relative paths are relative to the file.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        checkpoints: dict[str, str | None] = {}
        configs: dict[str, str | None] = {}
        if path is not None:
            values, checkpoints, configs = _read_settings_file(Path(path))
        if env.get("RAIL_DETOXIFY_MODEL"):
            values["model"] = env["RAIL_DETOXIFY_MODEL"].strip().lower()
            if values["model"] not in CHOICES:
                raise ConfigError(
                    f"unknown detoxify model {values['model']!r}",
                    source="RAIL_DETOXIFY_MODEL",
                    hint=f"use one of {', '.join(CHOICES)}",
                )
        if env.get("RAIL_DETOXIFY_DEVICE"):
            values["device"] = env["RAIL_DETOXIFY_DEVICE"].strip()
            if not _DEVICE.match(values["device"]):
                raise ConfigError(f"unknown device {values['device']!r}", source="RAIL_DETOXIFY_DEVICE",
                                  hint=_DEVICE_HINT)
        for model in MODELS:
            for suffix, target in (("CHECKPOINT", checkpoints), ("CONFIG", configs)):
                shared = env.get(f"RAIL_DETOXIFY_{suffix}")
                specific = env.get(f"RAIL_DETOXIFY_{model.upper()}_{suffix}")
                if specific or shared:
                    target[model] = specific or shared
        return cls(checkpoints=checkpoints, configs=configs, **values)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form recorded with results (paths as configured)."""
        return {
            "model": self.model,
            "device": self.device,
            "max_length": self.max_length,
            "checkpoints": dict(self.checkpoints),
            "configs": dict(self.configs),
        }


def _read_settings_file(path: Path) -> tuple[dict[str, Any], dict[str, str | None], dict[str, str | None]]:
    from rail.yamlio import load_yaml

    doc = load_yaml(path)
    data = doc.data if doc.data is not None else {}
    source = str(path)
    if not isinstance(data, dict):
        raise ConfigError(
            "scorer settings must be a mapping",
            source=source,
            hint="write keys such as `model: multilingual` and `checkpoint: /path/to.ckpt`",
        )
    unknown = sorted(set(data) - _SETTINGS_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in scorer settings",
            source=source,
            path=unknown[0],
            hint=f"allowed keys: {', '.join(sorted(_SETTINGS_KEYS))}",
        )

    def local(value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError("expected a path", source=source, path=where)
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (path.parent / p))

    values: dict[str, Any] = {}
    for key in ("model", "device"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError("expected a string", source=source, path=key, line=doc.line_of([key]))
            values[key] = data[key]
    if values.get("model", "auto") not in CHOICES:
        raise ConfigError(
            f"unknown detoxify model {values['model']!r}",
            source=source,
            path="model",
            line=doc.line_of(["model"]),
            hint=f"use one of {', '.join(CHOICES)}",
        )
    if "device" in values and not _DEVICE.match(values["device"]):
        raise ConfigError(
            f"unknown device {values['device']!r}", source=source, path="device",
            line=doc.line_of(["device"]), hint=_DEVICE_HINT,
        )
    if "max_length" in data:
        if not isinstance(data["max_length"], int) or data["max_length"] < 8:
            raise ConfigError("expected an integer >= 8", source=source, path="max_length")
        values["max_length"] = data["max_length"]
    checkpoints: dict[str, str | None] = {}
    configs: dict[str, str | None] = {}
    for model in MODELS:
        if "checkpoint" in data:
            checkpoints[model] = local(data["checkpoint"], "checkpoint")
        if "config" in data:
            configs[model] = local(data["config"], "config")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(
            "expected a mapping of model name to {checkpoint, config}", source=source, path="models"
        )
    for name, entry in models.items():
        if name not in MODELS:
            raise ConfigError(
                f"unknown detoxify model {name!r}",
                source=source,
                path=f"models.{name}",
                hint=f"use one of {', '.join(MODELS)}",
            )
        if not isinstance(entry, dict) or set(entry) - {"checkpoint", "config"}:
            raise ConfigError(
                "expected `checkpoint:` and/or `config:` paths", source=source, path=f"models.{name}"
            )
        if "checkpoint" in entry:
            checkpoints[name] = local(entry["checkpoint"], f"models.{name}.checkpoint")
        if "config" in entry:
            configs[name] = local(entry["config"], f"models.{name}.config")
    return values, checkpoints, configs


class _Classifier:
    """One loaded detoxify model: a sequence classifier, its tokenizer and its label names."""

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], device: str, max_length: int) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.labels = labels
        self.device = device
        self.max_length = max_length

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        """Score each text; one longer than ``max_length`` tokens is scored in overlapping windows.

        Every window is scored and a text keeps each label's maximum over its windows, so toxic text after
        a long harmless stretch is still caught. Windows share a quarter of their tokens, so a phrase that
        straddles a boundary lies whole in one of them. Texts that fit are one window each: a batch of
        short texts is one forward pass.
        """
        import torch

        with torch.inference_mode():
            inputs = self.tokenizer(
                texts,
                return_tensors="pt",
                truncation=True,
                padding=True,
                max_length=self.max_length,
                stride=self.max_length // 4,
                return_overflowing_tokens=True,
            )
            owners = inputs.pop("overflow_to_sample_mapping").tolist()
            inputs = inputs.to(self.device)
            rows: list[list[float]] = []
            # Bounded passes keep memory flat however long a hostile text is.
            for start in range(0, len(owners), _WINDOWS_PER_PASS):
                window = {k: v[start : start + _WINDOWS_PER_PASS] for k, v in inputs.items()}
                rows += torch.sigmoid(self.model(**window)[0]).float().cpu().tolist()
        return [dict(zip(self.labels, row, strict=True)) for row in max_per_text(owners, rows, len(texts))]


def max_per_text(owners: Sequence[int], rows: Sequence[Sequence[float]], count: int) -> list[list[float]]:
    """Merge window scores into one row per text: each label's maximum over the windows of that text.

    ``owners[i]`` is the index of the text window ``i`` came from; every text needs at least one window.
    """
    merged: list[list[float] | None] = [None] * count
    for owner, row in zip(owners, rows, strict=True):
        best = merged[owner]
        merged[owner] = list(row) if best is None else [max(a, b) for a, b in zip(best, row, strict=True)]
    missing = [i for i, row in enumerate(merged) if row is None]
    if missing:
        raise ValueError(f"no window was scored for text {missing[0]}")
    return merged  # type: ignore[return-value]


# Loaded classifiers are shared by every scorer in the process: loading is the expensive part.
_CACHE: dict[tuple[str, str | None, str, int], _Classifier] = {}
_CACHE_LOCK = threading.Lock()


def _how_to_fix(model: str) -> str:
    upper = model.upper()
    return (
        f"download detoxify's {model} checkpoint and its Hugging Face config directory, then set "
        f"RAIL_DETOXIFY_{upper}_CHECKPOINT and RAIL_DETOXIFY_{upper}_CONFIG (or RAIL_DETOXIFY_CHECKPOINT / "
        f"RAIL_DETOXIFY_CONFIG for every model, or `models.{model}.checkpoint` / `.config` in the scorer "
        f"settings file)"
    )


def _load(
    model: str, checkpoint: str | None, config_dir: str | None, device: str, max_length: int
) -> _Classifier:
    """Load one detoxify model, never touching the network when a checkpoint and config dir are given."""
    try:
        import torch
        from detoxify import detoxify as dx
    except ImportError as exc:  # pragma: no cover - detoxify is a dependency
        raise ScorerError(f"detoxify is not installed ({exc}); install rail with its dependencies") from exc

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ScorerError(f"detoxify checkpoint for {model!r} not found: {checkpoint} — {_how_to_fix(model)}")
    if config_dir is not None and not (Path(config_dir) / "config.json").is_file():
        raise ScorerError(
            f"detoxify config directory for {model!r} has no config.json: {config_dir} — {_how_to_fix(model)}"
        )
    source = checkpoint or dx.MODEL_URLS[model]
    if checkpoint is None and _offline():
        cached = Path(torch.hub.get_dir()) / "checkpoints" / source.rsplit("/", 1)[-1]
        if not cached.is_file():
            raise ScorerError(
                f"detoxify {model!r} checkpoint is not available offline (HF_HUB_OFFLINE is set and "
                f"{source} is not in the torch hub cache) — {_how_to_fix(model)}"
            )
        checkpoint = str(cached)
    try:
        if checkpoint is None:
            # torch.hub announces downloads on stdout, which carries JSON results: send it to stderr.
            with redirect_stdout(sys.stderr):
                loaded = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=False)
        else:
            # A detoxify checkpoint is a pickle that holds its training config: load only files you trust.
            loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
        arch = dict(loaded["config"]["arch"]["args"])
        labels = [_LABEL_NAMES.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
        if config_dir is not None:
            # detoxify builds the config from the hub id in model_type even when given a local directory;
            # naming the local directory there keeps the whole load offline.
            arch["model_type"] = config_dir
        with _quiet_transformers():
            net, tokenizer = dx.get_model_and_tokenizer(
                **arch, state_dict=loaded["state_dict"], huggingface_config_path=config_dir
            )
    except (KeyError, TypeError) as exc:
        raise ScorerError(
            f"{source} is not a detoxify checkpoint (missing {exc}); it must hold "
            f"config.arch.args, config.dataset.args.classes and state_dict"
        ) from exc
    except Exception as exc:
        hint = (
            "" if config_dir else " (no local config directory was given, so its config was looked up online)"
        )
        raise ScorerError(
            f"cannot load detoxify {model!r} from {source}{hint}: {_first_line(exc)} — {_how_to_fix(model)}"
        ) from exc
    try:
        return _Classifier(net, tokenizer, labels, device, max_length)
    except Exception as exc:  # torch raises several kinds for an unknown device or cuda without a GPU
        raise ScorerError(
            f"cannot run detoxify {model!r} on device {device!r}: {_first_line(exc)} — set "
            f"RAIL_DETOXIFY_DEVICE (or `device:` in the scorer settings) to cpu or an available GPU"
        ) from exc


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars while loading, so CLI output stays one line per result."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ToxicityScorer:
    """Score texts with detoxify: every label, probabilities in [0, 1]; models load on first use.

    >>> scorer = ToxicityScorer(ScorerSettings.from_env())      # doctest: +SKIP
    >>> scorer.score(["Bonjour à tous."], languages=["fr"])[0]["toxicity"]   # doctest: +SKIP
    0.0007
    """

    def __init__(self, settings: ScorerSettings | None = None) -> None:
        self.settings = settings or ScorerSettings()

    def model_for(self, language: str | None) -> str:
        """Name the detoxify model that scores text in ``language`` (ISO 639-1, None when unknown)."""
        if self.settings.model != "auto":
            return self.settings.model
        return "unbiased" if language == "en" else "multilingual"

    def load(self, model: str) -> None:
        """Load ``model`` now instead of on the first request (raises ScorerError when it cannot)."""
        self._classifier(model)

    def _classifier(self, model: str) -> _Classifier:
        s = self.settings
        checkpoint, config_dir = s.checkpoints.get(model), s.configs.get(model)
        # One checkpoint configured for every model is loaded once.
        key = (checkpoint or f"release:{model}", config_dir, s.device, s.max_length)
        with _CACHE_LOCK:
            found = _CACHE.get(key)
            if found is None:
                found = _load(model, checkpoint, config_dir, s.device, s.max_length)
                _CACHE[key] = found
        return found

    def score(
        self, texts: Sequence[str], languages: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        """Return one ``{label: probability}`` per text, batching texts that share a model.

        ``languages`` (ISO 639-1 per text) picks the model under ``auto``; when omitted it is detected.
        Raises ScorerError when a model cannot be loaded or fails on the input.
        """
        if not texts:
            return []
        if languages is None:
            if self.settings.model == "auto":
                from rail.language import detect

                languages = [detect(t) for t in texts]
            else:
                languages = [None] * len(texts)
        if len(languages) != len(texts):
            raise ValueError("languages must have one entry per text")
        groups: dict[str, list[int]] = {}
        for i, language in enumerate(languages):
            groups.setdefault(self.model_for(language), []).append(i)
        results: list[dict[str, float]] = [{} for _ in texts]
        for model, indexes in groups.items():
            classifier = self._classifier(model)
            try:
                rows = classifier.predict([texts[i] for i in indexes])
            except Exception as exc:
                raise ScorerError(f"detoxify {model!r} failed on the input: {_first_line(exc)}") from exc
            for i, row in zip(indexes, rows, strict=True):
                results[i] = row
        return results

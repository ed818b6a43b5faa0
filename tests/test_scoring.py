"""Toxicity scoring through detoxify, fully offline from a local checkpoint and config directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rail.errors import ConfigError, ScorerError
from rail.scoring import ScorerSettings, ToxicityScorer
from rail.tiny import DETOXIFY_LABELS


def test_scores_keep_every_label_as_probabilities(detoxify_env: tuple[Path, Path]) -> None:
    scorer = ToxicityScorer(ScorerSettings.from_env())
    rows = scorer.score(["The model writes a short answer.", "Quelle est la capitale de la France ?"])
    assert len(rows) == 2
    for row in rows:
        assert tuple(row) == DETOXIFY_LABELS
        assert all(0.0 <= p <= 1.0 for p in row.values())


@pytest.mark.parametrize(
    ("setting", "language", "model"),
    [
        ("auto", "en", "unbiased"),
        ("auto", "fr", "multilingual"),
        ("auto", None, "multilingual"),
        ("original", "fr", "original"),
        ("multilingual", "en", "multilingual"),
    ],
)
def test_model_choice_by_language(setting: str, language: str | None, model: str) -> None:
    assert ToxicityScorer(ScorerSettings(model=setting)).model_for(language) == model


def test_environment_sets_shared_and_per_model_paths(tmp_path: Path) -> None:
    env = {
        "RAIL_DETOXIFY_MODEL": "Original",
        "RAIL_DETOXIFY_CHECKPOINT": "/all.ckpt",
        "RAIL_DETOXIFY_CONFIG": "/all-config",
        "RAIL_DETOXIFY_MULTILINGUAL_CHECKPOINT": "/xlmr.ckpt",
    }
    settings = ScorerSettings.from_env(environ=env)
    assert settings.model == "original"
    assert settings.checkpoints == {
        "original": "/all.ckpt",
        "unbiased": "/all.ckpt",
        "multilingual": "/xlmr.ckpt",
    }
    assert settings.configs["multilingual"] == "/all-config"


def test_settings_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scorer.yaml"
    path.write_text(
        "model: multilingual\nmodels:\n  multilingual:\n    checkpoint: m.ckpt\n    config: cfg\n"
    )
    settings = ScorerSettings.from_env(path, environ={})
    assert settings.model == "multilingual"
    assert settings.checkpoints["multilingual"] == str(tmp_path / "m.ckpt")
    assert settings.configs["multilingual"] == str(tmp_path / "cfg")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modle: auto\n", "unknown key 'modle'"),
        ("model: roberta\n", "unknown detoxify model 'roberta'"),
        ("models:\n  bert: {checkpoint: x}\n", "unknown detoxify model 'bert'"),
        ("- a\n- b\n", "must be a mapping"),
        ("max_length: 2\n", "integer >= 8"),
    ],
)
def test_bad_settings_file_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scorer.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        ScorerSettings.from_env(path, environ={})
    assert str(path) in str(info.value)


def test_offline_without_checkpoint_says_which_variables_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache
    scorer = ToxicityScorer(ScorerSettings(model="multilingual"))
    with pytest.raises(ScorerError, match="RAIL_DETOXIFY_MULTILINGUAL_CHECKPOINT") as info:
        scorer.score(["Bonjour à tous."])
    assert "not available offline" in str(info.value)


def test_missing_checkpoint_file_is_named(tmp_path: Path, tiny_detoxify: tuple[Path, Path]) -> None:
    missing = tmp_path / "nope.ckpt"
    settings = ScorerSettings(
        model="unbiased", checkpoints={"unbiased": str(missing)}, configs={"unbiased": str(tiny_detoxify[1])}
    )
    with pytest.raises(ScorerError, match=r"nope\.ckpt"):
        ToxicityScorer(settings).score(["hello there"])


def test_config_dir_without_config_json_is_named(tmp_path: Path, tiny_detoxify: tuple[Path, Path]) -> None:
    settings = ScorerSettings(
        model="unbiased", checkpoints={"unbiased": str(tiny_detoxify[0])}, configs={"unbiased": str(tmp_path)}
    )
    with pytest.raises(ScorerError, match=r"no config\.json"):
        ToxicityScorer(settings).score(["hello there"])


def test_not_a_detoxify_checkpoint(tmp_path: Path, tiny_detoxify: tuple[Path, Path]) -> None:
    import torch

    bogus = tmp_path / "bogus.ckpt"
    torch.save({"weights": {}}, bogus)
    settings = ScorerSettings(
        model="unbiased", checkpoints={"unbiased": str(bogus)}, configs={"unbiased": str(tiny_detoxify[1])}
    )
    with pytest.raises(ScorerError, match="not a detoxify checkpoint"):
        ToxicityScorer(settings).score(["hello there"])


def test_empty_input_needs_no_model() -> None:
    assert (
        ToxicityScorer(ScorerSettings(model="original", checkpoints={"original": "/missing"})).score([]) == []
    )


@pytest.mark.parametrize("device", ["bogus", "quantum", "cuda:x", "cpu cuda", ""])
def test_a_device_torch_cannot_name_is_a_configuration_error(device: str) -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        ScorerSettings(device=device)


def test_device_in_a_settings_file_is_checked_with_its_line(tmp_path: Path) -> None:
    settings = tmp_path / "scorer.yaml"
    settings.write_text("model: unbiased\ndevice: quantum\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"scorer.yaml:2, at device: unknown device 'quantum'"):
        ScorerSettings.from_env(settings, environ={})


@pytest.mark.parametrize("device", ["cuda:99"])
def test_unusable_device_is_a_scorer_error(device: str, tiny_detoxify: tuple[Path, Path]) -> None:
    checkpoint, config_dir = tiny_detoxify
    settings = ScorerSettings(
        model="unbiased", checkpoints={"unbiased": str(checkpoint)}, configs={"unbiased": str(config_dir)},
        device=device,
    )
    with pytest.raises(ScorerError, match=f"on device '{device}'.*RAIL_DETOXIFY_DEVICE"):
        ToxicityScorer(settings).score(["hello there"])


def test_cuda_without_a_gpu_is_a_scorer_error(
    detoxify_env: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("RAIL_DETOXIFY_DEVICE", "cuda")
    with pytest.raises(ScorerError, match="device 'cuda'"):
        ToxicityScorer(ScorerSettings.from_env()).score(["hello there"])


class MarkerModel:
    """Stands in for the classifier network: `toxicity` is high exactly in windows that hold ``marker``."""

    def __init__(self, marker: int, labels: int) -> None:
        self.marker, self.labels, self.windows = marker, labels, []

    def to(self, device: str) -> MarkerModel:
        return self

    def eval(self) -> MarkerModel:
        return self

    def __call__(self, input_ids: Any, attention_mask: Any, **_: Any) -> tuple[Any]:
        import torch

        self.windows.append(input_ids.tolist())
        logits = torch.full((input_ids.shape[0], self.labels), -4.0)
        logits[:, 0] = torch.where((input_ids == self.marker).any(dim=1), 4.0, -4.0)
        return (logits,)


@pytest.fixture
def marker_classifier() -> tuple[Any, MarkerModel]:
    """A scorer classifier with a real BERT tokenizer, a 16-token window and the marker network."""
    from transformers import BertTokenizer

    from rail.scoring import _Classifier

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "model"]
    vocab = {token: i for i, token in enumerate(tokens)}
    model = MarkerModel(vocab["model"], len(DETOXIFY_LABELS))
    return _Classifier(model, BertTokenizer(vocab=vocab), list(DETOXIFY_LABELS), "cpu", 16), model


@pytest.mark.parametrize("position", [0, 13, 14, 15, 100, 199])
def test_long_text_is_scored_in_windows_and_keeps_the_maximum(
    marker_classifier: tuple[Any, MarkerModel], position: int
) -> None:
    classifier, model = marker_classifier
    words = ["the"] * 200
    words[position] = "model"
    long_text = " ".join(words)
    clean, marked = classifier.predict([" ".join(["the"] * 200), long_text])
    assert clean["toxicity"] < 0.1 and marked["toxicity"] > 0.9  # truncation at 16 tokens would miss it
    assert marked["insult"] < 0.1
    windows = model.windows[0]
    assert len(model.windows) == 1  # one pass for both texts
    assert all(len(w) <= 16 for w in windows)
    # 14 tokens of text per window, 4 shared with the next: (200 - 14) / 10 + 1 windows per text
    assert len(windows) == 2 * 20


def test_short_texts_are_one_window_each_in_one_pass(marker_classifier: tuple[Any, MarkerModel]) -> None:
    classifier, model = marker_classifier
    rows = classifier.predict(["the model", "the the", ""])
    assert [round(r["toxicity"]) for r in rows] == [1, 0, 0]
    assert len(model.windows) == 1 and len(model.windows[0]) == 3


@pytest.mark.parametrize(
    ("owners", "rows", "expected"),
    [
        ([0, 1], [[0.1, 0.2], [0.3, 0.4]], [[0.1, 0.2], [0.3, 0.4]]),
        ([0, 0, 0, 1], [[0.1, 0.9], [0.7, 0.2], [0.3, 0.3], [0.5, 0.5]], [[0.7, 0.9], [0.5, 0.5]]),
    ],
)
def test_window_scores_merge_to_the_maximum_per_label(
    owners: list[int], rows: list[list[float]], expected: list[list[float]]
) -> None:
    from rail.scoring import max_per_text

    assert max_per_text(owners, rows, 2) == expected


def test_a_text_with_no_window_is_an_error() -> None:
    from rail.scoring import max_per_text

    with pytest.raises(ValueError, match="text 1"):
        max_per_text([0], [[0.1]], 2)


def test_long_text_scores_with_the_real_tiny_model(detoxify_env: tuple[Path, Path]) -> None:
    checkpoint, config_dir = detoxify_env
    settings = ScorerSettings(
        model="unbiased", checkpoints={"unbiased": str(checkpoint)}, configs={"unbiased": str(config_dir)},
        max_length=32,
    )
    scorer = ToxicityScorer(settings)
    long_text = "The model writes a short answer. " * 300
    short, long = scorer.score(["The model writes a short answer.", long_text])
    assert tuple(long) == DETOXIFY_LABELS and all(0.0 <= p <= 1.0 for p in long.values())
    assert all(long[label] >= short[label] - 0.05 for label in DETOXIFY_LABELS)

"""Toxicity scoring through detoxify, fully offline from a local checkpoint and config directory."""

from __future__ import annotations

from pathlib import Path

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
